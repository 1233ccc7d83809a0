"""The PostgreSQL store's embedding versions: one vector table per revision, written in one
transaction, read in one snapshot, and retired tables collected once no reader can need them."""

from __future__ import annotations

import json
import time
import uuid
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from embedscope.clock import now
from embedscope.encoders.base import Encoder
from embedscope.encoders.registry import encoder_from_bytes
from embedscope.errors import ConflictError, DamagedError, EmbedscopeError
from embedscope.index.base import VectorIndex
from embedscope.jsontypes import JSONObject
from embedscope.store.base import VersionData, VersionInfo
from embedscope.store.postgres.connection import PgConnection
from embedscope.store.postgres.index import PgVectorIndex
from embedscope.store.postgres.schema import (
    INDEX_BYTES,
    OPS,
    RETIRED_SECONDS,
    SCHEMA,
    SPARSE_MAX_NNZ,
    one_row,
    storage_of,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


class PgVersions(PgConnection):
    """Versions and their vector tables (`write_version`, `read_version`, ... of the Store contract)."""

    @abstractmethod
    def metadata_fields(self) -> list[str]:
        """The items' metadata fields (`PostgresStore`'s): what an attached index's filter may name."""

    def _collect_garbage(self, grace: float = RETIRED_SECONDS) -> None:
        """Drop this collection's vector tables that no version points at: replaced revisions once
        they have been retired for `grace` seconds, and any other (a revision whose writer died
        after its commit). Run by version writers, under the writer lock; the table of a writer
        still in progress is invisible here anyway (its CREATE TABLE is uncommitted)."""
        live = {
            self._table(r)
            for (r,) in self._read(
                f"SELECT revision FROM {SCHEMA}.versions WHERE collection_id = %s", self.collection_id
            )
        }
        resting = {
            t
            for (t,) in self._read(
                f"SELECT table_name FROM {SCHEMA}.retired WHERE collection_id = %s "
                "AND retired_at > now() - make_interval(secs => %s)",
                self.collection_id,
                grace,
            )
        }
        for table in set(self.vector_tables()) - live - resting:
            self._drop_table(table)

    def retired_tables(self) -> list[str]:
        """Replaced revisions' tables still kept for readers that loaded them (see RETIRED_SECONDS)."""
        rows = self._read(
            f"SELECT table_name FROM {SCHEMA}.retired WHERE collection_id = %s", self.collection_id
        )
        return [r[0] for r in rows]

    def _retire(self, cur: psycopg.Cursor, revision: str) -> None:
        cur.execute(
            f"INSERT INTO {SCHEMA}.retired (collection_id, table_name) VALUES (%s, %s) "
            "ON CONFLICT (table_name) DO NOTHING",
            (self.collection_id, self._table(revision)),
        )

    def _table(self, revision: str) -> str:
        """The vector table of a revision (named after the collection, so GC stays inside it)."""
        return f"v{self.collection_id}_{revision}"

    def vector_tables(self) -> list[str]:
        """This collection's vector tables, committed ones only (what GC and `check` look at)."""
        rows = self._read(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, %s)",
            SCHEMA,
            f"v{self.collection_id}_",
        )
        return [r[0] for r in rows]

    def _drop_table(self, table: str) -> None:
        """Best effort, never waiting on a reader that still uses the table (later GC retries)."""
        import psycopg
        from psycopg import sql

        try:
            with self._conn().transaction():
                self._read("SELECT set_config('lock_timeout', '200ms', true)")
                self._read(
                    sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                        sql.Identifier(SCHEMA), sql.Identifier(table)
                    )
                )
                self._read(f"DELETE FROM {SCHEMA}.retired WHERE table_name = %s", table)
        except psycopg.errors.LockNotAvailable:
            pass

    # --- versions --------------------------------------------------------------------------------
    def list_versions(self) -> list[VersionInfo]:
        active = self.get_setting("active_version")
        out = []
        rows = self._read(
            f"SELECT name, info FROM {SCHEMA}.versions WHERE collection_id = %s ORDER BY name",
            self.collection_id,
        )
        for name, info in rows:
            v = VersionInfo(**info)
            v.active = name == active
            out.append(v)
        return out

    def new_index(self, kind: str, params: JSONObject) -> VectorIndex:
        return PgVectorIndex(kind, **params)

    def write_version(
        self, info: VersionInfo, data: VersionData, encoder: Encoder, index: VectorIndex | None
    ) -> None:
        from psycopg import sql

        data.check_aligned(info.name)
        vectors = data.vectors
        plan = PgVectorIndex(info.index["kind"], **info.index.get("params", {}))
        plan.build(vectors)  # validates the dimension and sparsity against pgvector's limits
        storage = storage_of(info.index, sp.issparse(vectors))
        blob = encoder.to_bytes()
        revision = uuid.uuid4().hex
        table = sql.Identifier(self._table(revision))
        with self.writing():
            self._write_version(info, revision, table, data, storage, plan, blob)
            self._collect_garbage()  # tables replaced long enough ago, any a crash left

    def _write_version(
        self,
        info: VersionInfo,
        revision: str,
        table: sql.Identifier,
        data: VersionData,
        storage: str,
        plan: PgVectorIndex,
        blob: bytes,
    ) -> None:
        from psycopg import sql

        vectors = data.vectors
        with self._write(lock=None) as cur:
            cur.execute(
                sql.SQL(
                    "CREATE TABLE {}.{} (row int4 PRIMARY KEY, item_id text NOT NULL, hash text NOT NULL, "
                    "embedding {}({}) NOT NULL)"
                ).format(sql.Identifier(SCHEMA), table, sql.SQL(storage), sql.Literal(int(vectors.shape[1])))
            )
            _copy_vectors(cur, sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), table), data, storage)
            if plan.kind == "hnsw":
                t0 = time.perf_counter()
                cur.execute(
                    sql.SQL(
                        "CREATE INDEX ON {}.{} USING hnsw (embedding {}) WITH (m = {}, ef_construction = {})"
                    ).format(
                        sql.Identifier(SCHEMA),
                        table,
                        sql.SQL(OPS[storage]),
                        sql.Literal(int(plan.params["connectivity"])),
                        sql.Literal(int(plan.params["expansion_add"])),
                    )
                )
                info.stats["index_seconds"] = round(time.perf_counter() - t0, 3)
            cur.execute(INDEX_BYTES, (f"{SCHEMA}.{self._table(revision)}",))
            info.stats["index_bytes"] = int(one_row(cur)[0])
            info.updated_at = now()
            record = info.to_dict()
            record.pop("active", None)
            cur.execute(
                f"SELECT revision FROM {SCHEMA}.versions WHERE collection_id = %s AND name = %s",
                (self.collection_id, info.name),
            )
            replaced = cur.fetchone()
            if replaced:
                self._retire(cur, replaced[0])
            cur.execute(
                f"INSERT INTO {SCHEMA}.versions VALUES (%s, %s, %s::jsonb, %s, %s) "
                "ON CONFLICT (collection_id, name) DO UPDATE SET info = EXCLUDED.info, "
                "revision = EXCLUDED.revision, encoder = EXCLUDED.encoder",
                (self.collection_id, info.name, json.dumps(record, default=str), revision, blob),
            )
            if self.get_setting("active_version") is None:
                self._put_setting(cur, "active_version", info.name)

    def _version_row(self, name: str) -> tuple[JSONObject, str]:
        row = self._read(
            f"SELECT info, revision FROM {SCHEMA}.versions WHERE collection_id = %s AND name = %s",
            self.collection_id,
            name,
        ).fetchone()
        if row is None:
            raise self.no_version(name)
        return row[0], row[1]

    def version_revision(self, name: str) -> str:
        return self._version_row(name)[1]

    def read_version(self, name: str) -> tuple[VersionData, Encoder, VectorIndex | None]:
        import psycopg

        conn = self._conn()
        revision = ""
        # one snapshot for the record, the encoder and the rows: a concurrent rewrite is either
        # entirely before or entirely after this read
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute(
                    f"SELECT info, revision, encoder FROM {SCHEMA}.versions "
                    "WHERE collection_id = %s AND name = %s",
                    (self.collection_id, name),
                ).fetchone()
                if row is None:
                    raise self.no_version(name)
                info, revision, blob = row
                ids, hashes = one_row(
                    conn.execute(
                        "SELECT coalesce(array_agg(item_id ORDER BY row), '{}'), "
                        "coalesce(array_agg(hash ORDER BY row), '{}') "
                        f'FROM {SCHEMA}."{self._table(revision)}"'
                    )
                )
        except psycopg.errors.UndefinedTable:
            if self.version_revision(name) == revision:  # not rewritten meanwhile: the table is gone
                problem = f"its vector table {SCHEMA}.{self._table(revision)} is missing"
                raise DamagedError(
                    f"version '{name}' of collection '{self.name}' is damaged ({problem}); "
                    f"run `embedscope check {self.name}` for how to repair it",
                    [problem],
                ) from None
            raise ConflictError(f"version '{name}' was rewritten while it was read; try again") from None
        encoder = encoder_from_bytes(blob)
        storage = storage_of(info["index"], info["sparse"])
        index = PgVectorIndex(info["index"]["kind"], **info["index"].get("params", {}))
        index.attach(self, self._table(revision), storage, size=len(ids), dim=int(info["dim"]))
        data = VersionData(
            list(ids),
            list(hashes),
            load=lambda: self._read_vectors(name, revision, storage, int(info["dim"])),
        )
        return data, encoder, index

    def _read_vectors(self, name: str, revision: str, storage: str, dim: int) -> np.ndarray | sp.csr_matrix:
        import psycopg

        table = f'{SCHEMA}."{self._table(revision)}"'
        try:
            if storage == "sparsevec":
                rows = self._conn().execute(f"SELECT embedding FROM {table} ORDER BY row").fetchall()
                return _sparse_rows([r[0] for r in rows], dim)
            with self._conn().cursor() as cur:
                with cur.copy(
                    f"COPY (SELECT embedding FROM {table} ORDER BY row) TO STDOUT (FORMAT BINARY)"
                ) as copy:
                    raw = b"".join(bytes(chunk) for chunk in copy)
        except psycopg.errors.UndefinedTable:
            raise ConflictError(f"version '{name}' was rewritten since it was opened; try again") from None
        return _parse_binary_copy(raw, storage, dim)

    def inspect_version(self, name: str) -> list[str]:
        """The version's table exists, holds one row per id of the record's dimension, and (for
        hnsw) has its index: checked in the database, without reading any vector."""
        info, revision = self._version_row(name)
        table = self._table(revision)
        if table not in self.vector_tables():
            return [f"the vector table {SCHEMA}.{table} of version '{name}' is missing: embed it again"]
        rows, dim = one_row(
            self._read(
                f'SELECT count(*), max(vector_dims(embedding)) FROM {SCHEMA}."{table}"'
                if not info["sparse"]
                else f'SELECT count(*), {int(info["dim"])} FROM {SCHEMA}."{table}"'
            )
        )
        problems = []
        if rows != info["count"]:
            problems.append(f"the table holds {rows} vectors, the record says {info['count']}")
        if rows and dim != info["dim"]:
            problems.append(f"the vectors have dimension {dim}, the record says {info['dim']}")
        indexed = one_row(
            self._read(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = %s::regclass AND a.amname = 'hnsw'",
                f'{SCHEMA}."{table}"',
            )
        )[0]
        if info["index"]["kind"] == "hnsw" and not indexed:
            problems.append("the HNSW index is missing")
        return problems

    def delete_version(self, name: str) -> None:
        with self.writing():
            self._delete_version(name)
            self._collect_garbage()

    def _delete_version(self, name: str) -> None:
        with self._write(lock=None) as cur:
            cur.execute(
                f"DELETE FROM {SCHEMA}.versions WHERE collection_id = %s AND name = %s RETURNING revision",
                (self.collection_id, name),
            )
            row = cur.fetchone()
            if row is None:
                raise self.no_version(name)
            self._retire(cur, row[0])
            if self.get_setting("active_version") == name:
                cur.execute(
                    f"SELECT name FROM {SCHEMA}.versions WHERE collection_id = %s ORDER BY name LIMIT 1",
                    (self.collection_id,),
                )
                rest = cur.fetchone()
                self._put_setting(cur, "active_version", rest[0] if rest else None)


