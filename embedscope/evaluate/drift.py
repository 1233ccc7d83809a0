"""Drift between two embedding versions of one collection (Boykis, "What are embeddings", drift
detection): how much each item's neighbourhood changes when the encoder or its training changes.
`drift_report` puts it together with drift over time (queries, items: see `shift.py`).

- neighbour overlap: for items present in both versions, the Jaccard overlap of their top-k
  neighbour sets (self excluded, neighbours restricted to the shared items) in A and in B;
- rank-biased overlap (RBO) of the same two neighbour lists, which, unlike Jaccard, weighs
  agreement at the top more than at the bottom;
- vector cosine and centroid shift: only for two dense versions of equal dimension, and only
  meaningful when both live in the same space (e.g. the same pretrained model before and after an
  upgrade or a text change); two separately trained word2vec models are arbitrarily rotated, so a
  low cosine there says nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from embedscope.collection import Collection
from embedscope.errors import EmbedscopeError
from embedscope.index import create_index
from embedscope.index.quantized import StoredVectors
from embedscope.jsontypes import JSONObject

RBO_P = 0.9  # Webber et al.'s example persistence: the top 10 carry ~86% of the weight


def rbo(s: Sequence[Hashable], t: Sequence[Hashable], p: float = RBO_P) -> float:
    """Extrapolated rank-biased overlap of two rankings without repeats (Webber, Moffat & Zobel,
    "A similarity measure for indefinite rankings", TOIS 2010, eq. 32; lists may differ in length).
    1 = same order (or one a prefix of the other), 0 = disjoint.

    Written here: the `rbo` package on PyPI pins NumPy below 2, and the formula is ten lines."""
    if not 0 < p < 1:
        raise EmbedscopeError("RBO persistence p must be between 0 and 1")
    short, long_ = (s, t) if len(s) <= len(t) else (t, s)
    if not long_:
        return 1.0
    if not short:
        return 0.0
    n_s, n_l = len(short), len(long_)
    seen_s: set[Hashable] = set()
    seen_l: set[Hashable] = set()
    overlap = 0
    total = 0.0
    overlap_at_s = 0
    for d in range(1, n_l + 1):
        if d <= n_s:
            seen_s.add(short[d - 1])
            overlap += short[d - 1] in seen_l
        seen_l.add(long_[d - 1])
        overlap += long_[d - 1] in seen_s
        if d == n_s:
            overlap_at_s = overlap
        total += overlap / d * p**d
        if d > n_s:  # the short list's agreement, extrapolated past its end
            total += overlap_at_s * (d - n_s) / (n_s * d) * p**d
    return (1 - p) / p * total + ((overlap - overlap_at_s) / n_l + overlap_at_s / n_s) * p**n_l


def _spread(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": round(float(values.mean()), 4),
        **{f"p{q}": round(float(np.percentile(values, q)), 4) for q in (10, 25, 50, 75, 90)},
    }


def _neighbours(vectors: StoredVectors, rows: np.ndarray, k: int, batch: int = 512) -> np.ndarray:
    """Top-k rows (self excluded) among `rows` of `vectors`, as indices into `rows`."""
    picked = vectors[rows]
    sub = np.ascontiguousarray(picked, dtype=np.float32) if isinstance(picked, np.ndarray) else picked.tocsr()
    index = create_index("exact").build(sub)
    out = np.empty((len(rows), k), dtype=np.int64)
    for start in range(0, len(rows), batch):
        q = sub[start : start + batch]
        found, _ = index.search(q, k + 1)
        for i, r in enumerate(found):
            me = start + i
            keep = r[(r != me) & (r >= 0)][:k]
            out[me] = -1
            out[me, : len(keep)] = keep
    return out


def drift(
    collection: Collection,
    version_a: str,
    version_b: str,
    *,
    k: int = 10,
    sample: int | None = None,
    seed: int = 0,
) -> JSONObject:
    """Neighbour-overlap (and, where comparable, vector) drift from version A to version B."""
    if version_a == version_b:
        raise EmbedscopeError("give two different versions")
    if k < 1:
        raise EmbedscopeError("k must be at least 1")
    a, b = collection.load_version(version_a), collection.load_version(version_b)
    shared = sorted(set(a.row_of) & set(b.row_of))
    if len(shared) < k + 2:
        raise EmbedscopeError(
            f"versions '{version_a}' and '{version_b}' share {len(shared)} items; need at least {k + 2}"
        )
    rows_a = np.array([a.row_of[i] for i in shared])
    rows_b = np.array([b.row_of[i] for i in shared])
    nb_a = _neighbours(a.data.vectors, rows_a, k)
    nb_b = _neighbours(b.data.vectors, rows_b, k)
    if sample is not None and sample < len(shared):
        # neighbours are found among all shared items; only the reported items are sampled
        pick = np.sort(np.random.default_rng(seed).choice(len(shared), size=sample, replace=False))
    else:
        pick = np.arange(len(shared))
    jacc, overlap = [], []
    for i in pick:
        la, lb = nb_a[i][nb_a[i] >= 0].tolist(), nb_b[i][nb_b[i] >= 0].tolist()
        sa, sb = set(la), set(lb)
        union = sa | sb
        jacc.append(len(sa & sb) / len(union) if union else 1.0)
        overlap.append(rbo(la, lb))
    jacc_arr = np.array(jacc)
    out: JSONObject = {
        "collection": collection.name,
        "a": {
            "version": version_a,
            "encoder": a.info.encoder["name"],
            "dim": a.info.dim,
            "items": a.info.count,
        },
        "b": {
            "version": version_b,
            "encoder": b.info.encoder["name"],
            "dim": b.info.dim,
            "items": b.info.count,
        },
        "shared_items": len(shared),
        "only_in_a": len(a.row_of) - len(shared),
        "only_in_b": len(b.row_of) - len(shared),
        "k": k,
        "items_compared": int(len(pick)),
        "neighbour_jaccard": {
            **_spread(jacc_arr),
            "identical_share": round(float((jacc_arr == 1.0).mean()), 4),
            "disjoint_share": round(float((jacc_arr == 0.0).mean()), 4),
        },
        "neighbour_rbo": {"p": RBO_P, **_spread(np.array(overlap))},
        "vector": None,
    }
    dense = not (a.info.sparse or b.info.sparse)
    if dense and a.info.dim == b.info.dim:
        va = np.asarray(a.data.vectors, dtype=np.float32)[rows_a[pick]]
        vb = np.asarray(b.data.vectors, dtype=np.float32)[rows_b[pick]]
        na, nb = np.linalg.norm(va, axis=1), np.linalg.norm(vb, axis=1)
        ok = (na > 0) & (nb > 0)
        cos = (va[ok] * vb[ok]).sum(1) / (na[ok] * nb[ok])
        ca, cb = va.mean(0), vb.mean(0)
        denom = float(np.linalg.norm(ca) * np.linalg.norm(cb))
        out["vector"] = {
            "mean_cosine": round(float(cos.mean()), 4) if len(cos) else None,
            "p10_cosine": round(float(np.percentile(cos, 10)), 4) if len(cos) else None,
            "centroid_l2_shift": round(float(np.linalg.norm(ca - cb)), 4),
            "centroid_cosine": round(float(ca @ cb) / denom, 4) if denom else None,
            "note": "meaningful only if both versions share one vector space (same pretrained model)",
        }
    else:
        out["vector_note"] = (
            "vector cosine and centroid shift need two dense versions of equal dimension "
            f"(A: {'sparse' if a.info.sparse else 'dense'} {a.info.dim}-d, "
            f"B: {'sparse' if b.info.sparse else 'dense'} {b.info.dim}-d)"
        )
    return out


def drift_report(
    collection: Collection,
    *,
    versions: tuple[str, str] | None = None,
    queries_log: str | Path | None = None,
    window: str | int = "day",
    items: bool = False,
    version: str | None = None,
    k: int = 10,
    sample: int | None = None,
    seed: int = 0,
) -> JSONObject:
    """One report of what moved: between two versions, in the queries over time (from the server's
    query log), and in the items since `version` embedded them. Asked-for parts only."""
    from embedscope.evaluate.shift import item_drift, query_drift

    if versions is None and queries_log is None and not items:
        raise EmbedscopeError(
            "say what to compare: two versions, the query log (--queries), or the items (--items)"
        )
    out: JSONObject = {"collection": collection.name}
    if versions is not None:
        out["versions"] = drift(collection, *versions, k=k, sample=sample, seed=seed)
    if queries_log is not None:
        out["queries"] = query_drift(collection, queries_log, version=version, window=window, seed=seed)
    if items:
        out["items"] = item_drift(collection, version=version, seed=seed)
    return out
