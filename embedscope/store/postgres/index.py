"""A version's index inside PostgreSQL (pgvector): search runs in the database, filters in SQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

from embedscope.errors import ConflictError, EmbedscopeError
from embedscope.index.base import VectorIndex
from embedscope.index.quantized import QuantizedVectors, check_vector_dtype
from embedscope.jsontypes import JSONObject, JSONValue
from embedscope.store.postgres.schema import DTYPES, EF_SEARCH_MAX, HNSW_MAX_DIM, INDEX_BYTES, SCHEMA
from embedscope.validation import count_param

if TYPE_CHECKING:
    import psycopg
    from pgvector import HalfVector, SparseVector, Vector

    from embedscope.encoders.base import Vectors
    from embedscope.store.postgres.schema import Query


class IndexHost(Protocol):
    """What an attached index asks of its store (`PostgresStore` is one): the collection, this
    thread's connection, and the metadata fields a filter may name."""

    collection_id: int

    def _conn(self) -> psycopg.Connection: ...

    def _read(self, query: Query, *params: object) -> psycopg.Cursor: ...

    def metadata_fields(self) -> list[str]: ...


class PgVectorIndex(VectorIndex):
    """A version's index inside PostgreSQL: pgvector HNSW (`kind="hnsw"`) or none (`"exact"`,
    a sequential scan), over a `vector` (dtype f32) or `halfvec` (dtype f16) column, or a
    `sparsevec` one for sparse encoders. `search` runs the query in the database and applies
    `where` there, in SQL.

    The parameters have the embedded HNSW index's names, so a version's record reads the same in
    both stores: connectivity = pgvector's `m`, expansion_add = `ef_construction`,
    expansion_search = `hnsw.ef_search` (set per query)."""

    #: filters passing at most this many rows are searched among exactly those rows (`search_where`):
    #: PostgreSQL scores a row list at ~2-4 ms per 1,000 rows (docs/design.md, "Filtered search")
    exact_filter_max_rows = 5_000

    defaults: ClassVar[dict[str, JSONObject]] = {
        "hnsw": {"connectivity": 16, "expansion_add": 128, "expansion_search": 64, "dtype": "f32"},
        "exact": {"dtype": "f32"},
    }

    def __init__(self, kind: str = "hnsw", **params: JSONValue) -> None:
        if kind not in self.defaults:
            raise EmbedscopeError(f"unknown index '{kind}' for the PostgreSQL store; valid: hnsw, exact")
        if "vectors" in params:
            _check_vectors(check_vector_dtype(params["vectors"]), params.get("dtype", "f32"))
        unknown = sorted(set(params) - {*self.defaults[kind], "vectors"})
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults[kind].items())
            raise EmbedscopeError(
                f"pgvector {kind} index has no parameter {', '.join(unknown)}; valid: {valid}"
            )
        super().__init__(**{**self.defaults[kind], **params})
        for key in ("connectivity", "expansion_add", "expansion_search"):
            if key in self.params:
                count_param(self.params[key], f"pgvector {kind} {key}")
        if self.params["dtype"] not in DTYPES:
            raise EmbedscopeError(
                f"dtype {self.params['dtype']!r}: pgvector stores f32 (vector) or f16 (halfvec); "
                "8-bit storage needs the embedded store"
            )
        self.kind = kind  # type: ignore[misc]  # one class serves both kinds
        self._store: IndexHost | None = None
        self._table = ""
        self._storage = DTYPES[self.params["dtype"]]

    def build(self, vectors: np.ndarray | sp.csr_matrix | QuantizedVectors) -> PgVectorIndex:
        """Check the vectors fit pgvector; the index itself is built by the store, in the database."""
        self.size, self.dim = vectors.shape
        if sp.issparse(vectors):
            if self.kind == "hnsw":
                raise EmbedscopeError("sparse vectors: use --index exact")
            return self
        limit = HNSW_MAX_DIM[self._storage]
        if self.kind == "hnsw" and self.dim > limit:
            raise EmbedscopeError(
                f"pgvector's HNSW indexes at most {limit:,} dimensions of {self._storage}; this version "
                f"has {self.dim:,}: use dtype=f16 (halfvec, up to 4,000) or --index exact"
            )
        return self

    def attach(self, store: IndexHost, table: str, storage: str, *, size: int, dim: int) -> None:
        self._store, self._table, self._storage = store, table, storage
        self.size, self.dim = size, dim

    def _query_value(self, row: Vectors) -> Vector | HalfVector | SparseVector:
        from pgvector import HalfVector, SparseVector, Vector

        if self._storage == "sparsevec":
            return SparseVector(sp.csr_matrix(row))
        dense = np.asarray(row, dtype=np.float32).ravel()
        return HalfVector(dense) if self._storage == "halfvec" else Vector(dense)

    def search(
        self,
        queries: np.ndarray | sp.csr_matrix,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        where: str | None = None,
        expansion_search: int | None = None,
        iterative: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows per query, computed by PostgreSQL. `allowed` (a row mask) and `where` (a
        filter expression) both restrict the rows; filtered HNSW queries use iterative index scans
        (pgvector 0.8, `relaxed_order`) so they still find k rows, unless `iterative=False`."""
        import psycopg
        from psycopg import sql

        if self._store is None:
            raise EmbedscopeError(
                "this pgvector index is not attached to a store (read it with read_version)"
            )
        queries = queries if sp.issparse(queries) else np.atleast_2d(np.asarray(queries, dtype=np.float32))
        n_queries = queries.shape[0]
        out_rows = np.full((n_queries, k), -1, dtype=np.int64)
        out_vals = np.full((n_queries, k), -np.inf, dtype=np.float32)
        conditions, params = [], []
        join: sql.Composable = sql.SQL("")
        if where:
            from embedscope.filters import filter_sql

            clause, where_params = filter_sql(where, "i.metadata", self._store.metadata_fields())
            join = sql.SQL("JOIN {}.items i ON i.collection_id = %s AND i.id = v.item_id").format(
                sql.Identifier(SCHEMA)
            )
            conditions.append(clause)
            params = [self._store.collection_id, *where_params]
        if allowed is not None and not allowed.all():
            if not allowed.any():
                return out_rows, out_vals
            # the smaller of the two lists: rows allowed, or rows excluded
            if allowed.sum() <= len(allowed) / 2:
                conditions.append("v.row = ANY(%s::int4[])")
                params.append(np.flatnonzero(allowed).tolist())
            else:
                conditions.append("v.row <> ALL(%s::int4[])")
                params.append(np.flatnonzero(~allowed).tolist())
        filtered = bool(conditions)
        ef = min(int(expansion_search or self.params.get("expansion_search", 40)), EF_SEARCH_MAX)
        iterate = (filtered or k > ef) if iterative is None else iterative
        query = sql.SQL(
            "SELECT v.row, v.embedding <#> %s AS distance FROM {}.{} v {} {} ORDER BY 2 LIMIT %s"
        ).format(
            sql.Identifier(SCHEMA),
            sql.Identifier(self._table),
            join,
            sql.SQL("WHERE " + " AND ".join(conditions)) if conditions else sql.SQL(""),
        )
        conn = self._store._conn()
        try:
            for qi in range(n_queries):
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "SELECT set_config('hnsw.ef_search', %s, true), "
                        "set_config('hnsw.iterative_scan', %s, true)",
                        (str(max(ef, min(k, EF_SEARCH_MAX))), "relaxed_order" if iterate else "off"),
                    )
                    cur.execute(query, [self._query_value(queries[qi]), *params, k])
                    found = cur.fetchall()
                # relaxed_order may return rows slightly out of order: sort by the exact distance
                found.sort(key=lambda r: r[1])
                for j, (row, distance) in enumerate(found[:k]):
                    out_rows[qi, j], out_vals[qi, j] = row, -distance
        except psycopg.errors.UndefinedTable:
            raise ConflictError("the version was rewritten since it was opened; search again") from None
        return out_rows, out_vals

    def search_where(
        self,
        queries: np.ndarray | sp.csr_matrix,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        where: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` under a filter given both ways (the row mask the collection evaluated, and the
        `where` expression). Few allowed rows: search among exactly those rows (a row list; the
        planner scores them directly). Many: run `where` in SQL with iterative index scans, then
        drop the few rows the mask also excludes (items deleted since embedding, rows the caller
        excluded), fetching a little more than k so k remain. The threshold is measured:
        docs/design.md, "The PostgreSQL + pgvector store"."""
        if where is None or allowed is None or self.exact_filter(int(np.count_nonzero(allowed))):
            return self.search(queries, k, allowed=allowed)
        extra = 16
        while True:
            rows, scores = self.search(queries, k + extra, where=where)
            keep = (rows >= 0) & allowed[np.maximum(rows, 0)]
            short = keep.sum(axis=1) < k
            full = (rows >= 0).all(axis=1)  # there may be more rows to fetch
            if not (short & full).any() or k + extra >= self.size:
                break
            extra *= 4
        out_rows = np.full((len(rows), k), -1, dtype=np.int64)
        out_vals = np.full((len(rows), k), -np.inf, dtype=np.float32)
        for qi in range(len(rows)):
            kept = np.flatnonzero(keep[qi])[:k]
            out_rows[qi, : len(kept)], out_vals[qi, : len(kept)] = rows[qi, kept], scores[qi, kept]
        return out_rows, out_vals

    def _save(self, directory: Path) -> None:
        pass  # the index lives in the database, written by PostgresStore.write_version

    def _load(self, directory: Path) -> None:
        pass

    def nbytes(self) -> int:
        if self._store is None:
            return 0
        row = self._store._read(INDEX_BYTES, f'{SCHEMA}."{self._table}"').fetchone()
        return int(row[0]) if row else 0


def _check_vectors(vectors: object, dtype: object) -> None:
    """The `vectors` parameter (how the embedded store keeps a version's vectors) in PostgreSQL:
    the table's column is both what is stored and what HNSW indexes, so it is `dtype`'s type
    (f32: vector, f16: halfvec) and `vectors` can only repeat it; pgvector has no 8-bit vectors."""
    if vectors == "i8":
        raise EmbedscopeError(
            "vectors=i8: pgvector has no 8-bit vector type; the smallest is dtype=f16 (halfvec, "
            "2 bytes per dimension for the table and its HNSW index), or keep this version in the "
            "embedded store"
        )
    if vectors != dtype:
        raise EmbedscopeError(
            f"vectors={vectors} with dtype={dtype}: in PostgreSQL the stored column is the indexed one; "
            f"use dtype={vectors} (f16 = halfvec) for both"
        )
