"""Word2vec quality: embedscope's word2vec vs gensim's Word2Vec run directly vs the PyTorch reference.

Corpus: the largest English text available offline, from gensim's test data: lee_background.cor plus
the English Wikipedia excerpt (enwiki-latest-pages-articles1...shortened.bz2), ~0.5M tokens in all
(text8 cannot be downloaded here). Same tokenisation (embedscope's) and parameters for all three.
Metrics: Google analogy accuracy (questions-words.txt, questions whose 4 words are all in the
vocabulary) and WordSim353 Spearman; both gensim's evaluators. A 0.5M-token corpus is ~30x smaller
than text8, so absolute numbers are low; the comparison is what matters.

    python bench/bench_word2vec.py [--epochs 5] [--skip-torch]
Prints a table and writes bench/results/word2vec.json.
"""

from __future__ import annotations

import argparse
import bz2
import json
import platform
import time
from pathlib import Path
from typing import Any

from gensim.corpora.wikicorpus import extract_pages, filter_wiki
from gensim.test.utils import datapath

from embedscope.encoders.registry import create_encoder
from embedscope.encoders.word2vec import tokenize

RESULTS = Path(__file__).parent / "results"
WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def corpus() -> list[str]:
    texts = Path(datapath("lee_background.cor")).read_text().splitlines()
    with bz2.open(datapath(WIKI)) as f:
        for _title, text, _pid in extract_pages(f):
            texts.extend(p for p in filter_wiki(text).split("\n") if len(p.split()) > 5)
    return texts


def evaluate(wv: Any) -> dict[str, float]:
    acc, sections = wv.evaluate_word_analogies(datapath("questions-words.txt"))
    total = sections[-1]
    _pearson, spearman, oov = wv.evaluate_word_pairs(datapath("wordsim353.tsv"))
    return {
        "analogy_acc": round(float(acc), 4),
        "analogy_questions": len(total["correct"]) + len(total["incorrect"]),
        "wordsim_spearman": round(float(spearman[0]), 4),
        "wordsim_oov_pct": round(float(oov), 1),
        "vocab": len(wv),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args()
    from gensim.models import Word2Vec

    texts = corpus()
    sentences = [tokenize(t) for t in texts]
    n_tokens = sum(map(len, sentences))
    common = {
        "vector_size": 100,
        "window": 5,
        "min_count": 5,
        "negative": 5,
        "sample": 1e-3,
        "alpha": 0.025,
        "epochs": args.epochs,
        "seed": 1,
    }
    rows = []
    for sg in (0, 1):
        arch = "skip-gram" if sg else "CBOW"
        t0 = time.perf_counter()
        direct = Word2Vec(sentences, sg=sg, hs=0, workers=1, **common)
        rows.append(
            {
                "model": "gensim Word2Vec (direct)",
                "arch": arch,
                "fit_s": round(time.perf_counter() - t0, 1),
                **evaluate(direct.wv),
            }
        )
        t0 = time.perf_counter()
        ours = create_encoder("word2vec", {**common, "sg": sg, "workers": 1}).fit(texts)
        rows.append(
            {
                "model": "embedscope word2vec",
                "arch": arch,
                "fit_s": round(time.perf_counter() - t0, 1),
                **evaluate(ours.wv),
            }
        )
        if not args.skip_torch:
            t0 = time.perf_counter()
            ref = create_encoder("torch_word2vec", {**common, "sg": sg, "batch_size": 2048}).fit(texts)
            rows.append(
                {
                    "model": "torch_word2vec (reference)",
                    "arch": arch,
                    "fit_s": round(time.perf_counter() - t0, 1),
                    **evaluate(ref.wv),
                    "loss_first_last": [round(ref.loss_history[0], 3), round(ref.loss_history[-1], 3)],
                }
            )
    header = f"{'model':28} {'arch':10} {'fit s':>6} {'analogy':>8} {'(n q)':>6} {'WS353 ρ':>8} {'vocab':>7}"
    print(f"corpus: {len(texts)} texts, {n_tokens} tokens; params {common}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['model']:28} {r['arch']:10} {r['fit_s']:6.1f} {r['analogy_acc']:8.3f} "
            f"{r['analogy_questions']:6d} {r['wordsim_spearman']:8.3f} {r['vocab']:7d}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = {
        "corpus": {"texts": len(texts), "tokens": n_tokens, "sources": ["lee_background.cor", WIKI]},
        "params": common,
        "machine": platform.machine(),
        "results": rows,
    }
    (RESULTS / "word2vec.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
