"""Per-encoder cost on books.csv (title + description): fit time, encode throughput, vector bytes.

    python bench/bench_encoders.py [--encoders bm25,tfidf,...] [--limit N] [--out NAME]
    python bench/bench_encoders.py --encoders static --out encoders-static   # static speed only
Prints a table and writes bench/results/encoders.json (or NAME.json). The slow learners are
subsampled so a run stays under ~5 minutes on 2 cores: minilm encodes a 500-book sample
(throughput extrapolated), torch_word2vec trains on 1,500 books. Model loading is excluded from
encode time (one warm-up call). `static` is timed from its on-disk cache; the one-off
distillation (minutes) is reported separately when the cache is cold; its fit_s is counting the
collection's tokens for the SIF weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embedscope.encoders.registry import create_encoder  # noqa: E402

BOOKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "books" / "books.csv"
RESULTS = Path(__file__).parent / "results"
DEFAULT = "onehot,bow,tfidf,bm25,lsa,lda,word2vec,torch_word2vec,static,minilm"
#: encoder -> (max texts to fit on, max texts to encode) for the slow ones
SAMPLE = {"minilm": (None, 500), "torch_word2vec": (1500, None), "lda": (None, None)}


def nbytes(x: Any) -> int:
    if sp.issparse(x):
        return int(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes)
    return int(np.asarray(x).nbytes)


def width(x: Any) -> str:
    return str(x.shape[1])


def bench(name: str, texts: list[str]) -> dict[str, Any]:
    fit_n, enc_n = SAMPLE.get(name, (None, None))
    fit_texts = texts[:fit_n] if fit_n else texts
    enc_texts = texts[:enc_n] if enc_n else texts
    enc = create_encoder(name)
    t0 = time.perf_counter()
    if enc.requires_fit:
        enc.fit(fit_texts)
    elif name == "static":
        _ = enc.dim  # loads (or distills once and caches) the static model
    fit_s = time.perf_counter() - t0
    enc.encode(enc_texts[:2])  # warm-up: loads lazy models (minilm ~1-2 s) outside the timing
    t0 = time.perf_counter()
    x = enc.encode(enc_texts)
    enc_s = time.perf_counter() - t0
    per_item = nbytes(x) / len(enc_texts)
    return {
        "encoder": name,
        "fit_s": round(fit_s, 2),
        "fit_items": len(fit_texts) if enc.requires_fit else 0,
        "encode_items": len(enc_texts),
        "encode_s": round(enc_s, 2),
        "items_per_s": round(len(enc_texts) / enc_s, 1),
        "dim": width(x),
        "sparse": bool(sp.issparse(x)),
        "bytes_per_item": round(per_item, 1),
        "bytes_all_books": int(per_item * len(texts)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoders", default=DEFAULT)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default="encoders", help="results file name (bench/results/OUT.json)")
    args = ap.parse_args()
    if not BOOKS.exists():
        raise SystemExit(f"books.csv not found at {BOOKS}")
    frame = pd.read_csv(BOOKS).dropna(subset=["title", "description"])
    texts = (frame["title"] + ". " + frame["description"]).tolist()[: args.limit]
    rows = []
    for name in args.encoders.split(","):
        rows.append(bench(name.strip(), texts))
        r = rows[-1]
        print(
            f"{r['encoder']:15} fit {r['fit_s']:7.2f}s ({r['fit_items']:5d})  "
            f"encode {r['items_per_s']:9.1f} items/s ({r['encode_items']:5d})  "
            f"dim {r['dim']:>9}  {r['bytes_per_item']:9.1f} B/item",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    out = {
        "data": str(BOOKS.name),
        "items": len(texts),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "sampling": {k: {"fit": v[0], "encode": v[1]} for k, v in SAMPLE.items()},
        "results": rows,
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
