"""ANN quality: recall@k of the HNSW index against exact search, swept over expansion_search.

Queries are the vectors of a random sample of the collection's own items, each item excluded from
its own results (as `similar` does). These are in-distribution but not held out: every query point
is also a node of the graph, which makes the graph search somewhat easier than for a new text.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import numpy as np

from embedscope.collection import Collection
from embedscope.errors import EmbedscopeError
from embedscope.evaluate.shift import dense_hint
from embedscope.index import create_index
from embedscope.jsontypes import JSONObject

DEFAULT_EFS = (16, 32, 64, 128, 256)


def _without_self(rows: np.ndarray, selves: np.ndarray, k: int) -> np.ndarray:
    """Drop each query's own row and padding from (q, k+1) results; keep the first k."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (r, s) in enumerate(zip(rows, selves, strict=True)):
        keep = r[(r != s) & (r >= 0)][:k]
        out[i, : len(keep)] = keep
    return out


def ann_recall(
    collection: Collection,
    version: str | None = None,
    *,
    queries: int = 500,
    k: int = 10,
    efs: Sequence[int] = DEFAULT_EFS,
    seed: int = 0,
) -> JSONObject:
    """Recall@k and per-query latency of the version's HNSW index at each expansion_search.

    A version indexed exactly gets a temporary HNSW graph with the default parameters (built here,
    build time reported) so its ANN quality can still be measured."""
    lv = collection.load_version(version)
    if lv.info.sparse:
        raise EmbedscopeError(
            f"version '{lv.info.name}' is sparse ({lv.info.encoder['name']}); "
            f"ANN recall needs a dense version: {dense_hint(collection)}"
        )
    if k < 1 or queries < 1:
        raise EmbedscopeError("k and --queries must be at least 1")
    if not efs or min(efs) < 1:
        raise EmbedscopeError("expansion_search values must be positive integers")
    vectors = np.ascontiguousarray(lv.data.vectors, dtype=np.float32)
    n = len(vectors)
    if n < k + 2:
        raise EmbedscopeError(f"version '{lv.info.name}' has {n} items; need more than k + 1 = {k + 1}")
    index, built_s = lv.index, None
    if index.kind != "hnsw":
        t0 = time.perf_counter()
        index = create_index("hnsw").build(vectors)
        built_s = round(time.perf_counter() - t0, 3)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    q = vectors[rows]
    exact = create_index("exact").build(vectors)
    truth = _without_self(exact.search(q, k + 1)[0], rows, k)
    # ties: an item scoring as high as the true k-th neighbour is a right answer even when exact
    # search put another of the tied items in its top k (ann-benchmarks counts recall the same way)
    kth = np.array(
        [
            (vectors[t[t >= 0]] @ qv).min() if (t >= 0).any() else np.inf
            for t, qv in zip(truth, q, strict=True)
        ]
    )
    points = []
    for ef in sorted(set(int(e) for e in efs)):
        found = np.full((len(q), k + 1), -1, dtype=np.int64)
        lat = []
        for i in range(len(q)):
            t0 = time.perf_counter()
            # an HNSW index (usearch's or pgvector's) takes expansion_search; the contract does not
            r, _ = index.search(q[i : i + 1], k + 1, expansion_search=ef)  # type: ignore[call-arg]
            lat.append((time.perf_counter() - t0) * 1000)
            found[i] = r[0]
        found = _without_self(found, rows, k)
        hits = [
            min(int(np.count_nonzero(vectors[a[a >= 0]] @ qv >= bound - 1e-6)), int((b >= 0).sum()))
            / max((b >= 0).sum(), 1)
            for a, b, qv, bound in zip(found, truth, q, kth, strict=True)
        ]
        points.append(
            {
                "expansion_search": ef,
                "recall": round(float(np.mean(hits)), 4),
                "queries_below_full_recall": int(sum(h < 1 for h in hits)),
                "latency_ms_p50": round(statistics.median(lat), 4),
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 4),
            }
        )
    return {
        "collection": collection.name,
        "version": lv.info.name,
        "encoder": lv.info.encoder["name"],
        "items": n,
        "dim": int(vectors.shape[1]),
        "k": k,
        "queries": len(q),
        "seed": seed,
        "query_source": "item vectors (random sample, each item excluded from its own results)",
        "index": {
            "kind": "hnsw",
            "params": dict(index.params),
            "stored": built_s is None,
            "build_seconds": built_s,
        },
        "points": points,
    }
