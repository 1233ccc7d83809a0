"""Encode texts with MiniLM and write float16 .npy chunks: a larger set of real MiniLM vectors for
ANN recall tests (bench_search.py --vectors, bench_scale.py), on a GPU machine when one is available.

    python bench/encode_corpus.py TEXTS.txt OUT_DIR --device cuda --chunks 3   # one text per line
    python bench/encode_corpus.py scifact-books OUT_DIR                        # the real corpus below

`scifact-books` = the sentences of the SciFact abstracts (44,423 of at least 4 words) and the books
("{title}. {description}", 5,197), both from ../shared/data: short scientific sentences and longer
book blurbs, so the vectors cover two unlike regions of the embedding space.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA  # noqa: E402

REAL_CORPUS = "scifact-books"
# a sentence ends at . ! or ? followed by a capital letter: good enough for abstracts, and free of
# a sentence-splitter model that would have to be downloaded
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def real_texts(data: Path = SHARED_DATA) -> list[str]:
    """SciFact abstract sentences, then the books, in file order (deterministic)."""
    import pandas as pd

    texts = []
    with open(data / "beir" / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            abstract = json.loads(line)["text"]
            texts += [s.strip() for s in _SENTENCE_END.split(abstract) if len(s.split()) >= 4]
    books = pd.read_csv(data / "books" / "books.csv").dropna(subset=["description"])
    texts += [f"{t}. {d}" for t, d in zip(books.title, books.description, strict=True)]
    return texts


def encode(
    texts: list[str],
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 256,
    model: str = "all-MiniLM-L6-v2",
) -> tuple[np.ndarray, float]:
    """(float32 vectors, seconds) with the project's MiniLM encoder, after a warm-up batch."""
    from embedscope.encoders.registry import create_encoder

    enc = create_encoder("minilm", {"model": model, "device": device, "precision": precision})
    enc.encode(texts[:64])
    t = time.perf_counter()
    vecs = enc.encode(texts, batch_size=batch_size)
    return np.asarray(vecs, dtype=np.float32), time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("texts", help=f"a text file (one text per line) or '{REAL_CORPUS}'")
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--chunks", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    if args.texts == REAL_CORPUS:
        texts = real_texts()
    else:
        texts = [t for t in Path(args.texts).read_text().splitlines() if t.strip()]
    vecs, seconds = encode(texts, args.device, args.precision, args.batch_size, args.model)
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
