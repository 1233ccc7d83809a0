"""The Encoder contract, modelled on scikit-learn estimators and sentence-transformers' `encode`.

Every encoder:
- takes its parameters in the constructor (keyword only, validated in `__init__`),
- learns from a corpus in `fit(texts)` when it learns anything (`requires_fit`),
- turns texts into vectors with `encode(texts)`: a dense float32 array (n, dim) or a
  scipy.sparse CSR matrix for the count-based family,
- may encode queries differently from documents (`encode_queries`, e.g. BM25),
- saves and loads its learned state (`save(dir)` / `load(dir)`),
- describes itself (`config()`), enough to rebuild it exactly.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from embedscope.errors import EmbedscopeError

Vectors = np.ndarray | sp.csr_matrix


class NotFittedError(EmbedscopeError):
    """encode() was called on an encoder that learns before it was fitted."""


class Encoder(ABC):
    """Base class; subclasses set `name`, `description`, `defaults` and implement `encode`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: every accepted parameter with its default value; unknown parameters are rejected
    defaults: ClassVar[dict[str, Any]] = {}
    requires_fit: ClassVar[bool] = False
    sparse: ClassVar[bool] = False
    #: False for behavioural encoders (item2vec, ALS): vectors learned from interactions, not text
    encodes_text: ClassVar[bool] = True
    #: cosine similarity (vectors L2-normalised) or raw inner product (e.g. BM25 weights)
    metric: ClassVar[str] = "cosine"

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise EmbedscopeError(
                f"encoder '{self.name}' has no parameter {', '.join(map(repr, unknown))}; valid: {valid}"
            )
        for key, value in params.items():
            _check_param_type(self.name, key, value, self.defaults[key])
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.fitted = not self.requires_fit

    # --- scikit-learn style -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return dict(self.params)

    def fit(self, texts: Sequence[str]) -> Encoder:
        """Learn from a corpus. Encoders that do not learn accept and ignore it."""
        self.fitted = True
        return self

    def fit_items(self, texts: Sequence[str], metadata: Sequence[Mapping[str, Any]] | None) -> Encoder:
        """Learn from a collection's items: their texts and, row for row, their metadata (what
        `Collection.embed` calls). Encoders that learn from text alone use `fit`; one that learns
        from fields as well (`tuned`: title -> description pairs) overrides this."""
        return self.fit(texts)

    def fit_transform(self, texts: Sequence[str]) -> Vectors:
        return self.fit(texts).encode(texts)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"encoder '{self.name}' must be fitted on a corpus before encode()")

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

    # --- persistence ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this encoder: name + full parameters."""
        return {"name": self.name, "params": self.get_params()}

    def save(self, directory: Path) -> None:
        """Write the learned state. The base writes the config; learners add their state."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "encoder.json").write_text(json.dumps(self.config(), indent=2, default=str))

    def _load_state(self, directory: Path) -> None:
        """Read learned state written by `save`; encoders that learn override this. The folder may
        be deleted once `load` returns (`from_bytes` does), so nothing may be read from it later."""
        return None

    @classmethod
    def load(cls, directory: Path) -> Encoder:
        from embedscope.encoders.registry import create_encoder

        directory = Path(directory)
        cfg = json.loads((directory / "encoder.json").read_text())
        enc = create_encoder(cfg["name"], cfg.get("params", {}))
        enc._load_state(directory)
        enc.fitted = True
        return enc

    def to_bytes(self) -> bytes:
        """The saved encoder as one gzip tar: how it travels (a database row, a Ray actor)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save(Path(tmp) / "encoder")
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(Path(tmp) / "encoder", arcname="encoder")
            return buf.getvalue()

    @staticmethod
    def from_bytes(blob: bytes) -> Encoder:
        """The encoder `to_bytes` packed."""
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                tar.extractall(tmp, filter="data")
            return Encoder.load(Path(tmp) / "encoder")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _check_param_type(encoder: str, key: str, value: Any, default: Any) -> None:
    """A parameter whose default is a number or a flag takes a number or a flag (or null): a list
    or a word there is the user's mistake, said in one line, not a TypeError deep in a library.
    Text, list and null defaults are left to each encoder (some accept several shapes)."""
    if value is None or default is None:
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


def empty_rows(matrix: Any) -> np.ndarray:
    """Per row: True where an encoded query has no known term (all zeros), so search can say "no
    known terms" instead of returning arbitrary ties. Sparse or dense, one vector or many rows."""
    if sp.issparse(matrix):
        return np.asarray(abs(matrix).sum(axis=1)).ravel() == 0  # stored zeros count as empty
    return ~np.atleast_2d(np.asarray(matrix)).any(axis=1)


def is_empty_query(vec: Any) -> bool:
    """True when one encoded query (a 1-row matrix or a vector) has no known term."""
    return bool(empty_rows(vec).all())