def _copy_vectors(cur: psycopg.Cursor, table: sql.Composable, data: VersionData, storage: str) -> None:
    """COPY rows in binary (the fastest way into PostgreSQL), one pgvector value per row."""
    from pgvector import HalfVector, SparseVector, Vector
    from psycopg import sql

    vectors = data.vectors
    with cur.copy(
        sql.SQL("COPY {} (row, item_id, hash, embedding) FROM STDIN (FORMAT BINARY)").format(table)
    ) as copy:
        copy.set_types(["int4", "text", "text", storage])
        if storage == "sparsevec":
            csr = sp.csr_matrix(vectors)
            for n, (item_id, h) in enumerate(zip(data.ids, data.hashes, strict=True)):
                lo, hi = csr.indptr[n], csr.indptr[n + 1]
                if hi - lo > SPARSE_MAX_NNZ:
                    raise EmbedscopeError(
                        f"item '{item_id}' has {hi - lo} non-zero weights; pgvector's sparsevec holds at "
                        f"most {SPARSE_MAX_NNZ:,}: keep this version in the embedded store"
                    )
                row = SparseVector(
                    dict(zip(csr.indices[lo:hi].tolist(), csr.data[lo:hi].tolist(), strict=True)),
                    csr.shape[1],
                )
                copy.write_row((n, item_id, h, row))
            return
        wrap = HalfVector if storage == "halfvec" else Vector
        dense = np.asarray(vectors, dtype=np.float32)
        for n, (item_id, h) in enumerate(zip(data.ids, data.hashes, strict=True)):
            copy.write_row((n, item_id, h, wrap(dense[n])))


