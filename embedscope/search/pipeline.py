"""The one search path: query -> vectors -> candidates per part -> fusion -> rerank -> hits.

`Collection.search/similar/search_vectors`, the CLI (`search`, `similar`, `compare`), the HTTP API
(`/search`, `/similar`, `/compare`, the page) and `evaluate` all come through `SearchPipeline`. What
they may vary is passed in, not copied: the server gives its query cache and micro-batcher as the
`encode` hook; `evaluate` sends all queries at once (`search_many`). The pipeline takes no lock:
the collection's reads are safe from any thread by themselves (the store serialises its statements).

What answers a query is a plan: one version, or a recipe fusing several (`search.recipe`). Stages:
1. filter: one row mask per part from `where` (a bad filter fails here, before any encoding);
2. encode: the query text with each part's encoder (a sparse part that knows no query term is left
   out for that query; with one part that is an error);
3. candidates: `lookup`, the only place an index is asked for candidates, with the filter inside;
4. fusion (recipes only): the method the recipe names, over each part's `depth` best candidates;
5. rerank: repeats of a better-ranked work are collapsed (by default), fetching deeper when the
   collapse would leave fewer than k;
6. hits: the top k ids become `Hit`s (text + metadata) from the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.base import Vectors, empty_rows
from embedscope.encoders.document import Document
from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.index import create_index
from embedscope.index.base import row_scores
from embedscope.jsontypes import JSONObject
from embedscope.search import query as stages_
from embedscope.search import recipe as recipes
from embedscope.search import relevance
from embedscope.search.base import STAGES, Hit, SearchResult
from embedscope.search.fusion import Run, fuse, score_floor
from embedscope.search.rerank import WorkSet, collapse
from embedscope.search.versions import CollectionReader, LoadedVersion, damaged_error

#: (version, query texts) -> (query matrix row-aligned with the texts, True if all came from a cache)
QueryEncoder = Callable[["LoadedVersion", Sequence[str]], tuple[Vectors, bool]]


def encode_direct(v: LoadedVersion, texts: Sequence[str]) -> tuple[Vectors, bool]:
    """The default `QueryEncoder`: the version's encoder, no cache."""
    return v.encoder.encode_queries(list(texts)), False


class MemoEncoder:
    """A `QueryEncoder` that remembers each query's vector per version revision and encodes only the
    texts it has not seen, in one batch: evaluating a recipe after its parts encodes nothing again.
    Unbounded, so for a batch job (evaluate), not a server (which has its LRU QueryCache)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str], JSONObject] = {}

    def __call__(self, v: LoadedVersion, texts: Sequence[str]) -> tuple[Vectors, bool]:
        memo = self._memo.setdefault((v.info.name, v.revision), {})
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        if todo:
            fresh = v.encoder.encode_queries(todo)
            for i, text in enumerate(todo):
                memo[text] = fresh[i : i + 1]
        rows = [memo[t] for t in texts]
        stacked = sp.vstack(rows).tocsr() if sp.issparse(rows[0]) else np.vstack(rows)
        return stacked, not todo


def lookup(
    v: LoadedVersion,
    queries: Vectors,
    depth: int,
    *,
    allowed: np.ndarray | None,
    where: str | None,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates from one version's index: the only place search asks an index.

    The filter goes down both ways: `allowed`, the row mask the collection evaluated from `where`
    (deleted and excluded rows removed too), and `where` itself, for an index that runs the filter
    where the vectors live (a database index translating it to SQL; `VectorIndex.search_where`)."""
    index = v.index
    if exact and index.kind != "exact":
        index = create_index("exact").build(v.data.vectors)
    rows, scores = index.search_where(queries, min(depth, max(index.size, 1)), allowed=allowed, where=where)
    # equal scores (two editions with the same text) in row order: an index returns ties in any
    # order, and every caller (CLI, API, server) must show the same ranking
    order = np.lexsort((rows, -scores), axis=-1)
    return np.take_along_axis(rows, order, -1), np.take_along_axis(scores, order, -1)


@dataclass
class Plan:
    """What answers a query: one version, or a recipe's parts and fusion."""

    using: str
    encoder: str
    parts: list[LoadedVersion]
    weights: tuple[float, ...] = (1.0,)
    fusion: str | None = None  # None: one part, its scores as they are
    params: JSONObject = field(default_factory=dict)
    depth: int = 0
    #: the recipe's query stages (`search.query`); empty for a version
    stages: dict[str, JSONObject] = field(default_factory=dict)

    @property
    def fused(self) -> bool:
        return self.fusion is not None


