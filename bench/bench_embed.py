"""Embedding throughput: sentence-transformers' default fp32 `encode` vs embedscope's precisions.

    python bench/bench_embed.py                 # CPU, ~3 min on 2 cores
    python bench/bench_embed.py --device cuda   # on a GPU machine (fp16/bf16 too)

Texts are real: book descriptions from ../shared/data/books/books.csv, cut to their first sentence
("short", ~30-45 word pieces, like queries and titles) and whole ("long", up to 256 word pieces).
Each row reports items/s, the speed-up over the baseline on the same texts, and the lowest cosine
between a method's vectors and the baseline's fp32 vectors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, report  # noqa: E402


def load_texts(path: Path, n: int) -> dict[str, list[str]]:
    import pandas as pd

    frame = pd.read_csv(path).dropna(subset=["description"]).head(n)
    short = [str(d).split(". ")[0][:300] for d in frame.description]
    long = [f"{t}. {d}" for t, d in zip(frame.title, frame.description, strict=True)]
    return {"short": short, "long": long}


def timed(fn, texts: list[str], repeat: int = 2) -> tuple[float, np.ndarray]:  # noqa: ANN001
    fn(texts[:32])  # warm-up: first call pays for lazy initialisation
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best, np.asarray(out, dtype=np.float32)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--books", type=Path, default=SHARED_DATA / "books" / "books.csv")
    parser.add_argument("--n", type=int, default=512, help="texts per kind")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or local path")
    parser.add_argument("--out", default="embed")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.transformer import resolve_model_path

    texts = load_texts(args.books, args.n)
    gpu = args.device.startswith("cuda")
    precisions = ["fp32", "fp16", "bf16"] if gpu else ["fp32", "bf16-autocast", "bf16"]
    batch = 256 if gpu else 64
    baseline_model = SentenceTransformer(resolve_model_path(args.model), device=args.device)
    rows = []
    for kind, items in texts.items():
        if kind == "long" and not gpu:
            items = items[: args.n // 2]  # long texts cost ~4x; keep the run short
        base_rate, base_vecs = timed(lambda t: baseline_model.encode(t), items)
        rows.append(
            {
                "texts": f"{kind} ({len(items)})",
                "method": "sentence-transformers encode() default fp32",
                "batch": 32,
                "items_per_s": round(base_rate, 1),
                "speedup": 1.0,
                "min_cosine": 1.0,
            }
        )
        for precision in precisions:
            enc = create_encoder(
                "minilm", {"model": args.model, "precision": precision, "device": args.device}
            )
            rate, vecs = timed(lambda t, enc=enc: enc.encode(t, batch_size=batch), items)
            rows.append(
                {
                    "texts": f"{kind} ({len(items)})",
                    "method": f"embedscope minilm precision={precision}",
                    "batch": batch,
                    "items_per_s": round(rate, 1),
                    "speedup": round(rate / base_rate, 2),
                    "min_cosine": round(min_cosine(vecs, base_vecs), 5),
                }
            )
    report(
        args.out,
        f"MiniLM encoding throughput on {args.device} (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)",
        rows,
        {"device": args.device},
    )


if __name__ == "__main__":
    main()
