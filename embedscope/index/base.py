"""The Index contract: build(vectors), search(queries, k) -> (rows, scores), save/load.

Indexes work on row numbers (0..n-1); the store maps rows to item ids. Scores are similarities
(higher is better): cosine for normalised dense vectors, inner product otherwise.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from embedscope.errors import EmbedscopeError
from embedscope.index.quantized import QuantizedVectors, StoredVectors, check_vector_dtype
from embedscope.jsontypes import JSONValue


class VectorIndex(ABC):
    kind: ClassVar[str] = ""
    #: A filter passing at most this many rows is searched exactly among those rows; above it the
    #: index's approximate path runs with the filter. Exact among the allowed rows is exact (recall
    #: 1.0) and costs in proportion to their count, not their fraction, so the bound is a count: the
    #: rows the index's exact path scores in a few milliseconds. Each index sets it from the measured
    #: cost of its own exact path (docs/design.md, "Filtered search: one rule").
    exact_filter_max_rows: int = 0

    def __init__(self, **params: JSONValue) -> None:
        if "vectors" in params:  # how the store keeps the version's vectors (index/quantized.py)
            params["vectors"] = check_vector_dtype(params["vectors"])
        self.params = params
        self.size = 0
        self.dim = 0

    @abstractmethod
    def build(self, vectors: np.ndarray | sp.csr_matrix) -> VectorIndex: ...

    @abstractmethod
    def search(
        self, queries: np.ndarray | sp.csr_matrix, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows per query, best first: (rows int64 (q, k), scores float32 (q, k)).

        `allowed` is a boolean mask over rows (metadata filter); rows outside it never appear.
        Where fewer than k rows qualify, rows are padded with -1 and scores with -inf.
        """

    def search_where(
        self,
        queries: np.ndarray | sp.csr_matrix,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        where: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` under a metadata filter given both ways: `allowed`, the row mask the collection
        evaluated from `where` (deleted and excluded rows removed too), and the `where` expression.
        In-process indexes use the mask; an index living in a database (pgvector) overrides this to
        run `where` there as SQL. The search pipeline asks every index through this method."""
        return self.search(queries, k, allowed=allowed)

    def exact_filter(self, allowed_rows: int) -> bool:
        """Whether a filter passing `allowed_rows` rows is searched exactly among them (the rule
        every index follows; the bound is the index's own `exact_filter_max_rows`)."""
        return allowed_rows <= self.exact_filter_max_rows

    @abstractmethod
    def _save(self, directory: Path) -> None: ...

    @abstractmethod
    def _load(self, directory: Path) -> None: ...

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save(directory)
        meta = {"kind": self.kind, "params": self.params, "size": self.size, "dim": self.dim}
        (directory / "index.json").write_text(json.dumps(meta))

    def nbytes(self) -> int:
        return 0


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a (q, n) score matrix, sorted best first, padded with -1 / -inf."""
    q, n = scores.shape
    kk = min(k, n)
    if kk == 0:
        return np.full((q, k), -1, dtype=np.int64), np.full((q, k), -np.inf, dtype=np.float32)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    rows[~np.isfinite(vals)] = -1
    if kk < k:
        rows = np.pad(rows, ((0, 0), (0, k - kk)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return rows, vals


def row_scores(
    queries: np.ndarray | sp.csr_matrix, vectors: StoredVectors | sp.csr_matrix, rows: np.ndarray
) -> np.ndarray:
    """`queries @ vectors[rows].T` as a dense float32 array: float32 rows as they are (a memory-mapped
    matrix reads only those rows), f16/i8 rows scored from their codes (`QuantizedVectors.dot`),
    sparse rows (BM25, TF-IDF) with a sparse product."""
    if isinstance(vectors, QuantizedVectors):
        return vectors.dot(np.asarray(queries), rows)
    if sp.issparse(vectors) or sp.issparse(queries):
        product = sp.csr_matrix(queries) @ sp.csr_matrix(vectors[rows]).T
        return np.asarray(product.toarray(), dtype=np.float32)
    return np.asarray(queries @ np.asarray(vectors[rows]).T, dtype=np.float32)


def search_rows(
    queries: np.ndarray, vectors: StoredVectors, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over a subset of rows (a selective filter), mapped back to full row numbers."""
    if len(rows) == 0:
        return top_k(np.zeros((len(queries), 0), np.float32), k)
    sub_rows, vals = top_k(row_scores(queries, vectors, rows), k)
    return np.where(sub_rows >= 0, rows[np.maximum(sub_rows, 0)], -1), vals


INDEX_KINDS = {"exact": "embedscope.index.exact:ExactIndex", "hnsw": "embedscope.index.hnsw:HNSWIndex"}


def _index_class(kind: str) -> type[VectorIndex]:

    if kind not in INDEX_KINDS:
        raise EmbedscopeError(f"unknown index '{kind}'; valid: {', '.join(INDEX_KINDS)}")
    module, cls = INDEX_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


def create_index(kind: str, **params: JSONValue) -> VectorIndex:
    return _index_class(kind)(**params)


def load_index(directory: Path) -> VectorIndex:
    directory = Path(directory)
    meta = json.loads((directory / "index.json").read_text())
    index = _index_class(meta["kind"])(**meta.get("params", {}))
    index.size, index.dim = meta["size"], meta["dim"]
    index._load(directory)
    return index
