"""Compare encoders side by side on one query: top-k results plus encode and search time for each.

Used by `embedscope compare` and reusable by the HTTP layer (returns plain dicts). For each encoder
the collection's own embedding version is used when one exists (the active version if it is of that
encoder, else the first version of that encoder); otherwise the encoder is fitted and the collection
encoded on the fly, and kept in an in-process cache keyed by the collection's content, so a second
comparison in the same process (e.g. the server) is fast.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.base import Encoder, is_empty_query
from embedscope.encoders.hybrid import reciprocal_rank_fusion
from embedscope.encoders.registry import create_encoder, encoder_names
from embedscope.errors import EmbedscopeError

#: how deep each run goes before hybrid fusion, so items ranked low by one retriever can still rise
FUSION_DEPTH = 100


@dataclass
class _Space:
    """One encoder's view of the collection: fitted encoder + document matrix + row ids."""

    encoder: Encoder
    ids: list[str]
    vectors: Any
    source: str  # "version <name>" or "on the fly"
    fit_s: float


_CACHE: dict[tuple[str, str, str], _Space] = {}


def _version_for(col: Any, name: str) -> str | None:
    versions = [v for v in col.versions() if v.encoder.get("name") == name]
    if not versions:
        return None
    active = col.store.get_setting("active_version") if hasattr(col, "store") else None
    for v in versions:
        if v.name == active:
            return v.name
    by_name = [v for v in versions if v.name == name]
    return (by_name or versions)[0].name


def _space(col: Any, name: str) -> _Space:
    version = _version_for(col, name)
    if version is not None:
        ids, vectors = col.vectors(version)
        return _Space(col.encoder(version), list(ids), vectors, f"version {version}", 0.0)
    items = col.items()
    key = (str(getattr(getattr(col, "store", None), "path", col.name)), name, _content_key(items))
    if key not in _CACHE:
        enc = create_encoder(name)
        texts = [i.text for i in items]
        t0 = time.perf_counter()
        if enc.requires_fit:
            enc.fit(texts)
        vectors = enc.encode(texts)
        _CACHE[key] = _Space(enc, [i.id for i in items], vectors, "on the fly", time.perf_counter() - t0)
    return _CACHE[key]


def _content_key(items: Sequence[Any]) -> str:
    import hashlib

    h = hashlib.sha1()
    for i in items:
        h.update(f"{i.id}\0{getattr(i, 'hash', i.text)}\n".encode())
    return h.hexdigest()


def _scores(space: _Space, query: str) -> tuple[np.ndarray, float, float]:
    """All documents' scores for the query, the encode time and the search time (seconds)."""
    t0 = time.perf_counter()
    q = space.encoder.encode_queries([query])
    t1 = time.perf_counter()
    if is_empty_query(q):
        raise EmbedscopeError("no known terms (only stop words or words unknown to this encoder)")
    docs = space.vectors
    if sp.issparse(q) or sp.issparse(docs):
        scores = np.asarray((sp.csr_matrix(q) @ sp.csr_matrix(docs).T).todense()).ravel()
    else:
        scores = np.asarray(docs) @ np.asarray(q, dtype=np.float32).ravel()
    return scores, t1 - t0, time.perf_counter() - t1


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _title(item: Any) -> str:
    meta = getattr(item, "metadata", {}) or {}
    title = meta.get("title") or meta.get("name")
    return str(title) if title else (item.text[:70] + ("…" if len(item.text) > 70 else ""))


def compare(col: Any, query: str, encoders: Sequence[str], k: int = 5) -> dict[str, Any]:
    """Top-k of each encoder for `query` on collection `col` (an embedscope.api.Collection).

    Returns {"collection", "query", "k", "results": [{"encoder", "source", "fit_s", "encode_ms",
    "search_ms", "hits": [{"id", "title", "score"}], "error"}]}. One encoder failing (unknown word,
    bad name) gives that row an "error" and does not stop the others."""
    if not query.strip():
        raise EmbedscopeError("empty query")
    if k < 1:
        raise EmbedscopeError("k must be at least 1")
    unknown = [e for e in encoders if e not in encoder_names()]
    if unknown:
        raise EmbedscopeError(f"unknown encoder(s) {', '.join(unknown)}; valid: {', '.join(encoder_names())}")
    items = {i.id: i for i in col.items()}
    results = []
    for name in encoders:
        row: dict[str, Any] = {
            "encoder": name,
            "source": None,
            "fit_s": None,
            "encode_ms": None,
            "search_ms": None,
            "hits": [],
            "error": None,
        }
        try:
            if name == "hybrid":
                ranked, row = _hybrid(col, query, k, row)
            else:
                space = _space(col, name)
                scores, enc_s, search_s = _scores(space, query)
                top = _top(scores, k)
                ranked = [(space.ids[j], float(scores[j])) for j in top]
                row.update(
                    source=space.source,
                    fit_s=round(space.fit_s, 3),
                    encode_ms=round(enc_s * 1000, 2),
                    search_ms=round(search_s * 1000, 2),
                )
            row["hits"] = [
                {"id": i, "title": _title(items[i]) if i in items else i, "score": round(s, 4)}
                for i, s in ranked
            ]
        except EmbedscopeError as exc:
            row["error"] = str(exc)
        results.append(row)
    return {"collection": getattr(col, "name", None), "query": query, "k": k, "results": results}


def _hybrid(
    col: Any, query: str, k: int, row: dict[str, Any]
) -> tuple[list[tuple[str, float]], dict[str, Any]]:
    """BM25 + MiniLM runs (FUSION_DEPTH deep) fused with reciprocal rank fusion (k=60)."""
    from embedscope.encoders.hybrid import HybridEncoder

    defaults = HybridEncoder.defaults
    runs, sources, fit_s, enc_s, search_s = [], [], 0.0, 0.0, 0.0
    for part in (defaults["sparse"], defaults["dense"]):
        space = _space(col, part)
        try:
            scores, e, s = _scores(space, query)
        except EmbedscopeError:
            runs.append({})  # e.g. only unknown words for BM25: the dense run alone decides
            continue
        top = _top(scores, FUSION_DEPTH)
        runs.append(
            {space.ids[j]: float(scores[j]) for j in top if scores[j] > 0 or not space.encoder.sparse}
        )
        sources.append(f"{part}: {space.source}")
        fit_s, enc_s, search_s = fit_s + space.fit_s, enc_s + e, search_s + s
    t0 = time.perf_counter()
    fused = list(reciprocal_rank_fusion(runs, k=60).items())[:k]
    search_s += time.perf_counter() - t0
    if not fused:
        raise EmbedscopeError("no known terms")
    row.update(
        source="; ".join(sources) + " (RRF)",
        fit_s=round(fit_s, 3),
        encode_ms=round(enc_s * 1000, 2),
        search_ms=round(search_s * 1000, 2),
    )
    return fused, row
