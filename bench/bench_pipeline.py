"""Search latency through the one search path: dense alone vs BM25 alone vs hybrid recipes, in-process.

    EMBEDSCOPE_HOME=~/.cache/embedscope-bench python bench/bench_pipeline.py     # ~1 min once built
    python bench/bench_pipeline.py --queries 100                                # quicker

The `books` collection (5,197 books; MiniLM with the default HNSW index, as `embedscope demo` builds
it) gets a BM25 version (exact index) if it lacks one. Each configuration answers the same 300
distinct short vibe queries (never cached: the query is encoded every time) with
`SearchPipeline.search(query, k=10)`: encoding, candidates from every part (100 per part for a
recipe), fusion, collapsing repeated works and items -> hits all included. Reported: p50/p99 latency,
the p50 of each stage, and each configuration's p50 as a multiple of dense alone (the issue's target:
hybrid within 1.3x); also the p50 of the process's CPU time per query (all its threads), which a
busy machine disturbs less than wall time. Writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import ensure_books, short_queries  # noqa: E402
from common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--home", type=Path, default=Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")
    )
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument(
        "--rounds", type=int, default=2, help="each configuration runs this many interleaved rounds"
    )
    args = ap.parse_args()
    ensure_books(args.home)
    from embedscope import Collection
    from embedscope.search.recipe import make_recipe

    col = Collection.open("books", args.home)
    dense = next(v.name for v in col.versions() if v.encoder["name"] == "minilm")
    if "bm25" not in {v.name for v in col.versions()}:
        col.embed("bm25", index="exact")
    configs = {
        f"{dense} (dense)": (dense, True),
        f"{dense}, no collapse": (dense, False),
        "bm25 (sparse)": ("bm25", True),
        "hybrid: default (convex z-score)": (make_recipe("hybrid", ["bm25", dense]), True),
        "hybrid: rrf k=60": (make_recipe("hybrid", ["bm25", dense], fusion="rrf"), True),
        "hybrid: convex tmm": (
            make_recipe("hybrid", ["bm25", dense], fusion="convex", params={"normalization": "tmm"}),
            True,
        ),
    }
    queries = short_queries()[: args.queries]
    pipe = col.pipeline
    for using, collapse in configs.values():  # load versions and models, fill caches
        for q in ("warm up", "a cozy mystery"):
            pipe.search(q, 10, using=using, collapse=collapse)
    lat: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    stages: dict[str, list[list[float]]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for q in queries:  # configurations interleaved per query, so background load hits all alike
            for name, (using, collapse) in configs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                res = pipe.search(q, 10, using=using, collapse=collapse)
                lat[name].append((time.perf_counter() - t0) * 1000)
                cpu[name].append((time.process_time() - c0) * 1000)
                stages[name].append([res.stages[s] * 1000 for s in ("encode", "search", "rank")])
    base = float(np.percentile(lat[f"{dense} (dense)"], 50))
    base_cpu = float(np.percentile(cpu[f"{dense} (dense)"], 50))
    rows = []
    for name in configs:
        a, s = np.array(lat[name]), np.array(stages[name])
        p50, cpu50 = float(np.percentile(a, 50)), float(np.percentile(cpu[name], 50))
        rows.append(
            {
                "configuration": name,
                "queries": len(a),
                "p50_ms": round(p50, 2),
                "p99_ms": round(float(np.percentile(a, 99)), 2),
                "encode_p50_ms": round(float(np.percentile(s[:, 0], 50)), 2),
                "search_p50_ms": round(float(np.percentile(s[:, 1], 50)), 2),
                "rank_p50_ms": round(float(np.percentile(s[:, 2], 50)), 2),
                "x_dense_p50": round(p50 / base, 2),
                "cpu_p50_ms": round(cpu50, 2),
                "x_dense_cpu": round(cpu50 / base_cpu, 2),
            }
        )
    report(
        "pipeline",
        f"books ({len(col)} items): search k=10, {len(queries)} queries x {args.rounds} rounds",
        rows,
        {"load_average": os.getloadavg()},
    )


if __name__ == "__main__":
    main()
