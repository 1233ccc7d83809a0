"""Recommendations on MovieLens 100K, end to end: collection from u.item, interactions from u.data,
MiniLM text embeddings of "title. genres", item2vec, ALS, EASE and ItemKNN versions, then
`evaluate-recs` (time-aware leave-last-out; full ranking and the sampled NCF protocol) plus request
latency; or the random 80/20 protocol of the published MovieLens tables:

    python bench/bench_recs.py                      # ~4-5 min on 2 shared cores (MiniLM ~1 min)
    python bench/bench_recs.py --protocol random    # MostPop, ItemKNN, ALS, item2vec, EASE; 5 seeds

Writes bench/results/recs.json (the full evaluation report, timings and latencies), or
bench/results/recs-random.json (per method: mean and std over seeds, every run, λ / k chosen).
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
    parser.add_argument(
        "--protocol",
        choices=("last", "random"),
        default="last",
        help="last: evaluate-recs' leave-last-out, end to end; random: random 80/20 of all ratings",
    )
    parser.add_argument("--seeds", type=int, default=5, help="random: splits to average (seeds 0..n-1)")
    args = parser.parse_args()
    if not (args.data / "u.data").exists():
        sys.exit(f"MovieLens 100K not found at {args.data}")
    if args.protocol == "random":
        random_protocol(args)
        return

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
        for method in ("item2vec", "als", "ease", "itemknn"):
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
            ("ease, recency (predict)", "ease", {"profile": "recency"}),
            ("itemknn, recency (predict)", "itemknn", {"profile": "recency"}),
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


def cpu_flags() -> list[str]:
    wanted = {"avx2", "avx512_vnni", "avx512_bf16", "amx_bf16"}
    try:
        words = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted(wanted & set(words))


def random_protocol(args: argparse.Namespace) -> None:
    """The published tables' protocol (Recommenders.jl's ML-100K table: MostPop 0.220, ItemKNN 0.399,
    MF 0.440, SLIM 0.436 NDCG@10): seeded random 80/20 of all ratings, all of them positives."""
    from rich.console import Console

    import embedscope.cli.recommend_cmd as rc
    from embedscope.evaluate.recs_random import evaluate_random_split
    from embedscope.recommend.interactions import normalise
    from embedscope.sources_movielens import read_movielens_items, read_movielens_ratings

    console = Console(width=170)
    load_before = os.getloadavg()
    frame = normalise(read_movielens_ratings(args.data))
    catalogue = read_movielens_items(args.data)["id"].tolist()
    t = time.perf_counter()
    report = evaluate_random_split(
        frame,
        catalogue,
        collection="movielens-100k",
        seeds=list(range(args.seeds)),
        k=args.k,
        progress=lambda m: console.print(f"[dim]{m}[/]"),
    )
    total = round(time.perf_counter() - t, 1)
    rc.console = console
    rc.print_random_report(report)
    load_after = os.getloadavg()
    flags = cpu_flags()
    console.print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; CPU flags: "
        f"{' '.join(flags) or 'none of avx2/avx512_vnni/avx512_bf16/amx_bf16'}; total {total} s"
    )
    published = {"popularity": 0.2197, "itemknn": 0.3986, "MF (Recommenders.jl ImplicitMF)": 0.4402}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "recs-random.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "recs-random",
                "machine": {**machine(), "cpu_flags": flags},
                "command": f"python bench/bench_recs.py --protocol random --seeds {args.seeds}",
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in load_after],
                "total_seconds": total,
                "published_ndcg@10": {**published, "SLIM ElasticNet": 0.4359},
                "table": [{"method": r["method"], **r["mean"]} for r in report.results],
                "report": report.to_dict(),
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")
    ease = next(r for r in report.results if r["method"] == "ease")["mean"]
    assert ease["NDCG@10"] >= 0.43, f"EASE NDCG@10 {ease['NDCG@10']:.4f} is far below the published MF/SLIM"


if __name__ == "__main__":
    main()
