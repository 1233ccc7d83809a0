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

The issue-20 rows: the issue-9 hybrid (no query stages) beside today's default (the split stage,
which only works on queries of more than 40 words), and with `--long FILE` the books dev set's long
requests too (p50 short / long columns); `--documents SPARSE DENSE` adds the demo's default over
versions with field documents (e.g. bench_quality's copy of the books:
`python bench/bench_pipeline.py --home /tmp/embedscope-bench-quality/collections --long
bench/data/vibe/long-queries.jsonl --documents bm25-fields-categories2 minilm-categories`).
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


def cpu_flags() -> list[str]:
    wanted = {"avx2", "avx512_vnni", "avx512_bf16", "amx_bf16"}
    try:
        return sorted(wanted & set(Path("/proc/cpuinfo").read_text().split()))
    except OSError:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--home", type=Path, default=Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")
    )
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument(
        "--rounds", type=int, default=2, help="each configuration runs this many interleaved rounds"
    )
    ap.add_argument(
        "--long",
        type=Path,
        help="JSON lines of long requests ({'text': ...}, e.g. the books dev set's long-queries.jsonl): "
        "also time the hybrids on them (the split stage works on these only)",
    )
    ap.add_argument(
        "--documents",
        nargs=2,
        metavar=("SPARSE", "DENSE"),
        help="versions with field documents (bench_quality's bm25-fields-categories2 minilm-categories): "
        "also time the demo's default on them",
    )
    args = ap.parse_args()
    ensure_books(args.home)
    from embedscope import Collection
    from embedscope.search.recipe import DEFAULT_HYBRID, make_recipe

    col = Collection.open("books", args.home)
    dense = (
        "minilm"
        if "minilm" in {v.name for v in col.versions()}
        else next(v.name for v in col.versions() if v.encoder["name"] == "minilm")
    )
    if "bm25" not in {v.name for v in col.versions()}:
        col.embed("bm25", index="exact")
    configs = {
        f"{dense} (dense)": (dense, True),
        f"{dense}, no collapse": (dense, False),
        "bm25 (sparse)": ("bm25", True),
        "hybrid: issue 9 default (convex z-score, no stages)": (
            make_recipe("hybrid", ["bm25", dense], stages={}),
            True,
        ),
        "hybrid: default (+ split stage)": (make_recipe("hybrid", ["bm25", dense], **DEFAULT_HYBRID), True),
        "hybrid: rrf k=60": (make_recipe("hybrid", ["bm25", dense], fusion="rrf"), True),
        "hybrid: convex tmm": (
            make_recipe("hybrid", ["bm25", dense], fusion="convex", params={"normalization": "tmm"}),
            True,
        ),
    }
    if args.documents:
        configs["hybrid: default on field documents (the demo's)"] = (
            make_recipe("hybrid", args.documents, **DEFAULT_HYBRID),
            True,
        )
    queries = short_queries()[: args.queries]
    if args.long:
        from embedscope.sources import read_jsonl

        queries += [str(r["text"]) for r in read_jsonl(args.long)]
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
    n_short = min(args.queries, len(short_queries()))
    is_long = np.array([i % len(queries) >= n_short for i in range(len(queries) * args.rounds)])
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
        if is_long.any():
            rows[-1]["p50_ms_short"] = round(float(np.percentile(a[~is_long], 50)), 2)
            rows[-1]["p50_ms_long"] = round(float(np.percentile(a[is_long], 50)), 2)
    report(
        "pipeline",
        f"books ({len(col)} items): search k=10, {len(queries)} queries x {args.rounds} rounds",
        rows,
        {"load_average": os.getloadavg(), "cpu_flags": cpu_flags(), "long_queries": int(is_long.sum())},
    )


if __name__ == "__main__":
    main()
