"""Compare search configurations side by side on one query: each one's top k, with timings.

Used by `embedscope compare` and the server's `/compare`. Every configuration is searched through
the one search path (`SearchPipeline`), with the same filter, so a column here is exactly what
`search --version NAME` answers. Configurations are named as versions or recipes, or as encoders:
an encoder's own version is used when the collection has one (the active one preferred); otherwise
the encoder is fitted and the collection encoded on the fly, into an in-memory version kept in a
process cache keyed by the collection's content (a second comparison in the same process is fast).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from embedscope.collection.embedding import version_record
from embedscope.display import DisplayFields
from embedscope.encoders.registry import create_encoder, encoder_class
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.filters import evaluate_filter
from embedscope.index import create_index
from embedscope.jsontypes import JSONObject
from embedscope.search.base import SearchResult
from embedscope.search.present import hit_json
from embedscope.search.versions import LoadedVersion
from embedscope.store.base import VersionData, fingerprint

if TYPE_CHECKING:
    from embedscope.collection import Collection
    from embedscope.search.pipeline import SearchPipeline


@dataclass
class Column:
    """One configuration's answer (or why it has none)."""

    target: str  # what was asked for: a version, recipe or encoder name
    result: SearchResult | None = None
    error: str | None = None
    source: str = ""  # "version minilm", "recipe hybrid(bm25+minilm)", "on the fly"
    fit_s: float = 0.0

    def to_json(self, fields: DisplayFields) -> JSONObject:
        r = self.result
        return {
            "target": self.target,
            "version": r.using if r else self.target,
            "encoder": r.encoder if r else None,
            "source": self.source or None,
            "fit_s": round(self.fit_s, 3),
            "took_ms": round(r.seconds * 1000, 3) if r else None,
            "encode_ms": round(r.stages["encode"] * 1000, 2) if r else None,
            "search_ms": round((r.stages["search"] + r.stages["rank"]) * 1000, 2) if r else None,
            "hits": [hit_json(h, fields) for h in (r.hits if r else [])],
            "error": self.error,
        }


@dataclass
class Comparison:
    collection: str
    query: str
    k: int
    where: str | None
    columns: list[Column]
    #: Jaccard overlap of the result ids for each pair "a|b" of columns that answered
    overlap: dict[str, float] = field(default_factory=dict)

    def to_json(self, fields: DisplayFields) -> JSONObject:
        """The one JSON shape of a comparison: `compare --json` prints it, HTTP `/compare` returns it
        (serve/models.py CompareResponse); hits as every JSON answer shows them (`hit_json`)."""
        return {
            "collection": self.collection,
            "query": self.query,
            "k": self.k,
            "where": self.where,
            "runs": [c.to_json(fields) for c in self.columns],
            "overlap": self.overlap,
        }


_ON_THE_FLY: dict[tuple[str, str, str], tuple[LoadedVersion, float]] = {}


def default_targets(col: Collection) -> list[str]:
    """Every version that can encode a query text, then every recipe."""

    versions = [v.name for v in col.versions() if encoder_class(v.encoder["name"]).encodes_text]
    return versions + [r for r in col.recipes() if r not in versions]


def compare(
    col: Collection,
    query: str,
    targets: Sequence[str] | None = None,
    *,
    k: int = 10,
    where: str | None = None,
    by_encoder: bool = False,
    pipeline: SearchPipeline | None = None,
) -> Comparison:
    """Search `query` with each target (default: every version and recipe) and the same filter.

    `by_encoder`: targets are encoder names (see the module docstring). An unknown version, recipe
    or encoder name fails the whole comparison; a target that cannot answer this query (e.g. no
    known word) gets an `error` and the others still answer."""
    if not query.strip():
        raise EmbedscopeError("empty query")
    if k < 1:
        raise EmbedscopeError("k must be at least 1")
    pipe = pipeline or col.pipeline
    names = list(targets) if targets else default_targets(col)
    versions = {v.name for v in col.versions()}
    recipes = set(col.recipes()) - versions
    if where:  # a bad filter is the caller's mistake, not one column's: fail before searching
        evaluate_filter(where, col.metadata_frame()[0])
    if not names:
        raise NotFoundError(f"collection '{col.name}' has no versions to compare; embed it first")
    if by_encoder:
        from embedscope.encoders.registry import encoder_names

        unknown = [e for e in names if e not in encoder_names() and e != "hybrid"]
        if unknown:
            raise EmbedscopeError(
                f"unknown encoder(s) {', '.join(unknown)}; valid: {', '.join(encoder_names())}, hybrid"
            )
    else:
        known = versions | recipes
        unknown = [n for n in names if n not in known]
        if unknown:
            raise NotFoundError(
                f"collection '{col.name}' has no version or recipe {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
    columns = []
    for name in names:
        column = Column(name)
        try:
            using: str | LoadedVersion = name
            if by_encoder:
                using, column.fit_s, column.source = _for_encoder(col, pipe, name)
            column.result = pipe.search(query, k, using=using, where=where)
            if not column.source:
                r = column.result
                column.source = f"recipe {r.encoder}" if r.using in recipes else f"version {r.using}"
        except EmbedscopeError as exc:
            column.error = str(exc)
        columns.append(column)
    return Comparison(col.name, query, k, where, columns, _overlap(columns))


def _overlap(columns: Sequence[Column]) -> dict[str, float]:
    answered = [(c.target, {h.id for h in c.result.hits}) for c in columns if c.result is not None]
    out = {}
    for i, (target_a, sa) in enumerate(answered):
        for target_b, sb in answered[i + 1 :]:
            out[f"{target_a}|{target_b}"] = round(len(sa & sb) / max(len(sa | sb), 1), 4)
    return out


def _for_encoder(
    col: Collection, pipe: SearchPipeline, encoder: str
) -> tuple[str | LoadedVersion, float, str]:
    """(what to search, fit seconds, source) for an encoder name: its version, else on the fly."""
    try:
        name = pipe.name_for_encoder(encoder)
        return name, 0.0, ""
    except NotFoundError:
        if encoder == "hybrid":
            raise
    v, fit_s = _on_the_fly(col, encoder)
    return v, fit_s, "on the fly"


def _on_the_fly(col: Collection, encoder: str) -> tuple[LoadedVersion, float]:
    """The collection encoded with `encoder` into an in-memory version (exact index), cached."""

    # the key is the items' fingerprint (ids and content hashes): a cache hit reads no texts
    content = fingerprint(col.item_hashes().items())
    key = (str(col.path), encoder, content)
    if key not in _ON_THE_FLY:
        items = col.items()
        enc = create_encoder(encoder)
        texts = [i.text for i in items]
        t0 = time.perf_counter()
        if enc.requires_fit:
            enc.fit(texts)
        vectors = enc.encode(texts)
        fit_s = time.perf_counter() - t0
        if not enc.sparse:
            vectors = np.asarray(vectors, dtype=np.float32)
        ids, hashes = [i.id for i in items], [i.hash for i in items]
        data = VersionData(ids, hashes, vectors)
        # assembled as every stored version is (embedding.version_record), only never written
        info = version_record(f"{encoder} (on the fly)", enc, data, {"kind": "exact", "params": {}}, old=None)
        loaded = LoadedVersion(
            info,
            data,
            enc,
            create_index("exact").build(vectors),
            {i: r for r, i in enumerate(ids)},
            revision=f"on-the-fly-{content[:12]}",
        )
        _ON_THE_FLY[key] = (loaded, fit_s)
    return _ON_THE_FLY[key]
