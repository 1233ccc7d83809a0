"""Query stages of a search recipe: what is done to a query text before and between candidate lookups.

All are optional and off by default; a recipe names the ones it uses with their options
(`Recipe.stages`, stored with it, validated by `check_stages`). Each stage works on any part of the
right kind, whatever encoder made it:

- `negation` (long requests): a clause that denies ("it was not Rebecca", "not a Poirot mystery",
  "wasn't a thriller") is dropped from queries of at least `min_words` words, from the negation to
  the end of its clause: every system reads "not X" as X, and X is usually a famous book that then
  wins. A query that would be left empty keeps its text.
- `split` (long requests): a query longer than `min_words` is cut into its sentences (pysbd's rule
  based segmenter) or into passages of `words` words; every piece is searched in every part, and
  each part's runs of the pieces are fused into that part's run with a fusion method (`fuse`: `max`
  = CombMAX, `convex` = the mean of z-scores, `rrf`), the whole query joining them as one more piece
  when `whole`; `on` = sparse (or dense) splits those parts only (the others search the whole query,
  and skip encoding the pieces). A reader's 150-word "which book was it" request mixes the one
  sentence that names the book with hedges and asides; a piece can find the book the whole text
  drowns.
- `terms` (query term weighting, sparse parts): drop query terms found in more than `max_df` of the
  documents (low idf: "book", "story", "read" in a request over books), and with `binary` count a
  repeated term once. BM25 already weights each term by idf; this removes the terms whose weight is
  near zero but whose many matches still add up over a long query.
- `rm3` (pseudo-relevance feedback, sparse parts; Lavrenko and Croft 2001, Abdul-Jaleel et al. 2004):
  the relevance model of the first pass's top `docs` documents (each document's term counts over its
  length, weighted by the document's share of the top scores), its `terms` heaviest terms, mixed with
  the query (normalised to sum 1) as (1 - `weight`) * query + `weight` * model, searched again.
  Anserini's defaults: 10, 10, 0.5.
- `rocchio` (pseudo-relevance feedback, dense parts; Rocchio 1971, as in the dense PRF baselines of
  Li et al. 2023): q' = q + `beta` * the mean vector of the first pass's top `docs` documents,
  normalised, searched again.
- `adaptive` (query-adaptive fusion): the parts' weights depend on the query's length in words:
  `edges` cut the lengths into buckets and `weights` give one weight list per bucket (a stated rule,
  or one fitted on query folds by bench/bench_quality.py).

The pipeline (`search.pipeline`) runs them: split and terms before the first lookup, the pieces'
fusion after it, then feedback (a second lookup per part that has it), then the recipe's fusion
with the query's weights. A recipe without stages runs none of this code.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.base import Vectors
from embedscope.encoders.document import Document
from embedscope.encoders.registry import parse_params
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONMapping, JSONObject
from embedscope.search.base import OptionSpec, boolean, check_options, number_in, one_of, positive_int

if TYPE_CHECKING:
    import pysbd

    from embedscope.search.fusion import Run
    from embedscope.search.loaded import LoadedVersion
    from embedscope.store.base import Item

_WORD = re.compile(r"\S+")


def _weights_list(v: object) -> str | None:
    ok = (
        isinstance(v, list)
        and v
        and all(
            isinstance(row, list)
            and row
            and all(isinstance(w, int | float) and w >= 0 for w in row)
            and sum(row) > 0
            for row in v
        )
    )
    return None if ok else "must be a list of weight lists, one per bucket, e.g. [[0.5, 0.5], [0.7, 0.3]]"


def _edges(v: object) -> str | None:
    if isinstance(v, list) and all(isinstance(e, int) and not isinstance(e, bool) and e > 0 for e in v):
        if v == sorted(set(v)):
            return None
    return "must be increasing word counts, e.g. [10, 40]"


#: stage -> its options (default, check); the order is the order in which they run
STAGES: dict[str, OptionSpec] = {
    "negation": {"min_words": (1, positive_int)},
    "split": {
        "by": ("sentence", one_of(["sentence", "passage"])),
        "min_words": (40, positive_int),
        "words": (50, positive_int),  # passage length, `by=passage` only
        "fuse": ("max", one_of(["max", "convex", "rrf"])),
        "whole": (True, boolean),
        "on": ("all", one_of(["all", "sparse", "dense"])),  # which parts search the pieces
    },
    "terms": {"max_df": (0.1, number_in(0.0, 1.0)), "binary": (False, boolean)},
    "rm3": {"docs": (10, positive_int), "terms": (10, positive_int), "weight": (0.5, number_in(0.0, 1.0))},
    "rocchio": {"docs": (3, positive_int), "beta": (0.5, number_in(0.0, 10.0))},
    "adaptive": {"edges": ([], _edges), "weights": ([[0.5, 0.5]], _weights_list)},
}


def check_stages(stages: JSONMapping | None, n_parts: int) -> dict[str, JSONObject]:
    """A recipe's stages with every option filled in; an error naming an unknown stage or a bad option."""
    out: dict[str, JSONObject] = {}
    for name, options in (stages or {}).items():
        if name not in STAGES:
            raise EmbedscopeError(f"unknown query stage '{name}'; valid: {', '.join(STAGES)}")
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise EmbedscopeError(f"query stage '{name}': its options must be a mapping, e.g. {{'docs': 10}}")
        out[name] = check_options(f"query stage '{name}'", STAGES[name], options)
    adaptive = out.get("adaptive")
    if adaptive is not None:
        if len(adaptive["weights"]) != len(adaptive["edges"]) + 1:
            raise EmbedscopeError(
                f"query stage 'adaptive': {len(adaptive['edges'])} edge(s) make "
                f"{len(adaptive['edges']) + 1} buckets; give that many weight lists"
            )
        if any(len(row) != n_parts for row in adaptive["weights"]):
            raise EmbedscopeError(
                f"query stage 'adaptive': each weight list needs one weight per part ({n_parts})"
            )
    return {name: out[name] for name in STAGES if name in out}


