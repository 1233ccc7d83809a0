"""Why the static encoder (model2vec distilled from MiniLM) trails BM25 on SciFact, one change at a time;
and (--speed) how fast it encodes.

    python bench/bench_static.py          # ~5 min on 2 cores once the distilled tables are cached
    python bench/bench_static.py --speed  # texts/s: the word-cache path vs model2vec's encode, ~2 min

Each row is a fixed variant, chosen before looking at the test queries (model2vec's recipe and its
documented ablations, SIF with Arora et al.'s a=1e-3, model2vec's custom-vocabulary idea); the
300 test queries measure them. `cv_pick` is a 5-fold cross-validation over query folds: in each
fold the variant with the best nDCG@10 on the other four folds is scored on the held-out one, so
the reported "chosen" figure is not tuned on the queries it is judged on. Writes
bench/results/static.json.

--speed encodes all 5,197 books ("{title}. {description}") and the 5,183 SciFact documents,
`--rounds` times each, in the same process: embedscope's encode after `fit` (fit has filled the
word cache) in one call and in the local engine's chunks of 256 texts (as `embed` calls it), the
same from a cold cache (the fitted encoder saved and loaded again), and model2vec's own
`StaticModel.encode` (the path before the word cache) on the same fitted table. It reports the
median texts/s and the range, the smallest cosine between the two paths' vectors, one-query
latency, and the load average (the machine is shared).
Writes bench/results/static-speed.json.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as embedscope runs: one core
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, latency_ms, report  # noqa: E402

SCIFACT = SHARED_DATA / "beir" / "scifact"
# --speed rows
FIT = "fit (counting the collection's tokens)"
AFTER_FIT = "embedscope encode after fit, one call"
IN_CHUNKS = "embedscope encode after fit, in `embed`'s chunks of 256 texts"
COLD = "embedscope encode, cold word cache (loaded encoder)"
MODEL2VEC = "model2vec StaticModel.encode (before)"


def scores(
    enc: Any, docs: list[str], doc_ids: list[str], queries: list[str], qids: list[str], qrels: Any
) -> np.ndarray:
    """Per-query nDCG@10 and Recall@100 (rows: the two metrics) of exact cosine search."""
    from embedscope.evaluate.ir import per_query_scores

    d, q = enc.encode(docs), enc.encode_queries(queries)
    sims = q @ d.T
    run = {}
    for i, qid in enumerate(qids):
        top = np.argpartition(-sims[i], 100)[:100]
        run[qid] = {doc_ids[j]: float(sims[i, j]) for j in top}
    per = per_query_scores(qrels, run)
    return np.array([[per[m][qid] for qid in qids] for m in ("nDCG@10", "Recall@100")])


class CorpusVocabulary:
    """model2vec's custom-vocabulary idea on top of the shipped encoder: every alphabetic word that
    occurs at least twice in the corpus and is not one WordPiece token becomes a token of its own,
    embedded like the base tokens ([CLS] pieces [SEP] through MiniLM, mean-pooled), then PCA and SIF
    over the corpus counts as the shipped encoder does. Not shipped: see docs/design.md."""

    def __init__(self, docs: list[str]) -> None:
        import torch
        from sklearn.decomposition import PCA
        from tokenizers import AddedToken, Tokenizer
        from transformers import AutoModel

        from embedscope.encoders import static
        from embedscope.encoders.registry import create_encoder
        from embedscope.encoders.transformer import resolve_model_path

        path = resolve_model_path("all-MiniLM-L6-v2")
        base = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        base.no_padding()  # the packaged tokenizer.json pads to 128 with [PAD]
        vocab = base.get_vocab()
        words: collections.Counter[str] = collections.Counter()
        for doc in docs:
            words.update(
                w for w, _ in base.pre_tokenizer.pre_tokenize_str(base.normalizer.normalize_str(doc))
            )
        single = sum(c for w, c in words.items() if w in vocab)
        self.coverage = single / sum(words.values())
        new = sorted(
            w for w, c in words.items() if c >= 2 and w not in vocab and re.fullmatch(r"[a-z][a-z-]*[a-z]", w)
        )
        self.added = len(new)
        backbone = AutoModel.from_pretrained(path, local_files_only=True).eval()
        pieces = [
            [vocab["[CLS]"], *base.encode(w, add_special_tokens=False).ids, vocab["[SEP]"]] for w in new
        ]
        extra = np.zeros((len(new), backbone.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(pieces), 256):
                batch = pieces[s : s + 256]
                width = max(map(len, batch))
                ids = torch.tensor([p + [0] * (width - len(p)) for p in batch])
                mask = (torch.arange(width)[None, :] < torch.tensor([len(p) for p in batch])[:, None]).long()
                hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask[..., None].float()
                extra[s : s + len(batch)] = ((hidden * m).sum(1) / m.sum(1)).numpy()
        # the unweighted 384-d table, cached by the encoder with these parameters
        raw = np.asarray(create_encoder("static", {"pca_dims": 384})._distilled().embedding)
        table = PCA(n_components=256, random_state=0).fit_transform(np.concatenate([raw, extra]))
        tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.add_tokens([AddedToken(w, single_word=True, normalized=True) for w in new])
        counts = static.token_counts(tokenizer, docs, len(table))
        weights = static.sif_weights(counts / counts.sum(), 1e-3)
        self.model = static.static_model(
            table.astype(np.float32) * weights[:, None], tokenizer, "all-MiniLM-L6-v2"
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        from embedscope.encoders.base import l2_normalize

        return l2_normalize(self.model.encode(texts, use_multiprocessing=False))

    encode_queries = encode


def main() -> None:
    from embedscope.encoders.registry import create_encoder
    from embedscope.sources import load_beir

    ds = load_beir(SCIFACT)
    doc_ids = list(ds.corpus)
    docs = [f"{ds.corpus[d]['title']} {ds.corpus[d]['text']}".strip() for d in doc_ids]
    qids = list(ds.qrels)
    queries = [ds.queries[q] for q in qids]
    variants: dict[str, Any] = {
        "model2vec recipe: PCA 256, Zipf-by-rank SIF a=1e-4 (before)": {
            "weighting": "zipf",
            "sif_coefficient": 1e-4,
        },
        "model2vec recipe, no PCA (384-d)": {"weighting": "zipf", "sif_coefficient": 1e-4, "pca_dims": 384},
        "SIF over the corpus's token counts a=1e-3, PCA 256 (now the default)": {},
        "corpus SIF, no PCA (384-d)": {"pca_dims": 384},
    }
    per: dict[str, np.ndarray] = {}
    rows = []
    for name, params in variants.items():
        started = time.perf_counter()
        enc = create_encoder("static", params)
        if enc.requires_fit:
            enc.fit(docs)
        per[name] = scores(enc, docs, doc_ids, queries, qids, ds.qrels)
        print(
            f"{name}: nDCG@10 {per[name][0].mean():.4f} ({time.perf_counter() - started:.0f} s)", flush=True
        )
    vocab = CorpusVocabulary(docs)
    name = f"+ corpus vocabulary ({vocab.added} words added), corpus SIF, PCA 256 (not shipped)"
    per[name] = scores(vocab, docs, doc_ids, queries, qids, ds.qrels)
    for name, s in per.items():
        rows.append(
            {
                "variant": name,
                "ndcg10": round(float(s[0].mean()), 4),
                "recall100": round(float(s[1].mean()), 4),
            }
        )
    names = list(per)
    ndcg = np.array([per[n][0] for n in names])
    folds = np.array_split(np.random.default_rng(0).permutation(len(qids)), 5)
    held, picks = [], []
    for fold in folds:
        train = np.setdiff1d(np.arange(len(qids)), fold)
        best = int(np.argmax(ndcg[:, train].mean(1)))
        picks.append(names[best])
        held.append(float(ndcg[best, fold].mean()))
    rows.append(
        {
            "variant": "5-fold CV pick (best on 4 folds, scored on the 5th)",
            "ndcg10": f"{np.mean(held):.4f} ± {np.std(held):.4f}",
            "recall100": "",
        }
    )
    report(
        "static",
        f"Static encoder on SciFact ({len(qids)} test queries); {vocab.coverage:.1%} of corpus word "
        "occurrences are one WordPiece token",
        rows,
        {"cv_picks": picks, "word_coverage": round(vocab.coverage, 4)},
    )


def speed(rounds: int, limit: int | None) -> None:
    import pandas as pd

    from embedscope.encoders.base import l2_normalize
    from embedscope.encoders.registry import create_encoder, load_encoder
    from embedscope.engines.local import LocalEngine
    from embedscope.sources import load_beir

    frame = pd.read_csv(SHARED_DATA / "books" / "books.csv").dropna(subset=["title", "description"])
    ds = load_beir(SCIFACT)
    corpora = {
        "books": (frame["title"] + ". " + frame["description"]).tolist()[:limit],
        "scifact": [f"{doc['title']} {doc['text']}".strip() for doc in ds.corpus.values()][:limit],
    }
    load_before = os.getloadavg()[0]
    rows = []
    for corpus, texts in corpora.items():
        timings: dict[str, list[float]] = collections.defaultdict(list)
        outputs: dict[str, np.ndarray] = {}
        for _ in range(rounds):
            enc = create_encoder("static")
            _ = enc.dim  # loads the distilled table outside the timings
            started = time.perf_counter()
            enc.fit(texts)
            timings[FIT].append(time.perf_counter() - started)
            with tempfile.TemporaryDirectory() as tmp:
                enc.save(Path(tmp) / "static")
                cold = load_encoder(Path(tmp) / "static")
            cold.encode(texts[:1])  # the model is loaded; its word cache all but empty
            paths = {
                AFTER_FIT: partial(enc.encode, texts),
                IN_CHUNKS: partial(LocalEngine().encode, enc, texts),
                COLD: partial(cold.encode, texts),
                MODEL2VEC: partial(enc.static_model.encode, texts, use_multiprocessing=False),
            }
            for path, run in paths.items():
                started = time.perf_counter()
                outputs[path] = l2_normalize(np.asarray(run()))
                timings[path].append(time.perf_counter() - started)
        reference = outputs[MODEL2VEC]
        cosine = {
            path: float((out * reference).sum(1)[reference.any(1)].min()) for path, out in outputs.items()
        }
        query = texts[0][:60]
        query_ms = {
            AFTER_FIT: latency_ms(partial(enc.encode, [query]), 200),
            MODEL2VEC: latency_ms(partial(enc.static_model.encode, [query], use_multiprocessing=False), 200),
        }
        for path, seconds in timings.items():
            per_s = sorted(len(texts) / t for t in seconds)
            rows.append(
                {
                    "corpus": f"{corpus} ({len(texts)})",
                    "path": path,
                    "texts/s median": round(float(np.median(per_s))),
                    "range": f"{per_s[0]:.0f}-{per_s[-1]:.0f}",
                    "min cosine to model2vec": cosine[path] if path in (AFTER_FIT, IN_CHUNKS, COLD) else "",
                    "one-query p50 ms": query_ms[path]["p50_ms"] if path in query_ms else "",
                }
            )
    report(
        "static-speed",
        f"Static encoder speed, {rounds} rounds (load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})",
        rows,
        {"rounds": rounds, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--speed", action="store_true", help="texts/s of the encode paths (not quality)")
    parser.add_argument("--rounds", type=int, default=5, help="--speed: rounds per corpus (median reported)")
    parser.add_argument("--limit", type=int, default=None, help="--speed: first N texts of each corpus")
    args = parser.parse_args()
    speed(args.rounds, args.limit) if args.speed else main()
