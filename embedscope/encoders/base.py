"""The Encoder contract, modelled on scikit-learn estimators and sentence-transformers' `encode`.

Every encoder:
- takes its parameters in the constructor (keyword only, validated in `__init__`),
- learns from a corpus in `fit(texts)` when it learns anything (`requires_fit`),
- turns texts into vectors with `encode(texts)`: a dense float32 array (n, dim) or a
  scipy.sparse CSR matrix for the count-based family,
- may encode queries differently from documents (`encode_queries`, e.g. BM25),
- saves and loads its learned state (`save(dir)`; `registry.load_encoder(dir)` rebuilds it),
- describes itself (`config()`), enough to rebuild it exactly.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeAlias, TypeVar

import numpy as np
import scipy.sparse as sp

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONMapping, JSONObject, JSONValue
from embedscope.validation import count_param, is_number

if TYPE_CHECKING:
    from typing_extensions import TypeIs

Vectors: TypeAlias = np.ndarray | sp.csr_matrix
S = TypeVar("S")


def is_sparse(matrix: object) -> TypeIs[sp.spmatrix]:
    """`scipy.sparse.issparse` that a type checker can follow (scipy has no types): a `Vectors` is
    its sparse rows where this holds and a NumPy array where it does not."""
    return bool(sp.issparse(matrix))


class NotFittedError(EmbedscopeError):
    """encode() was called on an encoder that learns before it was fitted."""


class Encoder(ABC):
    """Base class; subclasses set `name`, `description`, `defaults` and implement `encode`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: every accepted parameter with its default value; unknown parameters are rejected
    defaults: ClassVar[JSONObject] = {}
    #: what a parameter whose default is null takes when it is given (the others take their
    #: default's type): "count" a whole number >= 1, "number" any number. So that a value an encoder
    #: would only refuse while fitting (`max_features: "abc"`) is refused when the encoder is made:
    #: before an HTTP embedding job is accepted, not after it answered 202
    nullable: ClassVar[dict[str, str]] = {"max_features": "count", "epochs": "count", "min_rating": "number"}
    requires_fit: bool = False
    sparse: ClassVar[bool] = False
    #: False for behavioural encoders (item2vec, ALS): vectors learned from interactions, not text
    encodes_text: ClassVar[bool] = True
    #: cosine similarity (vectors L2-normalised) or raw inner product (e.g. BM25 weights)
    metric: str = "cosine"  # an instance may change it (raw counts rank by "dot")

    def __init__(self, **params: JSONValue) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise EmbedscopeError(
                f"encoder '{self.name}' has no parameter {', '.join(map(repr, unknown))}; valid: {valid}"
            )
        for key, value in params.items():
            _check_param_type(self.name, key, value, self.defaults[key], self.nullable.get(key))
        self.params: JSONObject = {**self.defaults, **params}
        self.fitted = not self.requires_fit

    # --- scikit-learn style -------------------------------------------------------------------
    def get_params(self) -> JSONObject:
        return dict(self.params)

    def fit(self, texts: Sequence[str]) -> Encoder:
        """Learn from a corpus. Encoders that do not learn accept and ignore it."""
        self.fitted = True
        return self

    def fit_items(self, texts: Sequence[str], metadata: Sequence[JSONMapping] | None) -> Encoder:
        """Learn from a collection's items: their texts and, row for row, their metadata (what
        `Collection.embed` calls). Encoders that learn from text alone use `fit`; one that learns
        from fields as well (`tuned`: title -> description pairs) overrides this."""
        return self.fit(texts)

    def teacher(self) -> JSONObject | None:
        """For an encoder distilled from another: the teacher's config ({"name", "params"}: the
        params that change its vectors). `Collection.embed` then calls `fit_to_teacher` with the
        teacher's stored vectors of those texts (`Collection.vectors_made_by`), so the teacher need
        not encode the collection again. None: `fit(texts)` alone."""
        return None

    def fit_to_teacher(self, texts: Sequence[str], targets: np.ndarray) -> Encoder:
        """Learn from the teacher's vectors of the texts (one row per text, NaN rows where it has
        none): what `Collection.embed` calls for an encoder whose `teacher()` names one."""
        raise NotImplementedError(f"encoder '{self.name}' names no teacher to fit to")

    def fit_transform(self, texts: Sequence[str]) -> Vectors:
        return self.fit(texts).encode(texts)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"encoder '{self.name}' must be fitted on a corpus before encode()")

    def _fitted(self, state: S | None, what: str) -> S:
        """`state`, which `fit` sets (a vectorizer, a model, idf weights): NotFittedError before
        `fit`; None after it is a state only a bug can reach, said as such."""
        self._check_fitted()
        if state is None:
            raise RuntimeError(f"encoder '{self.name}' is marked fitted but has no {what}")
        return state

    # --- encoding -------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False) -> Vectors:
        """Encode documents."""

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64) -> Vectors:
        """Encode queries; same as documents unless the model is asymmetric."""
        return self.encode(texts, batch_size=batch_size)

    @property
    def dim(self) -> int:
        """Vector dimension (vocabulary size for sparse encoders)."""
        raise NotImplementedError

    def runtime_info(self) -> JSONObject:
        """What computes this encoder's vectors where that depends on the machine (runtime,
        arithmetic, threads, CPU features), for the version's stats; empty where nothing does."""
        return {}

    # --- persistence ----------------------------------------------------------------------------
    def config(self) -> JSONObject:
        """Everything needed to rebuild this encoder: name + full parameters."""
        return {"name": self.name, "params": self.get_params()}

    def same_vectors(self, config: JSONObject) -> bool:
        """Whether a version made with `config` holds the vectors this encoder computes, so that
        `embed` keeps its rows and fitted encoder: the same config, or one an encoder says computes
        the same (a transformer whose precision names the same arithmetic on this CPU)."""
        return config == self.config()

    def save(self, directory: Path) -> None:
        """Write the learned state. The base writes the config; learners add their state."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "encoder.json").write_text(json.dumps(self.config(), indent=2, default=str))

    def _load_state(self, directory: Path) -> None:
        """Read learned state written by `save`; encoders that learn override this. The folder may
        be deleted once loading returns (`registry.encoder_from_bytes` does), so nothing may be read
        from it later. Loading itself is `registry.load_encoder`: the saved config names the class."""
        return None

    def to_bytes(self) -> bytes:
        """The saved encoder as one gzip tar: how it travels (a database row, a Ray actor);
        `registry.encoder_from_bytes` unpacks it."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save(Path(tmp) / "encoder")
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(Path(tmp) / "encoder", arcname="encoder")
            return buf.getvalue()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _check_param_type(
    encoder: str, key: str, value: object, default: object, nullable: str | None = None
) -> None:
    """A parameter whose default is a number or a flag takes a number or a flag (or null): a list
    or a word there is the user's mistake, said in one line, not a TypeError deep in a library.
    A null default takes what `nullable` says; text and list defaults are left to each encoder
    (some accept several shapes). A flag is never a number, nor a number a flag."""
    if value is None:
        return
    if default is None:
        if nullable == "count":
            count_param(value, f"encoder '{encoder}': parameter '{key}'")
        elif nullable == "number" and not is_number(value):
            raise EmbedscopeError(f"encoder '{encoder}': parameter '{key}' must be a number, got {value!r}")
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise EmbedscopeError(
                f"encoder '{encoder}': parameter '{key}' must be true or false, got {value!r}"
            )
    elif isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise EmbedscopeError(
            f"encoder '{encoder}': parameter '{key}' must be a number (default {default!r}), got {value!r}"
        )


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Row-normalise a dense float32 matrix; zero rows stay zero instead of becoming NaN."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def check_corpus(texts: Sequence[str]) -> list[str]:
    """The corpus a `fit` receives, as a list; an empty one is a user error, not a crash."""
    texts = list(texts)
    if not texts:
        raise EmbedscopeError("cannot fit on an empty corpus")
    return texts


def empty_rows(matrix: Vectors) -> np.ndarray:
    """Per row: True where an encoded query has no known term (all zeros), so search can say "no
    known terms" instead of returning arbitrary ties. Sparse or dense, one vector or many rows."""
    if sp.issparse(matrix):
        return np.asarray(np.asarray(abs(matrix).sum(axis=1)).ravel() == 0)  # stored zeros count as empty
    return np.asarray(~np.atleast_2d(np.asarray(matrix)).any(axis=1))


def is_empty_query(vec: Vectors) -> bool:
    """True when one encoded query (a 1-row matrix or a vector) has no known term."""
    return bool(empty_rows(vec).all())