def parse_stage(spec: str) -> tuple[str, JSONObject]:
    """The CLI's `--stage NAME[:key=value,...]`, e.g. 'rm3', 'split:by=passage,words=40', values as JSON."""

    name, _, rest = spec.partition(":")
    pairs, depth, current = [], 0, ""
    for ch in rest:  # split on the commas outside brackets: weights=[[0.3,0.7],[0.5,0.5]] is one value
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            pairs.append(current)
            current = ""
        else:
            current += ch
    pairs = [p for p in [*pairs, current] if p.strip()]
    return name.strip(), parse_params(pairs, f"--stage {name.strip()}")


# --- negation -----------------------------------------------------------------------------------------
_NEGATED = re.compile(
    r"\b(?:not|never|nor|(?:is|was|are|were|do|does|did|wo|would|could|has|had)n['’]t)\b[^.,;:!?()\n]*",
    re.IGNORECASE,
)


def drop_negated(text: str, options: JSONMapping) -> str:
    """The query without its negated clauses ('It was not Rebecca.' -> 'It was .')."""
    if words(text) < options["min_words"]:
        return text
    kept = " ".join(_NEGATED.sub(" ", text).split())
    return kept if _WORD.search(kept) and any(c.isalnum() for c in kept) else text


# --- split --------------------------------------------------------------------------------------------
def words(text: str) -> int:
    return len(_WORD.findall(text))


@functools.cache
def _segmenter() -> pysbd.Segmenter:
    import pysbd  # rule-based sentence boundaries (abbreviations, "Mr.", "...", quotes): 70 kB, no deps

    return pysbd.Segmenter(language="en", clean=False)


def split(text: str, options: JSONMapping) -> list[str]:
    """The pieces of a query: [] when it is not longer than `min_words` (it is searched whole)."""
    if words(text) <= options["min_words"]:
        return []
    if options["by"] == "passage":
        tokens = _WORD.findall(text)
        size = options["words"]
        return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]
    pieces = [s.strip() for s in _segmenter().segment(text)]
    return [p for p in pieces if _WORD.search(p)]


# --- terms --------------------------------------------------------------------------------------------
_DF: weakref.WeakKeyDictionary[Vectors, np.ndarray] = weakref.WeakKeyDictionary()


def document_frequency(v: LoadedVersion) -> np.ndarray:
    """Share of the version's documents holding each term (its sparse matrix's column counts); kept
    with the loaded version's data, so a rewritten version gets its own."""
    share = _DF.get(v.data)
    if share is None:
        matrix = sp.csr_matrix(v.data.vectors)
        counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
        share = counts / max(matrix.shape[0], 1)
        _DF[v.data] = share
    return share


def weight_terms(v: LoadedVersion, queries: sp.csr_matrix, options: JSONMapping) -> sp.csr_matrix:
    """Sparse query rows with the common terms dropped (and repeated terms counted once); a query
    whose every term is common keeps them all."""
    original = sp.csr_matrix(queries, dtype=np.float32)
    q = original.copy()
    if options["max_df"] < 1.0:
        keep = document_frequency(v)[q.indices] <= options["max_df"]
        q.data = np.where(keep, q.data, 0.0).astype(np.float32)
    if options["binary"]:
        q.data = (q.data > 0).astype(np.float32)
    q.eliminate_zeros()
    emptied = (np.diff(q.indptr) == 0) & (np.diff(original.indptr) > 0)
    if emptied.any():  # a query of common terms only keeps them: better than no lexical run at all
        rows = [original[r] if emptied[r] else q[r] for r in range(q.shape[0])]
        q = sp.vstack(rows).tocsr()
    return q