def _parse_binary_copy(raw: bytes, storage: str, dim: int) -> np.ndarray:
    """Dense vectors from a binary COPY of one vector column, decoded with NumPy in one pass.

    Hand-written because decoding a million rows one Python object at a time takes minutes and
    this takes a second: every row has the same size (2-byte field count, 4-byte length, 2-byte
    dim, 2 unused bytes, then `dim` big-endian floats), after a 19-byte header and before a
    2-byte trailer."""
    width = 2 if storage == "halfvec" else 4
    row_bytes = 2 + 4 + 4 + width * dim
    body = np.frombuffer(raw, dtype=np.uint8, offset=19, count=len(raw) - 21)
    if body.size % row_bytes:
        raise EmbedscopeError(f"unexpected binary COPY layout for {storage}({dim})")
    rows = body.reshape(-1, row_bytes)[:, 10:]
    return np.ascontiguousarray(rows).view(">f2" if width == 2 else ">f4").astype(np.float32)


# Any: psycopg types a fetched row's values as Any
def _sparse_rows(rows: list[Any], dim: int) -> sp.csr_matrix:
    indptr, indices, values = [0], [], []
    for vec in rows:
        indices.extend(vec.indices())
        values.extend(vec.values())
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.asarray(values, np.float32), np.asarray(indices, np.int32), np.asarray(indptr, np.int64)),
        shape=(len(rows), dim),
    )
