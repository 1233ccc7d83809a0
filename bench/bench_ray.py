"""In-process encoding vs Ray Data batch embedding (`embed --engine ray`) on the same texts.

    python bench/bench_ray.py               # 5,197 books, ~5 min on 2 idle cores
    python bench/bench_ray.py --n 1000      # quicker

Texts: the books ("{title}. {description}", ../shared/data/books/books.csv), MiniLM with the
project's defaults. Both engines get the same chunks of texts (engines.base.chunk_size), so the
vectors must agree (min cosine reported). The in-process time includes its one model load; the
Ray time is everything a user waits for: starting a local Ray, the actors' model loads (in
parallel, one per actor), encoding, shutting Ray down. Ray's overhead = Ray total / in-process
total - 1 (the issue's bar: under 30%).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=None, help="first N books (default: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--actors", type=int, nargs="*", default=[2, 1], help="Ray actor pool sizes to run (CPUs split)"
    )
    args = parser.parse_args()

    from embedscope.encoders.registry import create_encoder
    from embedscope.engines import create_engine
    from embedscope.engines.ray_data import RayEngine

    books = pd.read_csv(SHARED_DATA / "books" / "books.csv").dropna(subset=["description"])
    texts = [f"{t}. {d}" for t, d in zip(books.title, books.description, strict=True)][: args.n]
    rows = []

    t = time.perf_counter()
    enc = create_encoder("minilm")
    enc.encode(["warm-up"])
    load = time.perf_counter() - t
    t = time.perf_counter()
    local = create_engine("local").encode(enc, texts, batch_size=args.batch_size)
    encode = time.perf_counter() - t
    local_total = load + encode
    rows.append(
        {
            "engine": "in-process",
            "texts": len(texts),
            "total_s": round(local_total, 1),
            "startup_s": 0.0,
            "model_load_s": round(load, 1),
            "encode_s": round(encode, 1),
            "texts_per_s": round(len(texts) / local_total, 1),
            "overhead": "",
            "min_cosine": 1.0,
        }
    )
    for actors in args.actors:
        engine = RayEngine(actors=actors)
        t = time.perf_counter()
        vectors = engine.encode(create_encoder("minilm"), texts, batch_size=args.batch_size)
        total = time.perf_counter() - t  # includes ray.shutdown()
        s = engine.stats
        cos = float(np.min(np.sum(vectors * local, axis=1)))
        rows.append(
            {
                "engine": f"ray, {s['actors']} actor(s) x {s['cpus_per_actor']} CPU",
                "texts": len(texts),
                "total_s": round(total, 1),
                "startup_s": s["startup_seconds"],
                "model_load_s": " / ".join(f"{x:.1f}" for x in s["model_load_seconds"]),
                "encode_s": s["pipeline_seconds"],
                "texts_per_s": round(len(texts) / total, 1),
                "overhead": f"{total / local_total - 1:+.0%}",
                "min_cosine": round(cos, 6),
            }
        )
    report(
        "ray",
        f"MiniLM over {len(texts)} books: in-process vs Ray Data (local Ray, this machine's CPUs)",
        rows,
        {
            "note": "encode_s for Ray is the Dataset pipeline (actor start and model loads overlap it); "
            "total_s = start Ray + pipeline + shutdown"
        },
    )


if __name__ == "__main__":
    main()
