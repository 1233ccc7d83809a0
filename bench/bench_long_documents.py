"""Long documents for MiniLM on SciFact: does encoding past the first 256 word pieces help?

    python bench/bench_long_documents.py [--home DIR] [--window 256] [--cache DIR]

MiniLM reads the first 256 word pieces of a document (its `max_seq_length`); 72% of SciFact's
abstracts are longer (median 317 with the title), and a claim often matches the conclusions at the
end. Each abstract (its text in the collection `evaluate` builds) is cut into consecutive windows of
`--window` word pieces and every window encoded (sentence-transformers fp32, the reference
implementation). A document is then scored from its windows' cosines with the query:
- first: the first window (what every MiniLM version does today; reproduces `evaluate`'s 0.6451);
- mean: the cosine with the normalised mean of its windows' vectors (one vector per item, as the
  store keeps);
- max: the best window (MaxP, Dai and Callan 2019; needs several vectors per item);
- first+mean, first+max: the average of the two.
Each alone and in the default hybrid (convex z-score, equal weights, 100 candidates per part) with
BM25's runs from the `beir-scifact` collection `embedscope evaluate` caches under --home. nDCG@10 and
Recall@100 on the 300 test queries, and the paired randomisation test against "first". The
windows' vectors are cached under --cache (the first run encodes ~9,400 windows: minutes).
Writes bench/results/long-documents.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import SHARED_DATA, paired, report

SCIFACT = SHARED_DATA / "beir" / "scifact"


def windows(tokenizer: Any, texts: list[str], size: int) -> tuple[list[str], np.ndarray]:
    """Consecutive windows of `size` word pieces (less the two special tokens) of each text, as
    substrings of the text, and the document each belongs to."""
    pieces, owner = [], []
    for i, text in enumerate(texts):
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        step = size - 2
        for start in range(0, max(len(offsets), 1), step):
            chunk = offsets[start : start + step]
            pieces.append(text[chunk[0][0] : chunk[-1][1]] if chunk else text)
            owner.append(i)
    return pieces, np.array(owner)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--home", type=Path, default=Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")
    )
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedscope-bench-longdocs")
    args = ap.parse_args()
    started = time.perf_counter()
    from sentence_transformers import SentenceTransformer

    from embedscope import Collection
    from embedscope.encoders.transformer import DEFAULT_MODEL, resolve_model_path
    from embedscope.evaluate.ir import per_query_scores
    from embedscope.search.fusion import Run, convex
    from embedscope.sources import load_beir

    ds = load_beir(SCIFACT)
    qids = list(ds.qrels)
    doc_ids = list(ds.corpus)
    col = Collection.open("beir-scifact", args.home)  # texts as `evaluate` ingested them, and BM25
    texts = [item.text if item is not None else "" for item in col.get_items(doc_ids)]
    model = SentenceTransformer(str(resolve_model_path(DEFAULT_MODEL)), device="cpu")
    chunks, owner = windows(model.tokenizer, texts, args.window)
    print(f"{len(texts)} abstracts -> {len(chunks)} windows of <= {args.window} word pieces", flush=True)
    key = hashlib.sha256("\0".join(chunks).encode()).hexdigest()[:16]
    cached = args.cache / f"windows-{key}.npy"
    if cached.exists():
        vectors = np.load(cached)
    else:
        vectors = model.encode(chunks, batch_size=32, normalize_embeddings=True, show_progress_bar=True)
        args.cache.mkdir(parents=True, exist_ok=True)
        np.save(cached, vectors)
    queries = model.encode([ds.queries[q] for q in qids], normalize_embeddings=True)
    cos = queries @ vectors.T  # queries x windows
    n = len(texts)
    first_row = np.full(n, -1)
    first_row[owner[::-1]] = np.arange(len(owner))[::-1]  # each document's first window
    mean = np.zeros((n, vectors.shape[1]), dtype=np.float64)
    np.add.at(mean, owner, vectors)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    best = np.full((len(qids), n), -2.0)
    np.maximum.at(best.T, owner, cos.T)
    first = cos[:, first_row]
    scorings = {
        "first": first,
        "mean": queries @ mean.T,
        "max": best,
        "first+mean": (first + queries @ mean.T) / 2,
        "first+max": (first + best) / 2,
    }

    bm25 = []
    for q in qids:
        hits = col.search(ds.queries[q], 100, version="bm25", collapse=False)
        bm25.append(Run([h.id for h in hits], np.array([h.score for h in hits]), 0.0))

    def dense_runs(matrix: np.ndarray) -> list[Run]:
        out = []
        for row in matrix:
            top = np.argsort(-row, kind="stable")[:100]
            out.append(Run([doc_ids[t] for t in top], row[top].astype(np.float64), -1.0))
        return out

    def as_run(runs: list[Run]) -> dict[str, dict[str, float]]:
        return {
            q: dict(zip(r.ids[:100], r.scores[:100].tolist(), strict=True))
            for q, r in zip(qids, runs, strict=True)
        }

    per: dict[str, dict[str, np.ndarray]] = {}
    for name, matrix in scorings.items():
        dense = dense_runs(matrix)
        fused = [Run(*convex([b, d], [0.5, 0.5]), None) for b, d in zip(bm25, dense, strict=True)]
        for label, runs in ((f"minilm {name}", dense), (f"hybrid, minilm {name}", fused)):
            scores = per_query_scores(ds.qrels, as_run(runs))
            per[label] = {m: np.array([scores[m][q] for q in qids]) for m in ("nDCG@10", "Recall@100")}
    rows = []
    for label, m in per.items():
        base = per[("hybrid, " if label.startswith("hybrid") else "") + "minilm first"]["nDCG@10"]
        test = paired(base, m["nDCG@10"])
        rows.append(
            {
                "scoring": label,
                "nDCG@10": round(float(m["nDCG@10"].mean()), 4),
                "Recall@100": round(float(m["Recall@100"].mean()), 4),
                "vs first": test["diff"],
                "W/T/L": f"{test['wins']}/{test['ties']}/{test['losses']}",
                "p": test["p"],
            }
        )
    report(
        "long-documents",
        f"SciFact, MiniLM over windows of {args.window} word pieces ({len(chunks)} windows)",
        rows,
        {"window": args.window, "windows": len(chunks), "seconds": round(time.perf_counter() - started, 1)},
    )
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
