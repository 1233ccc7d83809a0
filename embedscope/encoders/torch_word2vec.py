"""A small, readable PyTorch word2vec: CBOW and skip-gram with negative sampling (SGNS).

Hand-written on purpose: it is the reference model of the text (Mikolov et al., 2013), kept close to
the equations so it can be read next to them and compared against gensim's optimised C code
(bench/bench_word2vec.py). What it mirrors from the original:

- two embedding tables: `inp` (the word vectors we keep, v_w) and `out` (context vectors u_w);
  `inp` starts uniform in [-0.5/d, 0.5/d], `out` at zero;
- skip-gram: every (center, context) pair inside a window whose size is drawn uniformly in
  [1, window] per center word; CBOW: the mean of the context's `inp` vectors predicts the center;
- loss per positive pair: -log sigma(u_o . v) - sum over k negatives of log sigma(-u_neg . v),
  negatives drawn from the unigram distribution raised to 0.75;
- frequent-word subsampling (keep probability (sqrt(f/s) + 1) * s/f, as in word2vec.c);
- plain SGD with the learning rate decayed linearly from alpha to ~0.

The one departure: updates are applied per mini-batch of pairs (summed loss) instead of one pair at
a time, so it runs at numpy speed on a CPU. Its vectors are exposed as gensim KeyedVectors, so the
word tools and evaluations are the same code as for the gensim encoder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from embedscope.encoders.base import Encoder, check_corpus
from embedscope.encoders.word2vec import WordVectorMixin, check_pooling, keyed_vectors, tokenize
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    import torch
    from gensim.models import KeyedVectors


# Any: the SGNS class is defined where torch is imported, and torch types a Module's attributes as
# `Tensor | Module`, so its embeddings and forward would not type-check through nn.Module
def build_model(vocab_size: int, dim: int, seed: int) -> Any:
    import torch
    from torch import nn

    class SGNS(nn.Module):
        """v = inp(center or mean of context), u = out(target); score = u . v."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            # sparse gradients only pay off for big vocabularies: below ~50k words a dense
            # gradient + dense SGD step measured ~2x faster (same result: untouched rows get 0)
            sparse = vocab_size > 50_000
            self.inp = nn.Embedding(vocab_size, dim, sparse=sparse)
            self.out = nn.Embedding(vocab_size, dim, sparse=sparse)
            nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)
            nn.init.zeros_(self.out.weight)

        def forward(self, v: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
            """v: (B, d) input vectors; targets: (B,); negatives: (B, k). Returns the summed loss."""
            pos = (self.out(targets) * v).sum(-1)  # (B,)
            neg = torch.bmm(self.out(negatives), v.unsqueeze(-1)).squeeze(-1)  # (B, k)
            return -(nn.functional.logsigmoid(pos).sum() + nn.functional.logsigmoid(-neg).sum())

    return SGNS()


class TorchWord2VecEncoder(WordVectorMixin, Encoder):
    """PyTorch reference word2vec (CBOW / skip-gram, negative sampling); see the module docstring."""

    name: ClassVar[str] = "torch_word2vec"
    description: ClassVar[str] = "Reference PyTorch word2vec (CBOW / skip-gram + negative sampling), dense"
    defaults: ClassVar[JSONObject] = {
        "sg": 1,  # 0 = CBOW, 1 = skip-gram
        "vector_size": 100,
        "window": 5,
        "min_count": 2,
        "negative": 5,
        "sample": 1e-3,
        "alpha": 0.025,
        "epochs": 5,
        "batch_size": 1024,
        "seed": 1,
        "pooling": "mean",  # mean | sif
        "sif_a": 1e-3,
        "sif_remove_pc": True,
    }
    requires_fit: bool = True

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        p = self.params
        if p["sg"] not in (0, 1):
            raise EmbedscopeError("sg must be 0 (CBOW) or 1 (skip-gram)")
        for key in ("vector_size", "window", "min_count", "negative", "epochs", "batch_size"):
            if int(p[key]) < 1:
                raise EmbedscopeError(f"{key} must be >= 1")
        check_pooling(p)
        self.wv: KeyedVectors | None = None
        #: mean loss per positive example, one entry per epoch (tests check that it falls)
        self.loss_history: list[float] = []

    # --- data --------------------------------------------------------------------------------
    def _subsample(self, ids: np.ndarray, freqs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = float(self.params["sample"])
        if s <= 0:
            return np.ones(len(ids), dtype=bool)
        f = freqs[ids]
        keep = (np.sqrt(f / s) + 1) * s / f
        return rng.random(len(ids)) < keep

    def _windows(self, ids: np.ndarray, sent: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """All (center position, context position) pairs within a per-center random window."""
        w = int(self.params["window"])
        reduced = rng.integers(1, w + 1, size=len(ids))  # word2vec's dynamic window
        centers, contexts = [], []
        for off in range(1, w + 1):
            for sign in (-1, 1):
                c = np.arange(max(0, -sign * off), len(ids) - max(0, sign * off))
                o = c + sign * off
                ok = (sent[c] == sent[o]) & (reduced[c] >= off)
                centers.append(c[ok])
                contexts.append(o[ok])
        return np.concatenate(centers), np.concatenate(contexts)

    # --- training ----------------------------------------------------------------------------
    def fit(self, texts: Sequence[str]) -> TorchWord2VecEncoder:
        import torch

        # the per-batch ops are tiny: one thread is as fast as two and does not collapse when the
        # CPU is shared (intra-op threads spin-waiting on a busy core made it ~10x slower)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit(texts)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, texts: Sequence[str]) -> TorchWord2VecEncoder:
        import torch

        texts = check_corpus(texts)
        p = self.params
        sentences = [tokenize(t) for t in texts]
        counts = Counter(w for s in sentences for w in s)
        words = sorted((w for w, c in counts.items() if c >= int(p["min_count"])), key=lambda w: -counts[w])
        if not words:
            raise EmbedscopeError(f"no word occurs min_count={p['min_count']} times; lower min_count")
        index = {w: i for i, w in enumerate(words)}
        word_counts = np.array([counts[w] for w in words], dtype=np.float64)
        freqs = word_counts / word_counts.sum()
        ids_list = [[index[w] for w in s if w in index] for s in sentences]
        all_ids = np.fromiter((i for s in ids_list for i in s), dtype=np.int64)
        sent_of = np.repeat(np.arange(len(ids_list)), [len(s) for s in ids_list])

        torch.manual_seed(int(p["seed"]))
        rng = np.random.default_rng(int(p["seed"]))
        gen = torch.Generator().manual_seed(int(p["seed"]))
        noise = torch.tensor(word_counts**0.75 / (word_counts**0.75).sum(), dtype=torch.float32)
        model = build_model(len(words), int(p["vector_size"]), int(p["seed"]))
        opt = torch.optim.SGD(model.parameters(), lr=float(p["alpha"]))
        k, bs, epochs, w = int(p["negative"]), int(p["batch_size"]), int(p["epochs"]), int(p["window"])
        # the learning rate falls linearly over all epochs, as in word2vec.c
        est_steps = max(1, epochs * (len(all_ids) * (w + 1) // bs + 1))
        step = 0
        self.loss_history = []
        for _epoch in range(epochs):
            keep = self._subsample(all_ids, freqs, rng)
            ids, sent = all_ids[keep], sent_of[keep]
            centers, contexts = self._windows(ids, sent, rng)
            order = rng.permutation(len(centers))
            if p["sg"]:
                # skip-gram: the center predicts each context word
                inputs, targets = ids[centers[order]], ids[contexts[order]]
            else:
                # CBOW: each center's context window (as a padded matrix) predicts the center
                sort = np.argsort(centers, kind="stable")
                uniq, first, lens = np.unique(centers[sort], return_index=True, return_counts=True)
                ctx_sorted = ids[contexts[sort]]
                ctx = np.full((len(uniq), 2 * w), -1, dtype=np.int64)
                pos_in_row = np.arange(len(centers)) - np.repeat(first, lens)
                ctx[np.repeat(np.arange(len(uniq)), lens), pos_in_row] = ctx_sorted
                perm = rng.permutation(len(uniq))
                inputs, targets = ctx[perm], ids[uniq[perm]]
            total, n = 0.0, 0
            for start in range(0, len(targets), bs):
                lr = float(p["alpha"]) * max(1e-4, 1.0 - step / est_steps)
                for group in opt.param_groups:
                    group["lr"] = lr
                t = torch.from_numpy(targets[start : start + bs])
                x = torch.from_numpy(inputs[start : start + bs])
                if p["sg"]:
                    v = model.inp(x)
                else:
                    mask = (x >= 0).unsqueeze(-1).float()
                    v = (model.inp(x.clamp(min=0)) * mask).sum(1) / mask.sum(1).clamp(min=1)
                neg = torch.multinomial(noise, len(t) * k, replacement=True, generator=gen).view(len(t), k)
                loss = model(v, t, neg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                n += len(t)
                step += 1
            self.loss_history.append(total / max(1, n))
        self.wv = keyed_vectors(words, [int(c) for c in word_counts], model.inp.weight.detach().numpy())
        self.fitted = True
        self._fit_pc(texts)
        return self

    def save(self, directory: Path) -> None:
        super().save(directory)
        self._save_words(directory)
        (Path(directory) / "loss_history.txt").write_text("\n".join(map(str, self.loss_history)))

    def _load_state(self, directory: Path) -> None:
        self._load_words(directory)
        path = Path(directory) / "loss_history.txt"
        self.loss_history = [float(x) for x in path.read_text().split()] if path.exists() else []
