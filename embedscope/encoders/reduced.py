"""Dense encoders made by reducing a sparse term matrix: LSA (TF-IDF + truncated SVD) and LDA topics."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import joblib
import numpy as np
from sklearn.decomposition import LatentDirichletAllocation, TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from embedscope.encoders.base import Encoder, check_corpus, l2_normalize
from embedscope.encoders.sparse import fit_vectorizer
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

_STATE_FILE = "model.joblib"


class _ReducedEncoder(Encoder):
    requires_fit: bool = True

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        if int(self.params["n_components"]) < 1:
            raise EmbedscopeError("n_components must be >= 1")
        self.vectorizer: CountVectorizer | None = None
        self.model: TruncatedSVD | LatentDirichletAllocation | None = None

    def fitted_parts(self) -> tuple[CountVectorizer, TruncatedSVD | LatentDirichletAllocation]:
        """The fitted vectorizer and model (NotFittedError before `fit`)."""
        return self._fitted(self.vectorizer, "vectorizer"), self._fitted(self.model, "model")

    @property
    def dim(self) -> int:
        return int(self.fitted_parts()[1].components_.shape[0])

    def save(self, directory: Path) -> None:
        super().save(directory)
        joblib.dump({"vectorizer": self.vectorizer, "model": self.model}, Path(directory) / _STATE_FILE)

    def _load_state(self, directory: Path) -> None:
        state = joblib.load(Path(directory) / _STATE_FILE)
        self.vectorizer, self.model = state["vectorizer"], state["model"]


class LSAEncoder(_ReducedEncoder):
    """Latent semantic analysis: TF-IDF rows projected on the top singular vectors, L2-normalised."""

    name: ClassVar[str] = "lsa"
    description: ClassVar[str] = "LSA: TF-IDF + truncated SVD (dense, cosine)"
    defaults: ClassVar[JSONObject] = {
        "n_components": 256,
        "stop_words": "english",
        "min_df": 2,
        "max_df": 0.95,
        "sublinear_tf": True,
        "max_features": None,
        "random_state": 0,
    }

    def fit(self, texts: Sequence[str]) -> LSAEncoder:
        texts = check_corpus(texts)
        p = self.params
        self.vectorizer = TfidfVectorizer(
            stop_words=p["stop_words"],
            # min_df=2 cannot be met by a one- or two-document corpus; fall back so tiny corpora still fit
            min_df=p["min_df"] if len(texts) > 2 else 1,
            max_df=p["max_df"] if len(texts) > 2 else 1.0,
            sublinear_tf=bool(p["sublinear_tf"]),
            max_features=p["max_features"],
            dtype=np.float32,
        )
        fit_vectorizer(self.vectorizer, texts)
        x = self.vectorizer.transform(texts)
        # SVD cannot have more components than min(n_docs, n_terms) - 1: clamp (config() keeps the
        # request, `dim` reports what was fitted)
        k = max(1, min(int(p["n_components"]), min(x.shape) - 1))
        self.model = TruncatedSVD(n_components=k, random_state=p["random_state"], algorithm="randomized")
        self.model.fit(x)
        self.fitted = True
        return self

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        vectorizer, model = self.fitted_parts()
        if not texts:  # scikit-learn refuses an empty batch; the contract allows it
            return np.zeros((0, self.dim), dtype=np.float32)
        out = model.transform(vectorizer.transform(list(texts)))
        return l2_normalize(out)  # zero rows (no known term) stay zero


class LDAEncoder(_ReducedEncoder):
    """Latent Dirichlet allocation: each text becomes its topic proportions (L2-normalised for cosine)."""

    name: ClassVar[str] = "lda"
    description: ClassVar[str] = "LDA topic proportions (scikit-learn, dense, cosine)"
    defaults: ClassVar[JSONObject] = {
        "n_components": 20,
        "stop_words": "english",
        "min_df": 2,
        "max_df": 0.95,
        "max_features": 20000,
        "max_iter": 10,
        "learning_method": "online",  # online | batch
        "random_state": 0,
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        if self.params["learning_method"] not in ("online", "batch"):
            raise EmbedscopeError("learning_method must be 'online' or 'batch'")

    def fit(self, texts: Sequence[str]) -> LDAEncoder:
        texts = check_corpus(texts)
        p = self.params
        # LDA models counts, not TF-IDF weights
        self.vectorizer = CountVectorizer(
            stop_words=p["stop_words"],
            min_df=p["min_df"] if len(texts) > 2 else 1,
            max_df=p["max_df"] if len(texts) > 2 else 1.0,
            max_features=p["max_features"],
            dtype=np.float32,
        )
        fit_vectorizer(self.vectorizer, texts)
        self.model = LatentDirichletAllocation(
            n_components=int(p["n_components"]),
            max_iter=int(p["max_iter"]),
            learning_method=p["learning_method"],
            random_state=p["random_state"],
            n_jobs=1,
        )
        self.model.fit(self.vectorizer.transform(texts))
        self.fitted = True
        return self

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        vectorizer, model = self.fitted_parts()
        if not texts:  # scikit-learn refuses an empty batch; the contract allows it
            return np.zeros((0, self.dim), dtype=np.float32)
        counts = vectorizer.transform(list(texts))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            topics = model.transform(counts)
        # a text with no known word would get the prior (uniform topics) and look similar to every
        # other empty text; make it a zero row so search reports "no known terms"
        topics[np.asarray(counts.sum(axis=1)).ravel() == 0] = 0.0
        return l2_normalize(topics)

    def top_words(self, n: int = 10) -> list[list[str]]:
        """The n most probable words of each topic (for inspection)."""
        vectorizer, model = self.fitted_parts()
        vocab = vectorizer.get_feature_names_out()
        return [[str(vocab[i]) for i in np.argsort(-row)[:n]] for row in model.components_]