# --- pseudo-relevance feedback --------------------------------------------------------------------------
def rm3(query: sp.csr_matrix, counts: sp.csr_matrix, feedback: Run, options: JSONMapping) -> sp.csr_matrix:
    """RM3: one sparse query row mixed with the relevance model of the feedback run's top documents.

    `counts`: the term counts of those documents (row-aligned with `feedback.ids`), what the part's
    encoder makes of each document's text on the query side (BM25: term counts), so P(w|d) =
    count / length as in Lavrenko and Croft; each document weighs its share of the top scores."""
    n = min(counts.shape[0], options["docs"])
    if n == 0 or query.nnz == 0:
        return query
    docs = sp.csr_matrix(counts[:n], dtype=np.float64)
    lengths = np.asarray(docs.sum(axis=1)).ravel()
    lengths[lengths == 0] = 1.0
    scores = np.clip(np.asarray(feedback.scores[:n], dtype=np.float64), 0.0, None)
    doc_weight = scores / scores.sum() if scores.sum() > 0 else np.full(n, 1.0 / n)
    model = np.asarray(sp.diags(doc_weight / lengths).dot(docs).sum(axis=0)).ravel()
    keep = np.argsort(-model, kind="stable")[: options["terms"]]
    keep = keep[model[keep] > 0]
    if not len(keep):
        return query
    expansion = np.zeros(query.shape[1])
    expansion[keep] = model[keep] / model[keep].sum()
    original = query.toarray().ravel().astype(np.float64)
    mixed = (1.0 - options["weight"]) * original / original.sum() + options["weight"] * expansion
    return sp.csr_matrix(mixed.astype(np.float32))


def rocchio(v: LoadedVersion, query: np.ndarray, feedback: Run, options: JSONMapping) -> np.ndarray:
    """Rocchio: one dense query row moved towards the mean of the feedback run's top documents."""
    top = [v.row_of[d] for d in feedback.ids[: options["docs"]] if d in v.row_of]
    if not top:
        return query
    docs = np.asarray(v.data.vectors[top], dtype=np.float32)
    moved = np.asarray(query, dtype=np.float32).ravel() + options["beta"] * docs.mean(axis=0)
    norm = float(np.linalg.norm(moved))
    return (moved / norm if norm > 0 else moved)[None, :]


# --- adaptive fusion ------------------------------------------------------------------------------------
def adaptive_weights(text: str, options: JSONMapping) -> tuple[float, ...]:
    """The parts' weights for one query: the bucket of its word count."""
    bucket = int(np.searchsorted(np.asarray(options["edges"]), words(text), side="left"))
    row = [float(w) for w in options["weights"][bucket]]
    return tuple(w / sum(row) for w in row)


def describe(stages: Mapping[str, JSONMapping]) -> str:
    """'split(by=sentence, ...) + rm3(docs=10, ...)', for people; '' without stages."""
    return " + ".join(
        f"{name}({', '.join(f'{k}={v}' for k, v in options.items())})" for name, options in stages.items()
    )


def feedback_kind(sparse: bool) -> str:
    return "rm3" if sparse else "rocchio"


__all__ = [
    "STAGES",
    "adaptive_weights",
    "check_stages",
    "drop_negated",
    "describe",
    "document_frequency",
    "feedback_kind",
    "parse_stage",
    "rm3",
    "rocchio",
    "split",
    "weight_terms",
    "words",
]


def feedback(
    v: LoadedVersion,
    matrix: Vectors,
    known: np.ndarray,
    out: dict[int, list[Run | None]],
    part: int,
    options: JSONObject,
    search: Callable[[Vectors], list[Run]],
    get_items: Callable[[list[str]], list[Item | None]],
) -> None:
    """Pseudo-relevance feedback for one part of a search: each query (its whole text, row qi of
    `matrix`) expanded with its first run's top documents (`rm3` for a sparse part, `rocchio` for a
    dense one), searched again with `search`; the second run replaces the first in `out`."""
    first = {
        qi: run for qi, runs in out.items() if (run := runs[part]) is not None and len(run) and known[qi]
    }
    todo = list(first)
    if not todo:
        return
    if v.info.sparse:
        counts = _feedback_counts(v, [first[qi].ids[: options["docs"]] for qi in todo], get_items)
        rows = [rm3(matrix[qi : qi + 1], c, first[qi], options) for qi, c in zip(todo, counts, strict=True)]
    else:
        rows = [rocchio(v, matrix[qi : qi + 1], first[qi], options) for qi in todo]
    expanded = sp.vstack(rows).tocsr() if v.info.sparse else np.vstack(rows).astype(np.float32)
    for qi, run in zip(todo, search(expanded), strict=True):
        out[qi][part] = run


def _feedback_counts(
    v: LoadedVersion, ids: list[list[str]], get_items: Callable[[list[str]], list[Item | None]]
) -> list[sp.csr_matrix]:
    """The term counts of feedback documents (their documents encoded on the query side, which for
    BM25 is term counts), one matrix per query; one store read and one encoder call."""
    wanted = list(dict.fromkeys(i for group in ids for i in group))
    items = {it.id: it for it in get_items(wanted) if it is not None}
    document = Document.parse(v.info.document)
    found = [i for i in wanted if i in items]
    texts = [document.render(items[i].text, items[i].fields) for i in found]
    matrix = sp.csr_matrix(v.encoder.encode_queries(texts)) if texts else None
    row = {i: n for n, i in enumerate(found)}
    return [
        matrix[[row[i] for i in group if i in row]] if matrix is not None else sp.csr_matrix((0, v.info.dim))
        for group in ids
    ]
