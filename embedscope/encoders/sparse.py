"""Count-based sparse encoders on scikit-learn's vectorizers: one-hot, bag of words, TF-IDF.

They return scipy.sparse CSR float32 matrices (one column per vocabulary term) and never densify:
a 5k-document corpus has a 30k+ term vocabulary, so dense rows would be ~100x larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import joblib
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize as sk_normalize

from embedscope.encoders.base import Encoder, check_corpus
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

_VECTORIZER_FILE = "vectorizer.joblib"

# Parameters shared by every vectorizer-backed encoder (scikit-learn names and meanings).
_COMMON: JSONObject = {
    "lowercase": True,
    "stop_words": None,  # None | "english" | list of words
    "ngram_range": [1, 1],
    "min_df": 1,
    "max_df": 1.0,
    "max_features": None,
}


def vectorizer_kwargs(params: JSONObject) -> JSONObject:
    """Translate our JSON-friendly params (lists) into scikit-learn's (tuples)."""
    ngram = params["ngram_range"]
    if not (isinstance(ngram, list | tuple) and len(ngram) == 2 and 1 <= int(ngram[0]) <= int(ngram[1])):
        raise EmbedscopeError(f"ngram_range must be [min_n, max_n] with 1 <= min_n <= max_n, not {ngram!r}")
    if params["stop_words"] not in (None, "english") and not isinstance(params["stop_words"], list):
        raise EmbedscopeError("stop_words must be null, 'english' or a list of words")
    return {
        "lowercase": bool(params["lowercase"]),
        "stop_words": params["stop_words"],
        "ngram_range": (int(ngram[0]), int(ngram[1])),
        "min_df": params["min_df"],
        "max_df": params["max_df"],
        "max_features": params["max_features"],
        "dtype": np.float32,
    }


def fit_vectorizer(vectorizer: CountVectorizer, texts: Sequence[str]) -> None:
    """Fit, turning scikit-learn's ValueErrors (empty vocabulary, min_df > max_df) into one-liners."""
    try:
        vectorizer.fit(list(texts))
    except ValueError as exc:
        raise EmbedscopeError(f"cannot build a vocabulary: {exc}") from exc


class _VectorizerEncoder(Encoder):
    """Shared plumbing: a fitted scikit-learn vectorizer is the whole learned state."""

    requires_fit: bool = True
    sparse: ClassVar[bool] = True

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        self._kwargs = vectorizer_kwargs(self.params)
        self.vectorizer: CountVectorizer | None = None
        if not self.params.get("normalize", True):
            # raw counts/indicators: cosine would need normalised rows, so rank by inner product
            self.metric = "dot"

    def _make_vectorizer(self) -> CountVectorizer:
        return CountVectorizer(**self._kwargs)

    def fit(self, texts: Sequence[str]) -> _VectorizerEncoder:
        check_corpus(texts)
        self.vectorizer = self._make_vectorizer()
        fit_vectorizer(self.vectorizer, texts)
        self.fitted = True
        return self

    @property
    def fitted_vectorizer(self) -> CountVectorizer:
        """The fitted vectorizer (NotFittedError before `fit`)."""
        return self._fitted(self.vectorizer, "vectorizer")

    def _transform(self, texts: list[str]) -> sp.csr_matrix:
        return self.fitted_vectorizer.transform(texts)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> sp.csr_matrix:
        self._check_fitted()
        if not texts:  # scikit-learn refuses an empty batch; the contract allows it
            return sp.csr_matrix((0, self.dim), dtype=np.float32)
        out = sp.csr_matrix(self._transform(list(texts)), dtype=np.float32)
        if self.params.get("normalize", False):
            out = sk_normalize(out, norm="l2", copy=False)  # zero rows stay zero
        return out

    @property
    def dim(self) -> int:
        return len(self.fitted_vectorizer.vocabulary_)

    def vocabulary(self) -> list[str]:
        return list(self.fitted_vectorizer.get_feature_names_out())

    def save(self, directory: Path) -> None:
        super().save(directory)
        joblib.dump(self.vectorizer, Path(directory) / _VECTORIZER_FILE)

    def _load_state(self, directory: Path) -> None:
        self.vectorizer = joblib.load(Path(directory) / _VECTORIZER_FILE)
        self._kwargs = vectorizer_kwargs(self.params)


class OneHotEncoder(_VectorizerEncoder):
    """Binary indicator per vocabulary term (1 if the word occurs, whatever its count)."""

    name: ClassVar[str] = "onehot"
    description: ClassVar[str] = "Binary word-presence vector over the corpus vocabulary (sparse)"
    defaults: ClassVar[JSONObject] = {**_COMMON, "normalize": True}

    def _make_vectorizer(self) -> CountVectorizer:
        return CountVectorizer(**self._kwargs, binary=True)


class BagOfWordsEncoder(_VectorizerEncoder):
    """Term counts per vocabulary term."""

    name: ClassVar[str] = "bow"
    description: ClassVar[str] = "Bag of words: term counts over the corpus vocabulary (sparse)"
    defaults: ClassVar[JSONObject] = {**_COMMON, "binary": False, "normalize": True}

    def _make_vectorizer(self) -> CountVectorizer:
        return CountVectorizer(**self._kwargs, binary=bool(self.params["binary"]))


class TfidfEncoder(_VectorizerEncoder):
    """TF-IDF with scikit-learn's conventions (smoothed idf, L2-normalised rows by default)."""

    name: ClassVar[str] = "tfidf"
    description: ClassVar[str] = "TF-IDF weighted bag of words (scikit-learn TfidfVectorizer, sparse)"
    defaults: ClassVar[JSONObject] = {
        **_COMMON,
        "sublinear_tf": False,
        "use_idf": True,
        "smooth_idf": True,
        "norm": "l2",  # l2 | l1 | null
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        if self.params["norm"] not in ("l2", "l1", None):
            raise EmbedscopeError(f"norm must be 'l2', 'l1' or null, not {self.params['norm']!r}")
        if self.params["norm"] != "l2":
            self.metric = "dot"

    def _make_vectorizer(self) -> CountVectorizer:
        return TfidfVectorizer(
            **self._kwargs,
            sublinear_tf=bool(self.params["sublinear_tf"]),
            use_idf=bool(self.params["use_idf"]),
            smooth_idf=bool(self.params["smooth_idf"]),
            norm=self.params["norm"],
        )
