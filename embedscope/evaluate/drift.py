"""Drift between two embedding versions of one collection (Boykis, "What are embeddings", drift
detection): how much each item's neighbourhood changes when the encoder or its training changes.

- neighbour overlap: for items present in both versions, the Jaccard overlap of their top-k
  neighbour sets (self excluded, neighbours restricted to the shared items) in A and in B;
- vector cosine and centroid shift: only for two dense versions of equal dimension, and only
  meaningful when both live in the same space (e.g. the same pretrained model before and after an
  upgrade or a text change); two separately trained word2vec models are arbitrarily rotated, so a
  low cosine there says nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope.errors import EmbedscopeError
from embedscope.index import create_index


def _neighbours(vectors: Any, rows: np.ndarray, k: int, batch: int = 512) -> np.ndarray:
    """Top-k rows (self excluded) among `rows` of `vectors`, as indices into `rows`."""
    sub = vectors[rows]
    sub = sub.tocsr() if sp.issparse(sub) else np.ascontiguousarray(sub, dtype=np.float32)
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
    collection: Any,
    version_a: str,
    version_b: str,
    *,
    k: int = 10,
    sample: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
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
    jacc = []
    for i in pick:
        sa, sb = set(nb_a[i][nb_a[i] >= 0]), set(nb_b[i][nb_b[i] >= 0])
        union = sa | sb
        jacc.append(len(sa & sb) / len(union) if union else 1.0)
    jacc_arr = np.array(jacc)
    out: dict[str, Any] = {
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
            "mean": round(float(jacc_arr.mean()), 4),
            **{f"p{p}": round(float(np.percentile(jacc_arr, p)), 4) for p in (10, 25, 50, 75, 90)},
            "identical_share": round(float((jacc_arr == 1.0).mean()), 4),
            "disjoint_share": round(float((jacc_arr == 0.0).mean()), 4),
        },
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