@dataclass
class Pieces:
    """The texts a batch of queries is encoded as: the n queries themselves first, then the pieces
    of the long ones (`split` stage); `rows[qi]` = the rows whose runs make query qi's run in each part."""

    texts: list[str]
    rows: list[list[int]]

    @classmethod
    def of(cls, queries: Sequence[str], stages: dict[str, JSONObject]) -> Pieces:
        """The texts to encode: each query (without its negated clauses, `negation` stage), then the
        pieces of the long ones (`split` stage)."""
        negation, options = stages.get("negation"), stages.get("split")
        if negation is not None:
            queries = [stages_.drop_negated(q, negation) for q in queries]
        texts, rows = list(queries), [[qi] for qi in range(len(queries))]
        if options is None:
            return cls(texts, rows)
        for qi, text in enumerate(queries):
            pieces = stages_.split(text, options)
            if len(pieces) < 2:
                continue
            start = len(texts)
            texts.extend(pieces)
            rows[qi] = ([qi] if options["whole"] else []) + list(range(start, start + len(pieces)))
        return cls(texts, rows)


class SearchPipeline:
    """The search path of one collection; see the module docstring."""

    def __init__(
        self,
        collection: CollectionReader,
        *,
        encode: QueryEncoder | None = None,
    ) -> None:
        self.collection = collection
        self._encode = encode or encode_direct

    # --- what answers --------------------------------------------------------------------------------
    def plan(
        self, using: str | recipes.Recipe | LoadedVersion | None = None, *, text_search: bool = False
    ) -> Plan:
        """A version name, a recipe name (or a Recipe), a loaded version, or None: for a text search
        the default search (`Collection.default_search`: the active version unless `activate` chose a
        recipe), for more-like-this and query vectors the active version (a recipe made the default
        does not move them: `activate`'s promise)."""
        if isinstance(using, LoadedVersion):
            return self._single(using)
        if isinstance(using, recipes.Recipe):
            return self._recipe_plan(using)
        coll = self.collection
        found = functools.cache(coll.recipes)  # per query: read at most once, only if needed
        if using is None:
            using = coll.default_search_using(found) if text_search else coll.active_version
        names = [v.name for v in coll.versions()]
        if using in names:
            return self._single(coll.load_version(using))
        recipe = found().get(using)
        if recipe is None:
            versions = ", ".join(names) or "none"
            stored = ", ".join(found()) or "none"
            hint = (
                "; hybrid search needs a sparse version (e.g. bm25) and a dense one (e.g. minilm): "
                f"run `embedscope embed {coll.name} --encoder hybrid`"
                if using == recipes.HYBRID
                else ""
            )
            raise NotFoundError(
                f"collection '{coll.name}' has no version or recipe '{using}' "
                f"(versions: {versions}; recipes: {stored}){hint}"
            )
        return self._recipe_plan(recipe)

    def name_for_encoder(self, encoder: str) -> str:
        """The version built with `encoder` (the active one preferred); 'hybrid' names the recipe."""
        if encoder == recipes.HYBRID:
            return encoder  # the recipe; `plan` says what is missing if the collection cannot have one
        coll = self.collection
        versions = coll.versions()
        active = next((v.name for v in versions if v.active), None)
        matches = [v.name for v in versions if v.encoder.get("name") == encoder]
        if not matches:
            have = sorted({v.encoder.get("name", "?") for v in versions}) or ["none"]
            raise NotFoundError(
                f"collection '{coll.name}' has no version built with encoder '{encoder}'; encoders with "
                f"versions: {', '.join(have)} (or 'hybrid' when a sparse and a dense version exist)"
            )
        return active if active in matches else matches[0]

    def _single(self, v: LoadedVersion) -> Plan:
        return Plan(v.info.name, str(v.info.encoder.get("name")), [v])

    def _recipe_plan(self, recipe: recipes.Recipe) -> Plan:
        parts = [self.collection.load_version(p) for p in recipe.parts]
        return Plan(
            recipe.name,
            recipe.label(),
            parts,
            recipe.part_weights,
            recipe.fusion,
            recipe.params,
            recipe.depth,
            recipe.stages,
        )

    # --- entry points --------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        using: str | recipes.Recipe | LoadedVersion | None = None,
        where: str | None = None,
        exact: bool = False,
        collapse: bool = True,
    ) -> SearchResult:
        """The k best items for a query text; `using` a version or recipe (default: the default search)."""
        if not query or not query.strip():
            raise EmbedscopeError("empty query")
        return self.search_many([query], k, using=using, where=where, exact=exact, collapse=collapse)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        using: str | recipes.Recipe | LoadedVersion | None = None,
        where: str | None = None,
        exact: bool = False,
        collapse: bool = True,
        strict: bool = True,
    ) -> list[SearchResult]:
        """Many query texts at once: one encoder call and one index call per part (what `evaluate`
        uses). `strict=False`: a query no part can encode gets no hits instead of an error."""
        _check_k(k)
        plan = self.plan(using, text_search=True)
        stages = dict.fromkeys(STAGES, 0.0)
        with _timed(stages, "search"):
            masks = self._masks(plan, where, ())  # a bad filter fails before anything is encoded
        adaptive = plan.stages.get("adaptive")
        active = [(i, v) for i, v in enumerate(plan.parts) if plan.weights[i] > 0 or adaptive]
        pieces = Pieces.of(queries, plan.stages)
        terms = plan.stages.get("terms")
        matrices: dict[int, Vectors] = {}
        known: dict[int, np.ndarray] = {}
        cached = True
        split_on = (plan.stages.get("split") or {}).get("on", "all")
        with _timed(stages, "encode"):
            for i, v in active:
                matrices[i], hit = self._encode(v, pieces.texts[: len(queries)])
                if len(pieces.texts) > len(queries) and _splits(split_on, v):
                    # the pieces in a batch of their own: padded to the longest piece, not to the
                    # longest whole query (a transformer pads a batch to its longest text)
                    extra, extra_hit = self._encode(v, pieces.texts[len(queries) :])
                    matrices[i] = _stack(matrices[i], extra)
                    hit = hit and extra_hit
                if matrices[i].shape[-1] != v.info.dim:  # the fitted encoder is not the vectors'
                    width = matrices[i].shape[-1]
                    raise damaged_error(
                        self.collection.name,
                        v.info,
                        [f"its encoder makes vectors of dimension {width}, not {v.info.dim}"],
                    )
                cached = cached and hit
                if terms is not None and v.info.sparse:
                    matrices[i] = stages_.weight_terms(v, matrices[i], terms)
                known[i] = ~empty_rows(matrices[i])
        for qi, text in enumerate(queries):
            if strict and not any(known[i][qi] for i, _ in active):
                v = active[0][1]
                what = (
                    f"any part of '{plan.using}'" if plan.fused else f"encoder '{v.info.encoder.get('name')}'"
                )
                raise EmbedscopeError(
                    f"query {text!r} has no terms known to {what} (only stop words or unknown words)"
                )
        results = self._answer(
            plan, matrices, known, len(queries), k, masks, where, exact, collapse, stages, pieces=pieces
        )
        for r in results:
            r.cached = cached
        return results

    def search_vectors(
        self,
        vectors: Vectors,
        k: int = 10,
        *,
        version: str | LoadedVersion | None = None,
        where: str | None = None,
        exclude: Sequence[str] = (),
        exact: bool = False,
        collapse: bool = False,
    ) -> list[SearchResult]:
        """Nearest items for query vectors already in a version's space (one result per row)."""
        _check_k(k)
        plan = self.plan(version)
        if plan.fused:
            raise EmbedscopeError(
                f"'{plan.using}' is a recipe; vectors belong to one version's space: name a version"
            )
        v = plan.parts[0]
        width = vectors.shape[-1] if vectors.ndim > 1 or sp.issparse(vectors) else len(vectors)
        if width != v.info.dim:
            raise ConflictError(
                f"query vectors have dimension {width}, version '{v.info.name}' has dimension {v.info.dim}"
            )
        matrix = vectors if sp.issparse(vectors) or vectors.ndim > 1 else np.asarray(vectors)[None, :]
        stages = dict.fromkeys(STAGES, 0.0)
        with _timed(stages, "search"):
            masks = self._masks(plan, where, exclude)
        n = matrix.shape[0]
        return self._answer(
            plan, {0: matrix}, {0: np.ones(n, bool)}, n, k, masks, where, exact, collapse, stages
        )

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        using: str | recipes.Recipe | LoadedVersion | None = None,
        where: str | None = None,
        collapse: bool = True,
    ) -> SearchResult:
        """More like this: the items nearest to an item's own vector in each part (itself excluded;
        with `collapse`, other editions of the same work too)."""
        _check_k(k)
        plan = self.plan(using)
        stages = dict.fromkeys(STAGES, 0.0)
        with _timed(stages, "search"):
            masks = self._masks(plan, where, (item_id,))
        # NotFoundError for a deleted item, even where a version still has its row
        item = self.collection.get(item_id)
        matrices: dict[int, Vectors] = {}
        with _timed(stages, "encode"):
            for i, v in enumerate(plan.parts):
                if plan.weights[i] == 0:
                    continue
                row = v.row_of.get(item_id)
                if row is None:  # added since the version was built: encode its document
                    doc = Document.parse(v.info.document).render(item.text, item.fields)
                    matrices[i] = v.encoder.encode([doc])
                else:
                    q = v.data.vectors[row : row + 1]
                    matrices[i] = q if sp.issparse(q) else np.asarray(q)
        known = {i: ~empty_rows(m) for i, m in matrices.items()}
        seen = None
        if collapse:
            seen = WorkSet([self.collection.work_keys().get(item_id)])
        return self._answer(plan, matrices, known, 1, k, masks, where, False, collapse, stages, seen=seen)[0]

    # --- stages --------------------------------------------------------------------------------------
    def _masks(self, plan: Plan, where: str | None, exclude: Sequence[str]) -> list[np.ndarray | None]:
        return [self.collection.allowed_rows(v, where, exclude) for v in plan.parts]

    def _answer(
        self,
        plan: Plan,
        matrices: dict[int, Vectors],
        known: dict[int, np.ndarray],
        n: int,
        k: int,
        masks: list[np.ndarray | None],
        where: str | None,
        exact: bool,
        collapse_works: bool,
        stages: dict[str, float],
        seen: WorkSet | None = None,
        pieces: Pieces | None = None,
    ) -> list[SearchResult]:
        keys: JSONObject = {}
        measured = _measured_part(plan, matrices, pieces)  # whose cosines give hits their relevance
        own: dict[int, dict[str, float] | None] = {}
        if collapse_works:
            keys = self.collection.work_keys()
        collapse_works = bool(keys)
        # over-fetch when collapsing, so that k distinct works usually remain without a second pass
        fetch = max(2 * k, k + 10) if collapse_works else k
        depth = max(fetch, plan.depth) if plan.fused else fetch
        pending = list(range(n))
        ranked: list[tuple[list[str], np.ndarray, int]] = [([], np.zeros(0), 0)] * n
        while pending:
            with _timed(stages, "search"):
                runs = self._candidates(plan, matrices, known, pending, depth, masks, where, exact, pieces)
            again = []
            with _timed(stages, "rank"):
                for qi in pending:
                    weights = plan.weights
                    if pieces is not None and "adaptive" in plan.stages:
                        weights = stages_.adaptive_weights(pieces.texts[qi], plan.stages["adaptive"])
                    if plan.fused and plan.params.get("missing") == "score":
                        runs[qi] = _with_others(plan, matrices, pieces, qi, runs[qi])
                    ids, scores = self._fuse(plan, runs[qi], weights)
                    if collapse_works:
                        kept, dropped = collapse(ids, keys, k, seen=seen.copy() if seen else None)
                    else:
                        kept, dropped = list(range(min(k, len(ids)))), 0
                    full = any(r is not None and len(r) >= depth for r in runs[qi])
                    if len(kept) < k and full and collapse_works:
                        again.append(qi)  # the collapse ate too much: look deeper
                    ranked[qi] = ([ids[p] for p in kept], scores[kept], dropped)
                    if measured is not None:
                        own[qi] = _own_cosines(plan, measured, pieces, qi, runs[qi][measured])
            pending, depth = again, depth * 2
        results = []
        with _timed(stages, "rank"):
            items = self.collection.get_items([i for ids, _, _ in ranked for i in ids])
            pos = 0
            for qi, (ids, scores, dropped) in enumerate(ranked):
                mine = items[pos : pos + len(ids)]
                pos += len(ids)
                hits = [
                    Hit(it.id, float(s), it.text, it.metadata)
                    for it, s in zip(mine, scores, strict=True)
                    if it is not None
                ]
                if measured is not None and known[measured][qi]:
                    relevance.attach(hits, plan.parts[measured], _rows(matrices[measured], [qi]), own.get(qi))
                skipped = [plan.parts[i].info.name for i in known if not known[i][qi]]
                results.append(
                    SearchResult(hits, plan.using, plan.encoder, skipped_parts=skipped, collapsed=dropped)
                )
        share = {s: t / max(n, 1) for s, t in stages.items()}
        for r in results:
            r.stages = dict(share)
        return results

    def _candidates(
        self,
        plan: Plan,
        matrices: dict[int, Vectors],
        known: dict[int, np.ndarray],
        queries: list[int],
        depth: int,
        masks: list[np.ndarray | None],
        where: str | None,
        exact: bool,
        pieces: Pieces | None = None,
    ) -> dict[int, list[Run | None]]:
        """Each part's candidates for the given queries, in plan order (None: the part was not asked,
        because its weight is 0 or it knows none of the query's terms). A query split into pieces
        (`split` stage) gets the fusion of its pieces' runs; a part with feedback (`rm3`, `rocchio`)
        is searched a second time with the expanded query."""
        out: dict[int, list[Run | None]] = {qi: [None] * len(plan.parts) for qi in queries}
        split = plan.stages.get("split")
        for i, matrix in matrices.items():
            v = plan.parts[i]
            piece_rows = (
                pieces.rows if pieces is not None and _splits((split or {}).get("on", "all"), v) else None
            )
            rows_of = {qi: [qi] if piece_rows is None else piece_rows[qi] for qi in queries}
            asked = {qi: [r for r in rows if known[i][r]] for qi, rows in rows_of.items()}
            flat = sorted({r for rows in asked.values() for r in rows})
            if not flat:
                continue
            runs = dict(
                zip(flat, self._lookup(v, _rows(matrix, flat), depth, masks[i], where, exact), strict=True)
            )
            for qi, rows in asked.items():
                if len(rows) == 1:
                    out[qi][i] = runs[rows[0]]
                elif rows:
                    assert split is not None
                    out[qi][i] = _fuse_pieces([runs[r] for r in rows], split, depth)
            feedback = plan.stages.get(stages_.feedback_kind(v.info.sparse))
            if feedback is not None and pieces is not None:  # text searches only, not more-like-this
                again = functools.partial(
                    self._lookup, v, depth=depth, mask=masks[i], where=where, exact=exact
                )
                stages_.feedback(v, matrix, known[i], out, i, feedback, again, self.collection.get_items)
        return out

    def _lookup(
        self,
        v: LoadedVersion,
        queries: Vectors,
        depth: int,
        mask: np.ndarray | None,
        where: str | None,
        exact: bool,
    ) -> list[Run]:
        """One index call for some query rows of one part: a Run per row."""
        rows, scores = lookup(v, queries, depth, allowed=mask, where=where, exact=exact)
        floor = score_floor(v.info.sparse, v.info.metric)
        ids = v.data.ids
        runs = []
        for r, s in zip(rows, scores, strict=True):
            # a sparse score of 0 shares no term with the query: not retrieved (as in an inverted index)
            keep = (r >= 0) & np.isfinite(s) & ((s > 0) if v.info.sparse else True)
            runs.append(Run([ids[x] for x in r[keep]], s[keep].astype(np.float64), floor))
        return runs

    def _fuse(
        self, plan: Plan, runs: list[Run | None], weights: Sequence[float] | None = None
    ) -> tuple[list[str], np.ndarray]:
        weights = plan.weights if weights is None else weights
        answered = [(r, w) for r, w in zip(runs, weights, strict=True) if r is not None and len(r)]
        if not answered:
            return [], np.zeros(0)
        if not plan.fused:
            return answered[0][0].ids, answered[0][0].scores
        return fuse([r for r, _ in answered], [w for _, w in answered], plan.fusion or "", plan.params)

    def hits_for_rows(self, v: LoadedVersion, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        """Rows of a version (e.g. from a recommender's own scoring) as Hits; deleted items skipped."""
        ids = [v.data.ids[r] for r in rows if r >= 0]
        items = self.collection.get_items(ids)
        return [
            Hit(i.id, float(s), i.text, i.metadata)
            for i, s in zip(items, scores[: len(ids)], strict=True)
            if i is not None
        ]


def _check_k(k: int) -> None:
    if k < 1:
        raise EmbedscopeError("k must be at least 1")


def _fuse_pieces(runs: list[Run], options: JSONObject, depth: int) -> Run:
    """The runs of a query's pieces in one part -> that part's run (the `split` stage's fusion, equal
    weights), cut to the part's depth so that the recipe's fusion sees as many candidates as without it."""
    method = options["fuse"]
    params = {"k": 60} if method == "rrf" else {"normalization": "zscore", "missing": "cutoff"}
    ids, scores = fuse(runs, [1.0] * len(runs), method, params)
    return Run(ids[:depth], scores[:depth], None)


def _measured_part(plan: Plan, matrices: dict[int, Vectors], pieces: Pieces | None) -> int | None:
    """The part whose cosines give a text search's hits their relevance (search/relevance.py): the
    first measured dense model, if it encoded the queries (a part of weight 0 was not encoded). None
    for more-like-this (no `pieces`): item-to-item cosines are on another scale."""
    measured = relevance.measured_part(plan.parts) if pieces is not None else None
    return measured if measured in matrices else None


def _own_scores(plan: Plan, part: int, pieces: Pieces | None, qi: int) -> bool:
    """Whether a part's run for query qi holds the query's own scores (no split pieces fused into
    it, no feedback search), so that a stored vector scored against the query row is comparable."""
    v, split = plan.parts[part], plan.stages.get("split")
    pieced = split is not None and pieces is not None and len(pieces.rows[qi]) > 1
    if pieced and split is not None and _splits(split.get("on", "all"), v):
        return False
    return stages_.feedback_kind(v.info.sparse) not in plan.stages


def _own_cosines(
    plan: Plan, part: int, pieces: Pieces | None, qi: int, run: Run | None
) -> dict[str, float] | None:
    """A part's candidates for query qi as id -> score, when its run holds the query's own cosines.
    None: relevance scores the stored vectors."""
    if run is None or not _own_scores(plan, part, pieces, qi):
        return None
    return dict(zip(run.ids, run.scores.tolist(), strict=True))


def _with_others(
    plan: Plan, matrices: dict[int, Vectors], pieces: Pieces | None, qi: int, runs: list[Run | None]
) -> list[Run | None]:
    """Query qi's runs, each given its true scores of the other runs' candidates (`Run.others`, for
    the fusion's `missing="score"`): the query row against the part's stored vectors of those items,
    the score its index would give them. Not for a run made of a long query's pieces or a feedback
    search (no single query row scores it); items added since a version was built have no vector."""
    union = list(dict.fromkeys(doc for run in runs if run is not None for doc in run.ids))
    out = list(runs)
    for i, run in enumerate(runs):
        if run is None or i not in matrices or not _own_scores(plan, i, pieces, qi):
            continue
        v, have = plan.parts[i], set(run.ids)
        ids = [doc for doc in union if doc not in have and doc in v.row_of]
        if ids:
            rows = np.array([v.row_of[doc] for doc in ids], dtype=np.int64)
            scores = row_scores(_rows(matrices[i], [qi]), v.data.vectors, rows)[0]
            out[i] = dataclasses.replace(run, others=dict(zip(ids, scores.tolist(), strict=True)))
    return out


def _splits(on: str, v: LoadedVersion) -> bool:
    """Whether a part searches the pieces of a split query (`split` stage's `on`)."""
    return on == "all" or (on == "sparse") == bool(v.info.sparse)


def _stack(a: Vectors, b: Vectors) -> Vectors:
    return sp.vstack([a, b]).tocsr() if sp.issparse(a) else np.vstack([np.asarray(a), np.asarray(b)])


def _rows(matrix: Vectors, rows: list[int]) -> Vectors:
    if len(rows) == matrix.shape[0]:
        return matrix
    return matrix[rows]


@contextlib.contextmanager
def _timed(stages: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        stages[stage] += time.perf_counter() - t0


__all__ = ["MemoEncoder", "Plan", "QueryEncoder", "SearchPipeline", "encode_direct", "lookup"]
