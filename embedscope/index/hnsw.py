"""Approximate search with an HNSW graph from usearch (chosen by measurement: docs/design.md).

The graph is saved next to the vectors and memory-mapped on load (`view=True`), so a query
process starts in milliseconds instead of rebuilding the graph.

`dtype` is how the graph stores its vectors: f32, f16 (half the bytes, same recall) or i8 (a
quarter). usearch's i8 normalises each vector and rounds 127 * x: MiniLM's components are
~0.05, so only a handful of levels are used and the graph's own ranking loses ~0.1-0.2 recall@10
(bench/bench_scale.py). An i8 version therefore takes 4 x k candidates from the graph and
re-scores them with the vectors the store keeps beside every version, which brings recall back to
the f32 graph's (the same "coarse graph, exact re-rank" FAISS and vector databases use). Those
vectors are float32 unless the version's `vectors` parameter keeps them as f16 or as int8 codes
with a per-vector scale (index/quantized.py), which re-score nearly as well at a half or a
quarter of the bytes. i8 uses the cosine metric because its quantisation normalises anyway.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedscope.errors import EmbedscopeError
from embedscope.index.base import VectorIndex, row_scores, search_rows, top_k
from embedscope.index.quantized import QuantizedVectors
from embedscope.validation import count_param

if TYPE_CHECKING:
    from usearch.index import Index

_FILE = "hnsw.usearch"
#: how the graph stores vectors (usearch scalar kinds): 4, 2 or 1 byte per dimension
DTYPES = ("f32", "f16", "i8")
#: graphs of up to this many rows are built on one thread: usearch's serial insertion is deterministic
#: (the same vectors give the same graph, byte for byte, so the same query answers the same on every
#: build, machine and replica; its parallel insertion is not, and near-ties among the candidates then
#: reorder results from one build to the next) and loses no rows, so it needs no re-link. Measured
#: on 2 AVX2 cores: 5,197 MiniLM books 1.4 s serial vs 0.7 s parallel + ~0.35 s re-link; 104k rows
#: 73 s vs 38 s + ~19 s. Larger graphs keep every core.
SERIAL_BUILD_MAX_ROWS = 50_000
#: graph candidates per wanted result, re-scored exactly with float32 when the vectors are attached:
#: f16 loses nothing measurable; i8 needs the re-rank (a multiple fixed a priori, as the usual
#: oversampling of 2-4x in vector databases, not tuned on the benchmark's queries)
RESCORE = {"f32": 1, "f16": 1, "i8": 4}


class HNSWIndex(VectorIndex):
    """Filtered search (`allowed`): at most `exact_filter_max_rows` allowed rows are searched
    exactly among themselves; more go to the graph, which is asked for `filter_overfetch` x k / s
    candidates (s the allowed fraction), so that about `filter_overfetch` x k of them pass the
    filter, and the graph's walk is widened to at least that many. Both numbers are measured:
    docs/design.md, "Filtered search: one rule"."""

    kind = "hnsw"
    #: numpy scores ~20,000 scattered float32 rows in ~10 ms on the 2-core machine (the graph's own
    #: filtered cost at a few percent selectivity of 1M rows)
    exact_filter_max_rows = 20_000
    #: c in fetch = c * k / selectivity: c = 1 expects k allowed candidates and misses about half
    #: of the queries' k-th; c = 4 leaves a Poisson(4k) count of allowed candidates, short of k with
    #: probability < 1e-8 for k = 10 when the filter is independent of the vectors
    filter_overfetch = 4

    def __init__(
        self,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        dtype: str = "f32",
        threads: int | None = None,
        **params: object,
    ) -> None:
        if dtype not in DTYPES:
            raise EmbedscopeError(f"hnsw dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        for key, value in (
            ("connectivity", connectivity),
            ("expansion_add", expansion_add),
            ("expansion_search", expansion_search),
        ):
            count_param(value, f"hnsw {key}")
        super().__init__(
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
            dtype=dtype,
            **params,
        )
        #: threads for building and searching the graph: None = serial builds up to
        #: SERIAL_BUILD_MAX_ROWS rows, every core above and for searches; 0 = every core; n = n
        self.threads = threads
        self._index: Index | None = None
        #: filtered graph searches answered exactly because too few candidates passed (bench counts)
        self.filter_fallbacks = 0
        #: rows the parallel build left unreachable and `_relink_lost_rows` inserted again
        self.relinked_rows = 0
        #: the same rows as the store keeps them (float32, or f16/i8 codes: `vectors` parameter), for
        #: exact re-scoring (selective filters, i8 candidates)
        self.vectors: np.ndarray | QuantizedVectors | None = None

    @property
    def dtype(self) -> str:
        return str(self.params.get("dtype", "f32"))  # versions written before dtype existed: f32

    def _new(self, dim: int) -> Index:
        from usearch.index import Index

        return Index(
            ndim=dim,
            # vectors are normalised by the encoders that want cosine; i8 normalises in any case
            metric="cos" if self.dtype == "i8" else "ip",
            dtype=self.dtype,
            connectivity=int(self.params["connectivity"]),
            expansion_add=int(self.params["expansion_add"]),
            expansion_search=int(self.params["expansion_search"]),
        )

    def build(self, vectors: np.ndarray) -> HNSWIndex:
        if not isinstance(vectors, np.ndarray):
            raise EmbedscopeError("an HNSW index needs dense vectors; use index 'exact' for sparse encoders")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size, self.dim = vectors.shape
        self._index = self._new(self.dim)
        if self.size:
            threads = self.build_threads()
            self._index.add(np.arange(self.size, dtype=np.uint64), vectors, threads=threads)
            if threads != 1:
                self._relink_lost_rows(vectors)
        self.vectors = vectors
        return self

    def build_threads(self) -> int:
        """Insertion threads for a graph of `self.size` rows (see SERIAL_BUILD_MAX_ROWS)."""
        if self.threads is not None:
            return self.threads
        return 1 if self.size <= SERIAL_BUILD_MAX_ROWS else 0

    def _relink_lost_rows(self, vectors: np.ndarray) -> None:
        """usearch's parallel insertion (2.26) leaves a few nodes that no edge points to: no search
        reaches them, however wide its walk (300 books: 0-5 rows per build missing from their own
        top 3 even at ef = 300; 30,000 rows: ~10; single-threaded builds lose none). Graphs above
        SERIAL_BUILD_MAX_ROWS are built in parallel, where one thread would halve the build speed on
        two cores, so each row instead looks itself up once, and the rows not found are removed and
        inserted again one at a time, which links them from their neighbours. A row whose search
        meets an identical vector first counts as found (a group of duplicates would otherwise all
        go round again); a row missed only by the walk's approximation is re-inserted too, which is
        harmless. Cost: ~50% of the parallel build (docs/design.md)."""
        assert self._index is not None
        rows = np.arange(self.size, dtype=np.int64)
        queries = vectors  # the first pass looks up every row: no copy of the matrix
        for _ in range(2):
            found = self._index.search(queries, 2, threads=self.threads or 0)
            keys = np.asarray(found.keys, dtype=np.uint64).reshape(len(rows), -1).astype(np.int64)
            missed = ~(keys == rows[:, None]).any(axis=1)
            first = keys[missed, 0]  # -1 where nothing was found
            twin = (first >= 0) & (vectors[np.maximum(first, 0)] == vectors[rows[missed]]).all(axis=1)
            lost = rows[missed][~twin]
            self.relinked_rows += len(lost)
            if not len(lost):
                return
            self._index.remove(lost.astype(np.uint64))
            queries = vectors[lost]
            self._index.add(lost.astype(np.uint64), queries, threads=1)
            rows = lost

    def attach_vectors(self, vectors: np.ndarray | QuantizedVectors) -> None:
        """The version's vectors as the store keeps them (float32, or f16/i8 codes read row by row)."""
        self.vectors = vectors

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        expansion_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._index is not None
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if self.size == 0:
            return top_k(np.zeros((len(queries), 0), np.float32), k)
        n_allowed = self.size if allowed is None else int(np.count_nonzero(allowed))
        if allowed is not None and self.vectors is not None and self.exact_filter(n_allowed):
            return search_rows(queries, self.vectors, np.flatnonzero(allowed), k)
        ef = int(expansion_search or self.params["expansion_search"])
        rescore = RESCORE[self.dtype] if self.vectors is not None else 1
        want = k * rescore
        fetch = want
        if allowed is not None:
            # post-filtering: enough candidates that ~filter_overfetch x k (and the `want` that i8
            # re-scores) pass the filter
            fetch = math.ceil(max(self.filter_overfetch * k, want) * self.size / max(n_allowed, 1))
        fetch = min(self.size, fetch)
        # usearch defines this setter apart from its getter, which mypy reads as a read-only property
        self._index.expansion_search = max(ef, fetch)  # type: ignore[misc]
        matches = self._index.search(queries, fetch, threads=self.threads or 0)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
        sims = (1.0 - np.asarray(matches.distances, dtype=np.float32)).reshape(len(queries), -1)
        # usearch answers one query with `Matches` (no `counts`) and several with `BatchMatches`
        counts = np.asarray(getattr(matches, "counts", [len(matches)])).reshape(-1)
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        out_vals = np.full((len(queries), k), -np.inf, dtype=np.float32)
        allowed_rows: np.ndarray | None = None  # for the exact fallback, made once if needed
        for qi in range(len(queries)):
            r, s = keys[qi, : counts[qi]], sims[qi, : counts[qi]]
            if allowed is not None:
                keep = allowed[r]
                r, s = r[keep], s[keep]
                if len(r) < min(k, n_allowed) and self.vectors is not None:
                    # the graph's neighbourhood of this query holds too few allowed rows (a filter
                    # that avoids it): exact among the allowed rows rather than fewer than k results
                    self.filter_fallbacks += 1
                    if allowed_rows is None:
                        allowed_rows = np.flatnonzero(allowed)
                    found = search_rows(queries[qi : qi + 1], self.vectors, allowed_rows, k)
                    out_rows[qi], out_vals[qi] = found[0][0], found[1][0]
                    continue
            if rescore > 1 and len(r):
                r = np.sort(r[:want])  # sorted rows: sequential reads from the memory-mapped matrix
                s = row_scores(queries[qi : qi + 1], self.vectors, r)[0]
                order = np.argsort(-s, kind="stable")
                r, s = r[order], s[order]
            out_rows[qi, : min(k, len(r))] = r[:k]
            out_vals[qi, : min(k, len(s))] = s[:k]
        return out_rows, out_vals

    def _save(self, directory: Path) -> None:
        assert self._index is not None
        self._index.save(str(directory / _FILE))

    def _load(self, directory: Path) -> None:
        from usearch.index import Index

        self._index = Index.restore(str(directory / _FILE), view=True)
        if self._index is None:
            raise EmbedscopeError(f"HNSW index file {directory / _FILE} is missing or corrupt")
        self._index.expansion_search = int(self.params["expansion_search"])  # type: ignore[misc]  # (above)

    def nbytes(self) -> int:
        return int(self._index.memory_usage) if self._index is not None else 0
