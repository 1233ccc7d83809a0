"""Word2vec (gensim) as a text encoder, plus word tools shared with the PyTorch reference model.

A text is pooled from its word vectors, either a plain mean or SIF (Arora, Liang & Ma, 2017,
"A simple but tough-to-beat baseline for sentence embeddings"): each word weighted by
a / (a + p(w)) with p(w) its corpus frequency, then the projection on the first principal component
of the fitted corpus's text vectors removed. SIF is hand-written (about 20 lines) because no
maintained package implements it on top of gensim 4 KeyedVectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from embedscope.encoders.base import Encoder, check_corpus, l2_normalize
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

_POOLINGS = ("mean", "sif")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens (gensim's simple_preprocess, keeping 1-letter and long words)."""
    from gensim.utils import simple_preprocess

    return simple_preprocess(text, min_len=1, max_len=30)


class WordVectorMixin:
    """Word tools and text pooling over `self.wv`, a gensim KeyedVectors with a "count" per word.

    Both the gensim and the PyTorch word2vec expose their vectors as KeyedVectors, so similarity,
    analogies and the standard evaluations (questions-words, WordSim353) are gensim's own code.
    """

    wv: KeyedVectors
    params: JSONObject
    name: ClassVar[str]
    _pc: np.ndarray | None = None

    # --- word tools --------------------------------------------------------------------------
    def _known(self, *words: str) -> list[str]:
        self._check_fitted()  # type: ignore[attr-defined]
        out = []
        for w in words:
            key = w.strip().lower()
            if key not in self.wv.key_to_index:
                raise EmbedscopeError(
                    f"word '{w}' is not in the {self.name} vocabulary ({len(self.wv)} words)"
                )
            out.append(key)
        return out

    def most_similar(self, word: str, topn: int = 10) -> list[tuple[str, float]]:
        """Nearest words by cosine similarity."""
        (w,) = self._known(word)
        return [(k, float(s)) for k, s in self.wv.most_similar(w, topn=topn)]

    def analogy(self, a: str, b: str, c: str, topn: int = 5) -> list[tuple[str, float]]:
        """Words nearest a - b + c: analogy("king", "man", "woman") -> queen (b is to a as c is to ?)."""
        a, b, c = self._known(a, b, c)
        return [(k, float(s)) for k, s in self.wv.most_similar(positive=[a, c], negative=[b], topn=topn)]

    def similarity(self, w1: str, w2: str) -> float:
        a, b = self._known(w1, w2)
        return float(self.wv.similarity(a, b))

    def evaluate(self, analogies_path: str | Path, pairs_path: str | Path) -> dict[str, float]:
        """Google analogy accuracy and word-pair Spearman correlation (gensim's evaluators).
        Analogy questions are restricted to the 30k most frequent words, gensim's default."""
        acc, _ = self.wv.evaluate_word_analogies(str(analogies_path))
        pearson, spearman, oov = self.wv.evaluate_word_pairs(str(pairs_path))
        return {
            "analogy_accuracy": float(acc),
            "wordsim_spearman": float(spearman[0]),
            "wordsim_oov_pct": float(oov),
        }

    # --- pooling -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        self._check_fitted()  # type: ignore[attr-defined]
        return int(self.wv.vector_size)

    def _pool(self, texts: Sequence[str]) -> np.ndarray:
        wv = self.wv
        out = np.zeros((len(texts), wv.vector_size), dtype=np.float32)
        sif = self.params["pooling"] == "sif"
        if sif:
            counts = wv.expandos["count"].astype(np.float64)
            weights = self.params["sif_a"] / (self.params["sif_a"] + counts / counts.sum())
        for i, text in enumerate(texts):
            idx = [wv.key_to_index[t] for t in tokenize(text) if t in wv.key_to_index]
            if not idx:
                continue  # no known word: zero row
            vecs = wv.vectors[idx]
            out[i] = (weights[idx, None] * vecs).mean(0) if sif else vecs.mean(0)
        return out

    def _fit_pc(self, texts: Sequence[str]) -> None:
        """SIF's common-component removal: first right singular vector of the corpus's text vectors."""
        self._pc = None
        if self.params["pooling"] == "sif" and self.params["sif_remove_pc"]:
            x = self._pool(texts)
            x = x[np.any(x != 0, axis=1)]
            if len(x) >= 2:
                from sklearn.decomposition import TruncatedSVD

                svd = TruncatedSVD(n_components=1, n_iter=7, random_state=0).fit(x)
                self._pc = svd.components_[0].astype(np.float32)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        self._check_fitted()  # type: ignore[attr-defined]
        x = self._pool(list(texts))
        if self._pc is not None:
            empty = ~np.any(x != 0, axis=1)
            x = x - np.outer(x @ self._pc, self._pc)
            x[empty] = 0.0
        return l2_normalize(x)

    def _save_words(self, directory: Path) -> None:
        self.wv.save(str(Path(directory) / "vectors.kv"))
        if self._pc is not None:
            np.save(Path(directory) / "sif_pc.npy", self._pc)

    def _load_words(self, directory: Path) -> None:
        from gensim.models import KeyedVectors

        self.wv = KeyedVectors.load(str(Path(directory) / "vectors.kv"))
        pc = Path(directory) / "sif_pc.npy"
        self._pc = np.load(pc) if pc.exists() else None


