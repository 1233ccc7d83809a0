"""Which vector search to use: exact and approximate libraries on the same vectors.

    python bench/bench_search.py            # ~5 min on 2 cores
    python bench/bench_search.py --quick    # smaller sizes

Part 1 (speed of exact search, content does not matter): 200k x 384 float32 unit vectors,
single-query latency of a plain NumPy product vs embedscope's ExactIndex vs FAISS IndexFlatIP vs
usearch exact vs LanceDB brute force (if installed).
Part 2 (recall on real MiniLM embeddings): the books corpus embedded with all-MiniLM-L6-v2 (the
`books` demo collection, built if absent); 500 held-out books are the queries. Recall@10 against
exact, build time, latency, memory, for usearch, hnswlib and FAISS HNSW. With `--vectors DIR`
(made by bench/encode_corpus.py, e.g. 50k SciFact sentences + books encoded on a GPU) the same
comparison runs on that larger set with 1,000 held-out queries.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, latency_ms, report  # noqa: E402

from embedscope.index import create_index  # noqa: E402
from embedscope.index.base import top_k  # noqa: E402


def unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_speed(n: int, repeat: int) -> list[dict]:
    base = unit(n, 384)
    queries = unit(repeat + 5, 384, seed=1)
    rows = []
    it = iter(range(10**9))

    def q() -> np.ndarray:
        return queries[next(it) % len(queries)][None, :]

    numpy_lat = latency_ms(lambda: top_k(q() @ base.T, 10), repeat)
    rows.append({"method": "numpy matmul + argpartition (baseline)", "n": n, **numpy_lat, "ratio": 1.0})
    idx = create_index("exact").build(base)
    lat = latency_ms(lambda: idx.search(q(), 10), repeat)
    rows.append(
        {
            "method": "embedscope ExactIndex",
            "n": n,
            **lat,
            "ratio": round(lat["p50_ms"] / numpy_lat["p50_ms"], 2),
        }
    )
    try:
        import faiss

        fidx = faiss.IndexFlatIP(384)
        fidx.add(base)
        lat = latency_ms(lambda: fidx.search(q(), 10), repeat)
        rows.append(
            {
                "method": "faiss IndexFlatIP",
                "n": n,
                **lat,
                "ratio": round(lat["p50_ms"] / numpy_lat["p50_ms"], 2),
            }
        )
    except ImportError:
        pass
    from usearch.index import search as usearch_search

    lat = latency_ms(lambda: usearch_search(base, q()[0], 10, metric="ip", exact=True), repeat)
    rows.append(
        {"method": "usearch exact", "n": n, **lat, "ratio": round(lat["p50_ms"] / numpy_lat["p50_ms"], 2)}
    )
    try:
        import lancedb

        with tempfile.TemporaryDirectory() as tmp:
            db = lancedb.connect(tmp)
            import pyarrow as pa

            table = db.create_table(
                "v",
                pa.table(
                    {"id": np.arange(n), "vector": pa.FixedSizeListArray.from_arrays(base.ravel(), 384)}
                ),
            )
            lat = latency_ms(
                lambda: table.search(q()[0]).metric("dot").limit(10).to_arrow(), max(5, repeat // 10)
            )
            rows.append(
                {
                    "method": "lancedb brute force",
                    "n": n,
                    **lat,
                    "ratio": round(lat["p50_ms"] / numpy_lat["p50_ms"], 2),
                }
            )
    except ImportError:
        rows.append({"method": "lancedb (not installed: pip install lancedb)", "n": n})
    return rows


def real_vectors() -> tuple[np.ndarray, str]:
    from embedscope import Collection

    if "books" not in Collection.list():
        books = SHARED_DATA / "books" / "books.csv"
        if not books.exists():
            raise SystemExit(f"no books collection and no {books}; run `embedscope demo` first")
        from embedscope.cli.demo import run_demo

        run_demo(data=str(books), collection="books", encoder="minilm", limit=None)
    col = Collection.open("books")
    version = next(v.name for v in col.versions() if v.encoder["name"] == "minilm")
    _, vectors = col.vectors(version)
    return np.asarray(vectors, dtype=np.float32), f"books/{version}"


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def ann_quality(vectors: np.ndarray, source: str, n_queries: int = 500) -> list[dict]:
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(vectors))
    queries, base = vectors[perm[:n_queries]], vectors[perm[n_queries:]]
    truth, _ = top_k(queries @ base.T, 10)
    rows = []

    def add(method: str, build_s: float, search_one, nbytes: int, params: str) -> None:  # noqa: ANN001
        found = np.stack([search_one(q) for q in queries])
        it = iter(range(10**9))
        lat = latency_ms(lambda: search_one(queries[next(it) % n_queries]), 300)
        rows.append(
            {
                "method": method,
                "params": params,
                "data": f"{source} n={len(base)}",
                "recall@10": round(recall(found, truth), 4),
                "build_s": round(build_s, 2),
                "p50_ms": lat["p50_ms"],
                "p99_ms": lat["p99_ms"],
                "index_MB": round(nbytes / 2**20, 1),
            }
        )

    t = time.perf_counter()
    exact = create_index("exact").build(base)
    add(
        "embedscope exact",
        time.perf_counter() - t,
        lambda q: exact.search(q[None], 10)[0][0],
        exact.nbytes(),
        "",
    )
    for ef in (32, 64, 128):
        t = time.perf_counter()
        idx = create_index("hnsw", expansion_search=ef).build(base)
        add(
            "usearch HNSW (embedscope default)",
            time.perf_counter() - t,
            lambda q, idx=idx: idx.search(q[None], 10)[0][0],
            idx.nbytes(),
            f"M=16 efC=128 ef={ef}",
        )
    try:
        import hnswlib

        t = time.perf_counter()
        h = hnswlib.Index(space="ip", dim=base.shape[1])
        h.init_index(max_elements=len(base), ef_construction=128, M=16, random_seed=0)
        h.add_items(base, np.arange(len(base)), num_threads=os.cpu_count())
        build = time.perf_counter() - t
        h.set_ef(64)
        add("hnswlib", build, lambda q: h.knn_query(q[None], 10)[0][0], 0, "M=16 efC=128 ef=64")
    except ImportError:
        pass
    try:
        import faiss

        t = time.perf_counter()
        f = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        f.hnsw.efConstruction = 128
        f.add(base)
        build = time.perf_counter() - t
        f.hnsw.efSearch = 64
        add("faiss HNSWFlat", build, lambda q: f.search(q[None], 10)[1][0], 0, "M=16 efC=128 ef=64")
    except ImportError:
        pass
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--vectors", type=Path, help="folder of vectors-*.npy from encode_corpus.py (more real vectors)"
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else 200_000
    report(
        "search-exact",
        f"exact search, one query at a time, {n} x 384 float32",
        exact_speed(n, 50 if args.quick else 200),
    )
    vectors, source = real_vectors()
    rows = ann_quality(vectors, source)
    if args.vectors:
        chunks = sorted(args.vectors.glob("vectors-*.npy"), key=lambda p: int(p.stem.split("-")[1]))
        big = np.concatenate([np.load(c).astype(np.float32) for c in chunks])
        big /= np.linalg.norm(big, axis=1, keepdims=True)
        rows += ann_quality(big, f"{args.vectors.name} (MiniLM, SciFact sentences + books)", n_queries=1000)
    report("search-ann", "ANN recall@10 against exact on real MiniLM vectors, one query at a time", rows)


if __name__ == "__main__":
    main()
