"""Exact search: one matrix product (dense, NumPy/BLAS) or sparse-dense product (SciPy).

Hand-written on purpose: a single BLAS sgemv/sgemm over a memory-mapped float32 matrix is the
fastest exact search on a CPU (memory-bound); libraries add copies or per-query overhead
(measured in docs/design.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.base import is_sparse
from embedscope.index.base import VectorIndex, search_rows, top_k
from embedscope.index.quantized import QuantizedVectors


class ExactIndex(VectorIndex):
    kind = "exact"

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.vectors: np.ndarray | sp.csr_matrix | None = None
        self._postings: sp.csr_matrix | None = None

    def build(self, vectors: np.ndarray | sp.csr_matrix | QuantizedVectors) -> ExactIndex:
        if is_sparse(vectors):
            self.vectors = vectors.tocsr()
        elif isinstance(vectors, QuantizedVectors):
            self.vectors = vectors  # scored from its codes, never decoded whole (index/quantized.py)
        else:
            self.vectors = np.ascontiguousarray(vectors, np.float32)
        self._postings = None
        self.size, self.dim = vectors.shape
        return self

    def search(
        self, queries: np.ndarray | sp.csr_matrix, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.vectors is not None
        if is_sparse(self.vectors) and is_sparse(queries):
            # an inverted index: rows of the transposed matrix are each term's postings, so the product
            # touches only documents that share a term with the query, not every document row
            if self._postings is None:
                self._postings = self.vectors.T.tocsr()
            scores = np.asarray((sp.csr_matrix(queries) @ self._postings).toarray(), dtype=np.float32)
        elif is_sparse(self.vectors) or is_sparse(queries):
            scores = self.vectors @ (queries.T if is_sparse(queries) else sp.csr_matrix(queries).T)
            scores = np.asarray(scores.T.todense(), dtype=np.float32)
        else:
            queries = np.asarray(queries, dtype=np.float32)
            if queries.ndim == 1:
                queries = queries[None, :]
            if allowed is not None and allowed.sum() < 0.5 * len(allowed):
                # selective filter: score only the allowed rows (fewer bytes to stream)
                return search_rows(queries, self.vectors, np.flatnonzero(allowed), k)
            if isinstance(self.vectors, QuantizedVectors):
                scores = self.vectors.dot(queries)
            else:
                scores = queries @ self.vectors.T
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        return top_k(scores, k)

    def _save(self, directory: Path) -> None:
        pass  # the store owns the vectors; the exact index is rebuilt from them for free

    def _load(self, directory: Path) -> None:
        pass

    def nbytes(self) -> int:
        if self.vectors is None:
            return 0
        if is_sparse(self.vectors):
            # the postings (built on the first query) hold the same numbers once more
            copies = 1 if self._postings is None else 2
            return copies * int(
                self.vectors.data.nbytes + self.vectors.indices.nbytes + self.vectors.indptr.nbytes
            )
        return int(self.vectors.nbytes)