def check_pooling(params: JSONObject) -> None:
    if params["pooling"] not in _POOLINGS:
        raise EmbedscopeError(f"pooling must be one of {', '.join(_POOLINGS)}, not {params['pooling']!r}")
    if float(params["sif_a"]) <= 0:
        raise EmbedscopeError("sif_a must be > 0")


class Word2VecEncoder(WordVectorMixin, Encoder):
    """gensim Word2Vec (CBOW or skip-gram, negative sampling) trained on the collection's texts."""

    name: ClassVar[str] = "word2vec"
    description: ClassVar[str] = (
        "word2vec (gensim) trained on the corpus; mean or SIF pooling (dense, cosine)"
    )
    defaults: ClassVar[JSONObject] = {
        "sg": 0,  # 0 = CBOW, 1 = skip-gram
        "vector_size": 100,
        "window": 5,
        "min_count": 2,
        "negative": 5,
        "sample": 1e-3,
        "alpha": 0.025,
        # null = auto: enough passes for ~5M trained tokens, clipped to [5, 50]. gensim's 5 epochs
        # assume a big corpus; on 1,000 books (~130k tokens) they leave every text vector at
        # cosine ~1.0 to every other and king - man + woman -> "over"; auto gives 39 epochs there
        # and, on all 5k books, 9 epochs (king - man + woman -> queen), ~5-10 s either way.
        "epochs": None,
        "seed": 1,
        "workers": 1,  # >1 is faster but not reproducible (thread scheduling orders the updates)
        # sif by default: mean pooling of corpus-trained vectors is dominated by frequent words
        # (mean pairwise cosine of books texts 0.87 with mean pooling vs 0.08 with SIF)
        "pooling": "sif",  # mean | sif
        "sif_a": 1e-3,
        "sif_remove_pc": True,
    }
    requires_fit: bool = True

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        p = self.params
        if p["sg"] not in (0, 1):
            raise EmbedscopeError("sg must be 0 (CBOW) or 1 (skip-gram)")
        for key in ("vector_size", "window", "min_count", "workers"):
            if int(p[key]) < 1:
                raise EmbedscopeError(f"{key} must be >= 1")
        if p["epochs"] is not None and int(p["epochs"]) < 1:
            raise EmbedscopeError("epochs must be >= 1 or null (auto)")
        if int(p["negative"]) < 1:
            raise EmbedscopeError("negative must be >= 1 (this encoder trains with negative sampling)")
        check_pooling(p)
        self.wv: KeyedVectors | None = None
        #: epochs actually trained (resolves epochs=null)
        self.epochs_used: int | None = None

    def fit(self, texts: Sequence[str]) -> Word2VecEncoder:
        from gensim.models import Word2Vec

        texts = check_corpus(texts)
        sentences = [tokenize(t) for t in texts]
        p = self.params
        model = Word2Vec(
            vector_size=int(p["vector_size"]),
            window=int(p["window"]),
            min_count=int(p["min_count"]),
            sg=int(p["sg"]),
            hs=0,
            negative=int(p["negative"]),
            sample=float(p["sample"]),
            alpha=float(p["alpha"]),
            seed=int(p["seed"]),
            workers=int(p["workers"]),
        )
        model.build_vocab(sentences)
        if len(model.wv) == 0:
            raise EmbedscopeError(f"no word occurs min_count={p['min_count']} times; lower min_count")
        self.epochs_used = auto_epochs(sum(map(len, sentences))) if p["epochs"] is None else int(p["epochs"])
        model.train(sentences, total_examples=model.corpus_count, epochs=self.epochs_used)
        self.wv = model.wv
        self.fitted = True
        self._fit_pc(texts)
        return self

    def save(self, directory: Path) -> None:
        super().save(directory)
        self._save_words(directory)

    def _load_state(self, directory: Path) -> None:
        self._load_words(directory)


def auto_epochs(n_tokens: int, budget: int = 5_000_000) -> int:
    """Epochs for ~`budget` trained tokens, at least 5 (gensim's default) and at most 50."""
    return int(min(50, max(5, -(-budget // max(1, n_tokens)))))


def keyed_vectors(words: list[str], counts: list[int], vectors: np.ndarray) -> KeyedVectors:
    """A gensim KeyedVectors from a vocabulary, its counts and a (V, d) matrix."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.shape[1], count=0, dtype=np.float32)
    kv.add_vectors(words, np.asarray(vectors, dtype=np.float32))
    kv.allocate_vecattrs(attrs=["count"], types=[np.int64])
    kv.expandos["count"][:] = np.asarray(counts, dtype=np.int64)
    return kv
