"""Encode a text file (one text per line) with MiniLM and write float16 .npy chunks.

Used to make a larger set of real MiniLM vectors for ANN recall tests (bench_ann_large.py), on a
GPU machine when one is available:

    python bench/encode_corpus.py TEXTS.txt OUT_DIR --device cuda --chunks 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("texts", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--chunks", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    from embedscope.encoders.registry import create_encoder

    texts = [t for t in args.texts.read_text().splitlines() if t.strip()]
    enc = create_encoder("minilm", {"model": args.model, "device": args.device, "precision": args.precision})
    enc.encode(texts[:64])
    t = time.perf_counter()
    vecs = enc.encode(texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - t
    args.out.mkdir(parents=True, exist_ok=True)
    for n, part in enumerate(np.array_split(vecs.astype(np.float16), args.chunks)):
        np.save(args.out / f"vectors-{n}.npy", part)
    meta = {
        "texts": len(texts),
        "seconds": round(seconds, 2),
        "items_per_s": round(len(texts) / seconds, 1),
        "device": args.device,
        "precision": args.precision,
        "model": args.model,
    }
    (args.out / "encode.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
