"""A version's dense vectors kept in fewer bytes: float16, or int8 codes with one float32 scale
per vector, decoded to float32 only for the rows being read.

Why: an HNSW version keeps its vectors beside the graph (exact re-scoring of an i8 graph's
candidates, exact search among a filter's rows, more-like-this, drift, projections, reuse by the
next incremental embed). Kept as float32 they are most of what an i8 version costs on disk
(1,536 of 3,221 bytes per 384-d vector at 1M, docs/design.md). The index parameter
`vectors=f16|i8` keeps them in 768 or 388 bytes instead.

int8 codes are symmetric per vector: scale = max |x_i| / 127, code_i = round(x_i / scale), so each
vector uses all 255 levels whatever its range (usearch's own i8 rounds 127 * x of the unit vector:
MiniLM's components of ~0.05 then use a handful of levels). The error per component is at most
scale / 2; a dot product with a query is scored as (codes . q) * scale, one int8 -> float32
conversion per element and no decoded copy of the rows.

`QuantizedVectors` reads like the float32 matrix it stands for where the code base reads a
version's vectors: `shape`, `dtype` (float32, what reads return), `len`, `v[rows]` (float32 rows,
decoded), `np.asarray(v)` (the whole matrix decoded: only for callers that need all of it), and
`dot(queries, rows)` for scoring without decoding. The codes may be memory-mapped arrays.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from embedscope.encoders.base import Vectors
from embedscope.errors import EmbedscopeError

#: how a version keeps its dense vectors: 4, 2 or 1 byte per dimension (+ 4 bytes per vector for i8)
VECTOR_DTYPES = ("f32", "f16", "i8")
_CHUNK = 65_536  # rows decoded at a time when all of them are asked for (bounded temporary memory)


def check_vector_dtype(value: object) -> str:
    """The `vectors` index parameter, validated (f32 when not given)."""
    value = "f32" if value is None else str(value)
    if value not in VECTOR_DTYPES:
        valid = ", ".join(VECTOR_DTYPES)
        raise EmbedscopeError(f"index parameter vectors must be one of {valid}, not {value!r}")
    return value


class QuantizedVectors:
    """float16 codes (`scales` None) or int8 codes with one float32 scale per row."""

    dtype = np.dtype(np.float32)  # what reads return: callers see a float32 matrix
    ndim = 2

    def __init__(self, codes: np.ndarray, scales: np.ndarray | None = None) -> None:
        if codes.ndim != 2:
            raise EmbedscopeError(f"quantized vectors must be a matrix, not shape {codes.shape}")
        if codes.dtype == np.int8:
            if scales is None or scales.shape != (codes.shape[0],):
                raise EmbedscopeError("int8 vectors need one scale per row")
        elif codes.dtype != np.float16 or scales is not None:
            raise EmbedscopeError(f"quantized vectors are float16, or int8 with scales; not {codes.dtype}")
        self.codes, self.scales = codes, scales

    @property
    def stored(self) -> str:
        """The `vectors` parameter these codes follow: f16 or i8."""
        return "i8" if self.scales is not None else "f16"

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes as stored (codes and scales), not decoded."""
        return int(self.codes.nbytes + (0 if self.scales is None else self.scales.nbytes))

    # Any: a NumPy index (int, slice, array, mask, tuple), whose union NumPy's stubs keep private
    def __getitem__(self, key: Any) -> np.ndarray:
        """Rows (an int, a slice, a list or array of ints, a boolean mask), decoded to float32;
        `v[rows, cols]` decodes the rows, then takes the columns."""
        if isinstance(key, tuple):
            rows = self[key[0]]
            return rows[key[1:]] if rows.ndim == 1 else rows[(slice(None), *key[1:])]
        decoded = np.asarray(self.codes[key], dtype=np.float32)
        if self.scales is not None:
            decoded *= np.asarray(self.scales[key], dtype=np.float32)[..., None]
        return decoded

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for start in range(0, len(self), _CHUNK):
            out[start : start + _CHUNK] = self[start : start + _CHUNK]
        return out if dtype is None else out.astype(dtype, copy=False)

    def dot(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """queries (q, d) float32 scored against `rows` (all when None): (q, len(rows)) float32,
        equal to `queries @ self[rows].T` up to float rounding, without a decoded copy of the rows
        (int8: the scale is applied to the scores, not to every element)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if rows is None:
            n = len(self)
            chunks = [np.arange(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)] or [np.arange(0)]
            return np.concatenate([self.dot(queries, c) for c in chunks], axis=1)
        scores = queries @ np.asarray(self.codes[rows], dtype=np.float32).T
        if self.scales is not None:
            scores *= np.asarray(self.scales[rows], dtype=np.float32)
        return scores


#: a version's vectors as kept: float32 rows (in memory or memory-mapped), f16/i8 codes, or sparse rows
StoredVectors: TypeAlias = np.ndarray | QuantizedVectors | sp.csr_matrix


def decoded(vectors: StoredVectors) -> Vectors:
    """A version's vectors as a plain matrix: f16/i8 codes decoded whole to float32 (for callers
    that need every row in memory); a float32 array or a sparse matrix unchanged."""
    return np.asarray(vectors) if isinstance(vectors, QuantizedVectors) else vectors


def quantize(vectors: StoredVectors, dtype: str) -> StoredVectors:
    """`vectors` as the version keeps them: unchanged for f32 (or sparse), else QuantizedVectors.
    Decoded rows re-quantize to the same codes, so rows reused by an incremental embed do not
    drift from one version to the next."""
    dtype = check_vector_dtype(dtype)
    if dtype == "f32" or not hasattr(vectors, "shape") or hasattr(vectors, "tocsr"):
        return vectors
    if isinstance(vectors, QuantizedVectors) and vectors.stored == dtype:
        return vectors
    dense = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(dense).all():
        raise EmbedscopeError("vectors hold NaN or infinite values: they cannot be stored as f16 or i8")
    if dtype == "f16":
        if np.abs(dense).max(initial=0.0) > np.finfo(np.float16).max:
            raise EmbedscopeError("vectors exceed float16's range (65504): use vectors=f32 or i8")
        return QuantizedVectors(dense.astype(np.float16))
    peak = np.abs(dense).max(axis=1) if dense.size else np.zeros(len(dense), np.float32)
    scales = (peak / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)  # an all-zero row: codes 0, scale 0
    codes = np.clip(np.rint(dense / safe[:, None]), -127, 127).astype(np.int8)
    return QuantizedVectors(codes, scales)
