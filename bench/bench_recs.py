"""Recommendations on MovieLens 100K, end to end: collection from u.item, interactions from u.data,
MiniLM text embeddings of "title. genres", item2vec and ALS versions, then `evaluate-recs`
(time-aware leave-last-out; full ranking and the sampled NCF protocol) plus request latency.

    python bench/bench_recs.py            # ~3-4 min on 2 shared cores (MiniLM encoding ~1 min)

Writes bench/results/recs.json (the full evaluation report, timings and latencies).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA, latency_ms, machine  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "movielens-100k")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    if not (args.data / "u.data").exists():
        sys.exit(f"MovieLens 100K not found at {args.data}")

    from rich.console import Console

    from embedscope import Collection
    from embedscope.cli.recommend_cmd import print_recs_report
    from embedscope.evaluate.recs import evaluate_recommenders
    from embedscope.recommend import Recommender, embed_behaviour, load_interactions
    from embedscope.sources_movielens import read_movielens_items

    console = Console(width=170)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        col = Collection.create("movielens", root=root)
        t = time.perf_counter()
        col.ingest(
            read_movielens_items(args.data),
            id_field="id",
            text="text",
            metadata=["title", "year", "genres", "release_date"],
        )
        load_interactions(col, args.data / "u.data", fmt="movielens")
        timings["ingest_and_load_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        col.embed(args.encoder, activate=True)
        timings[f"embed_{args.encoder}_s"] = round(time.perf_counter() - t, 2)
        for method in ("item2vec", "als"):
            info = embed_behaviour(col, method)
            timings[f"train_{method}_s"] = info.stats["encode_seconds"]
        t = time.perf_counter()
        report = evaluate_recommenders(
            col, k=args.k, progress=lambda m: console.print(f"[dim]evaluating {m}[/]")
        )
        timings["evaluate_s"] = round(time.perf_counter() - t, 2)

        import embedscope.cli.recommend_cmd as rc

        rc.console = console  # print the table wide, whatever the terminal
        print_recs_report(report)

        # request latency of `recommend` on warm caches, 50 real users per configuration
        users = [str(u) for u in range(1, 51)]
        latency = []
        for label, version, kwargs in [
            ("als, mean", "als", {}),
            (
                "als, recency + mmr 0.7 + popularity 0.2",
                "als",
                {"profile": "recency", "mmr_lambda": 0.7, "popularity_weight": 0.2},
            ),
            ("als, multi", "als", {"profile": "multi"}),
            ("item2vec, recency (predict)", "item2vec", {"profile": "recency"}),
            (
                f"{args.encoder}, mean, where genres contains 'Drama'",
                args.encoder,
                {"where": "genres contains 'Drama'"},
            ),
        ]:
            rec = Recommender(col, version)
            it = iter(users * 100)
            stats = latency_ms(
                lambda rec=rec, kwargs=kwargs, it=it: rec.recommend(next(it), k=10, **kwargs), repeat=50
            )
            latency.append({"config": label, **stats})
        for row in latency:
            console.print(
                f"recommend latency {row['config']}: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms"
            )
        col.close()

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "recs.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "recs",
                "machine": machine(),
                "command": "python bench/bench_recs.py",
                "timings": timings,
                "latency": latency,
                "report": report.to_dict(),
                "table": [
                    {
                        "method": r.method,
                        **{f"full {k}": round(v, 4) for k, v in r.full.items()},
                        **{f"sampled {k}": round(v, 4) for k, v in r.sampled.items()},
                    }
                    for r in report.results
                ],
            },
            indent=2,
        )
    )
    console.print(f"timings: {timings}")
    console.print(f"wrote {out}")
    assert np.all([c["passed"] for c in report.checks]), "behavioural embeddings did not beat popularity"


if __name__ == "__main__":
    main()
