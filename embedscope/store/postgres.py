"""The PostgreSQL + pgvector store: the same contract as the embedded store, kept in a database
the user already runs, and searched there.

Why this shape (docs/design.md has the measurements):
- Items, settings and version records live in four shared tables of the schema `embedscope`,
  keyed by collection, with metadata as JSONB, so `--where` filters run in SQL over it.
- Each version revision gets its own vector table (`vector`, `halfvec` or `sparsevec` column)
  with pgvector's HNSW index. A version is written in ONE transaction: create the table, copy
  the rows in, build the index, point the version record at it. A writer killed at any point
  leaves nothing: the database rolls it back, and readers saw the old revision all along.
- The fitted encoder state (a vocabulary, weights) is stored as bytes beside the version, so
  the collection needs nothing but the database.
- Search runs in the database (`ORDER BY embedding <#> $1 LIMIT k`) with `hnsw.ef_search` set
  per query, and pgvector 0.8's iterative index scans for filtered queries, so a query process
  never loads the vectors; `VersionData.vectors` is read only when asked (exact search, more-
  like-this of an item, incremental embedding).
- Scores are inner products, as in the embedded indexes: the encoders that want cosine already
  L2-normalise, and pgvector recommends inner product for normalised vectors (fastest).
- Concurrency, the guarantees of `Store`: a version writer holds the collection's writer lock, a
  session-level advisory lock (it spans the many transactions of an embed and dies with its
  connection, so a killed process leaves no stale lock); item writes serialise on a transaction-
  scoped advisory lock; a writer that waits longer than `write_wait` gets ConflictError("... is
  busy"); readers take no locks and see the last committed state (MVCC).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp

from embedscope.errors import ConflictError, DamagedError, EmbedscopeError, NotFoundError, StorageFullError
from embedscope.index.base import VectorIndex
from embedscope.store.base import Item, ItemChanges, Store, VersionData, VersionInfo
from embedscope.validation import can_be_id, count_param

if TYPE_CHECKING:
    import psycopg
    from psycopg.abc import Query

SCHEMA = "embedscope"
_SCHEMA_SQL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.collections (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL,
    data_revision bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.settings (
    collection_id int NOT NULL REFERENCES {SCHEMA}.collections ON DELETE CASCADE,
    key text NOT NULL,
    value jsonb NOT NULL,
    PRIMARY KEY (collection_id, key)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.items (
    collection_id int NOT NULL REFERENCES {SCHEMA}.collections ON DELETE CASCADE,
    id text NOT NULL,
    seq bigserial NOT NULL,
    text text NOT NULL,
    metadata jsonb NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (collection_id, id)
);
CREATE INDEX IF NOT EXISTS items_in_order ON {SCHEMA}.items (collection_id, seq);
CREATE TABLE IF NOT EXISTS {SCHEMA}.versions (
    collection_id int NOT NULL REFERENCES {SCHEMA}.collections ON DELETE CASCADE,
    name text NOT NULL,
    info jsonb NOT NULL,
    revision text UNIQUE NOT NULL,
    encoder bytea NOT NULL,
    PRIMARY KEY (collection_id, name)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.retired (
    collection_id int NOT NULL,
    table_name text PRIMARY KEY,
    retired_at timestamptz NOT NULL DEFAULT now()
);
"""
_SCHEMA_LOCK = 0x656D6273  # advisory lock key while creating the schema ("embs")
#: how long a writer waits for another writer of the same collection before ConflictError
WRITE_WAIT_SECONDS = 10.0
#: how long a replaced revision's table outlives its replacement: a reader that loaded the version
#: just before the switch still finishes its search (as a memory-mapped embedded revision does)
RETIRED_SECONDS = 120.0
#: pgvector limits: HNSW indexes at most 2,000 `vector` / 4,000 `halfvec` dimensions; a
#: `sparsevec` holds at most 16,000 non-zero values (HNSW: 1,000)
_HNSW_MAX_DIM = {"vector": 2000, "halfvec": 4000}
_SPARSE_MAX_NNZ = 16000
#: bytes of a version table's indexes (its HNSW graph), the primary key left out
_INDEX_BYTES = (
    "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index "
    "WHERE indrelid = %s::regclass AND NOT indisprimary"
)
_EF_SEARCH_MAX = 1000
_OPS = {"vector": "vector_ip_ops", "halfvec": "halfvec_ip_ops", "sparsevec": "sparsevec_ip_ops"}


def redact(url: str) -> str:
    """The URL without its password (what may be shown or written to disk)."""
    from urllib.parse import quote, urlencode

    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as nothing rather than leaked
        return "postgresql://?"
    parts.pop("password", None)
    user = f"{quote(parts.pop('user'), safe='')}@" if parts.get("user") else ""
    host = parts.pop("host", "")
    port = f":{parts.pop('port')}" if parts.get("port") else ""
    dbname = quote(parts.pop("dbname", ""), safe="")
    query = f"?{urlencode(sorted(parts.items()), quote_via=quote)}" if parts else ""
    return f"postgresql://{user}{host}{port}/{dbname}{query}"


def _lock_key(name: str, what: str) -> int:
    """A stable signed 64-bit advisory-lock key per collection and lock ("versions", "items")."""
    digest = hashlib.sha1(f"embedscope/{name}/{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


#: the column type for each `dtype` index parameter (pgvector has no 8-bit vector type)
_DTYPES = {"f32": "vector", "f16": "halfvec"}


def _storage(info_index: dict[str, Any], sparse: bool) -> str:
    return "sparsevec" if sparse else _DTYPES[str(info_index.get("params", {}).get("dtype", "f32"))]


class PostgresStore(Store):
    """One collection in a PostgreSQL database with pgvector. `path` is the local folder of the
    collection's pointer file (and of files other modules keep beside a collection)."""

    def __init__(
        self, url: str, name: str, path: Path, *, create: bool = False, write_wait: float | None = None
    ) -> None:
        self.url, self.name, self.path = url, name, Path(path)
        #: seconds a writer waits for another writer of this collection before ConflictError "busy"
        self.write_wait = WRITE_WAIT_SECONDS if write_wait is None else write_wait
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._connections_lock = threading.Lock()
        self._fields: tuple[int, list[str]] | None = None
        conn = self._conn()
        missing = NotFoundError(f"collection '{name}' does not exist in {self.location}")
        if create:
            self._ensure_schema(conn)
            with self._write(lock=None) as cur:
                cur.execute(
                    f"INSERT INTO {SCHEMA}.collections (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                    (name,),
                )
        elif not conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.collections",)).fetchone()[0]:
            raise missing  # opening never writes, not even the schema
        row = conn.execute(f"SELECT id FROM {SCHEMA}.collections WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise missing
        self.collection_id = int(row[0])

    # --- plumbing ------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return redact(self.url)

    def _conn(self) -> psycopg.Connection:
        """This thread's connection (psycopg connections must not run two transactions at once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            from pgvector.psycopg import register_vector

            conn = connect(self.url)
            self._require_vector(conn)
            register_vector(conn)
            # a statement of a client that died (kill -9) stops within a second instead of running
            # on, e.g. an index build holding the collection's writer lock
            conn.execute("SELECT set_config('client_connection_check_interval', '1000', false)")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _read(self, query: Query, *params: Any) -> psycopg.Cursor:
        """One read statement on this thread's connection (autocommit: its own snapshot)."""
        return self._conn().execute(query, params)

    def _require_vector(self, conn: psycopg.Connection) -> None:
        import psycopg

        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if row is None:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error:
                raise EmbedscopeError(
                    f"the database {self.location} lacks the pgvector extension and this user may not "
                    "create it: as an administrator run `CREATE EXTENSION vector;` in that database"
                ) from None
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        version = tuple(int(p) for p in str(row[0]).split(".")[:2])
        if version < (0, 7):
            raise EmbedscopeError(
                f"pgvector {row[0]} in {self.location} is too old: embedscope needs 0.7 or later "
                "(halfvec, sparsevec; 0.8 for iterative index scans): ALTER EXTENSION vector UPDATE"
            )

    def _ensure_schema(self, conn: psycopg.Connection) -> None:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.retired",)).fetchone()
        if exists and exists[0]:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_SCHEMA_SQL)

    def _busy(self) -> ConflictError:
        return ConflictError(
            f"collection '{self.name}' is busy: another process is writing it; try again when it is done"
        )

    @contextmanager
    def writing(self, wait: float | None = None) -> Iterator[None]:
        """The collection's version-writer lock: a session-level advisory lock on this thread's
        connection, so it spans many transactions, is re-entrant (PostgreSQL counts a session's
        holds) and is released by the server when the connection dies. Waits `wait` seconds
        (default `write_wait`), then ConflictError "busy"."""
        conn, key = self._conn(), _lock_key(self.name, "versions")
        deadline = time.monotonic() + (self.write_wait if wait is None else wait)
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise self._busy()
            time.sleep(0.05)
        try:
            yield
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    @contextmanager
    def _write(self, *, lock: str | None = "items") -> Iterator[psycopg.Cursor]:
        """One transaction; with `lock`, holding that transaction-scoped advisory lock of this
        collection (items: so an upsert's diff is against what it replaces), waiting `write_wait`."""
        import psycopg

        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                if lock:
                    cur.execute(
                        "SELECT set_config('lock_timeout', %s, true)", (f"{int(self.write_wait * 1000)}",)
                    )
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.name, lock),))
                    cur.execute("SELECT set_config('lock_timeout', '0', true)")
                yield cur
        except psycopg.errors.LockNotAvailable:
            raise self._busy() from None
        except (psycopg.errors.DataError, psycopg.errors.UntranslatableCharacter) as exc:
            raise EmbedscopeError(f"PostgreSQL cannot store this input: {str(exc).splitlines()[0]}") from None
        except (psycopg.errors.DiskFull, psycopg.errors.ReadOnlySqlTransaction) as exc:
            raise StorageFullError(
                f"{self.location} refused the write ({str(exc).splitlines()[0]}); nothing stored changed"
            ) from None

    def destroy(self) -> None:
        with self.writing(), self._write() as cur:
            cur.execute(f"DELETE FROM {SCHEMA}.collections WHERE id = %s", (self.collection_id,))
        for table in self.vector_tables():
            self._drop_table(table)

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

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

    # --- settings -------------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self._read(
            f"SELECT value FROM {SCHEMA}.settings WHERE collection_id = %s AND key = %s",
            self.collection_id,
            key,
        ).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self._write() as cur:
            self._put_setting(cur, key, value)

    def _put_setting(self, cur: psycopg.Cursor, key: str, value: Any) -> None:
        cur.execute(
            f"INSERT INTO {SCHEMA}.settings VALUES (%s, %s, %s::jsonb) "
            "ON CONFLICT (collection_id, key) DO UPDATE SET value = EXCLUDED.value",
            (self.collection_id, key, json.dumps(value, default=str)),
        )

    def data_revision(self) -> int:
        row = self._read(
            f"SELECT data_revision FROM {SCHEMA}.collections WHERE id = %s", self.collection_id
        ).fetchone()
        return int(row[0]) if row else 0

    def _bump_revision(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            f"UPDATE {SCHEMA}.collections SET data_revision = data_revision + 1 WHERE id = %s",
            (self.collection_id,),
        )

    # --- items -----------------------------------------------------------------------------------
    def upsert_items(
        self, items: Sequence[Item], *, replace_all: bool = False, settings: dict[str, Any] | None = None
    ) -> dict[str, int]:
        cid = self.collection_id
        with self._write() as cur:
            # read under the items lock, so the diff is against what this transaction replaces
            existing = dict(
                cur.execute(f"SELECT id, hash FROM {SCHEMA}.items WHERE collection_id = %s", (cid,))
            )
            changes = ItemChanges.of(items, existing, replace_all=replace_all)
            if changes.added:
                with cur.copy(
                    f"COPY {SCHEMA}.items (collection_id, id, text, metadata, hash) FROM STDIN"
                ) as copy:
                    for item, meta, h in changes.added:
                        copy.write_row((cid, item.id, item.text, meta, h))
            if changes.updated:
                cur.executemany(
                    f"UPDATE {SCHEMA}.items SET text = %s, metadata = %s::jsonb, hash = %s "
                    "WHERE collection_id = %s AND id = %s",
                    [(item.text, meta, h, cid, item.id) for item, meta, h in changes.updated],
                )
            if changes.deleted:
                cur.execute(
                    f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)",
                    (cid, changes.deleted),
                )
            counts = changes.counts()
            if counts["added"] or counts["updated"] or counts["deleted"]:
                self._bump_revision(cur)
            for key, value in (settings or {}).items():
                self._put_setting(cur, key, value)
        return counts

    def delete_items(self, ids: Sequence[str]) -> int:
        with self._write() as cur:
            cur.execute(
                f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)",
                (self.collection_id, [i for i in ids if can_be_id(i)]),
            )
            n = cur.rowcount
            if n:
                self._bump_revision(cur)
        return n

    def get_items(self, ids: Sequence[str]) -> list[Item | None]:
        ids = list(ids)
        rows = self._read(
            f"SELECT id, text, metadata FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)",
            self.collection_id,
            [i for i in ids if can_be_id(i)],  # no item has any other id; a NUL would be an error
        )
        found = {i: Item(i, text, meta) for i, text, meta in rows}
        return [found.get(i) for i in ids]

    def iter_items(self) -> Iterable[Item]:
        rows = self._read(
            f"SELECT id, text, metadata FROM {SCHEMA}.items WHERE collection_id = %s ORDER BY seq",
            self.collection_id,
        )
        for i, text, meta in rows:
            yield Item(i, text, meta)

    def item_hashes(self) -> dict[str, str]:
        rows = self._read(
            f"SELECT id, hash FROM {SCHEMA}.items WHERE collection_id = %s ORDER BY seq",
            self.collection_id,
        )
        return dict(rows)

    def count(self) -> int:
        row = self._read(
            f"SELECT count(*) FROM {SCHEMA}.items WHERE collection_id = %s", self.collection_id
        ).fetchone()
        return int(row[0]) if row else 0

    def metadata_fields(self) -> list[str]:
        """The metadata keys of the items (what a filter may name), cached per data revision."""
        rev = self.data_revision()
        if self._fields is None or self._fields[0] != rev:
            rows = self._read(
                f"SELECT DISTINCT jsonb_object_keys(metadata) FROM {SCHEMA}.items WHERE collection_id = %s",
                self.collection_id,
            )
            self._fields = (rev, sorted(r[0] for r in rows))
        return self._fields[1]

    def filter_ids(self, where: str) -> list[str]:
        """Ids of the items that match a `--where` filter, decided in SQL."""
        from embedscope.filters import filter_sql

        clause, params = filter_sql(where, "metadata", self.metadata_fields())
        rows = self._read(
            f"SELECT id FROM {SCHEMA}.items WHERE collection_id = %s AND {clause} ORDER BY seq",
            self.collection_id,
            *params,
        )
        return [r[0] for r in rows]

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

    def new_index(self, kind: str, params: dict[str, Any]) -> VectorIndex:
        return PgVectorIndex(kind, **params)

    def write_version(self, info: VersionInfo, data: VersionData, encoder: Any, index: Any | None) -> None:
        from psycopg import sql

        data.check_aligned(info.name)
        vectors = data.vectors
        plan = PgVectorIndex(info.index["kind"], **info.index.get("params", {}))
        plan.build(vectors)  # validates the dimension and sparsity against pgvector's limits
        storage = _storage(info.index, sp.issparse(vectors))
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
        table: Any,
        data: VersionData,
        storage: str,
        plan: Any,
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
                        sql.SQL(_OPS[storage]),
                        sql.Literal(int(plan.params["connectivity"])),
                        sql.Literal(int(plan.params["expansion_add"])),
                    )
                )
                info.stats["index_seconds"] = round(time.perf_counter() - t0, 3)
            cur.execute(_INDEX_BYTES, (f"{SCHEMA}.{self._table(revision)}",))
            info.stats["index_bytes"] = int(cur.fetchone()[0])
            info.updated_at = _now()
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

    def _version_row(self, name: str) -> tuple[dict[str, Any], str]:
        row = self._read(
            f"SELECT info, revision FROM {SCHEMA}.versions WHERE collection_id = %s AND name = %s",
            self.collection_id,
            name,
        ).fetchone()
        if row is None:
            self.get_version(name)  # raises a helpful NotFoundError
        return row[0], row[1]

    def version_revision(self, name: str) -> str:
        return self._version_row(name)[1]

    def read_version(self, name: str) -> tuple[VersionData, Any, Any | None]:
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
                    self.get_version(name)
                info, revision, blob = row
                ids, hashes = conn.execute(
                    "SELECT coalesce(array_agg(item_id ORDER BY row), '{}'), "
                    "coalesce(array_agg(hash ORDER BY row), '{}') "
                    f'FROM {SCHEMA}."{self._table(revision)}"'
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            if self.version_revision(name) == revision:  # not rewritten meanwhile: the table is gone
                problem = f"its vector table {SCHEMA}.{self._table(revision)} is missing"
                raise DamagedError(
                    f"version '{name}' of collection '{self.name}' is damaged ({problem}); "
                    f"run `embedscope check {self.name}` for how to repair it",
                    [problem],
                ) from None
            raise ConflictError(f"version '{name}' was rewritten while it was read; try again") from None
        from embedscope.encoders.base import Encoder

        encoder = Encoder.from_bytes(blob)
        storage = _storage(info["index"], info["sparse"])
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
        rows, dim = self._read(
            f'SELECT count(*), max(vector_dims(embedding)) FROM {SCHEMA}."{table}"'
            if not info["sparse"]
            else f'SELECT count(*), {int(info["dim"])} FROM {SCHEMA}."{table}"'
        ).fetchone()
        problems = []
        if rows != info["count"]:
            problems.append(f"the table holds {rows} vectors, the record says {info['count']}")
        if rows and dim != info["dim"]:
            problems.append(f"the vectors have dimension {dim}, the record says {info['dim']}")
        indexed = self._read(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = %s::regclass AND a.amname = 'hnsw'",
            f'{SCHEMA}."{table}"',
        ).fetchone()[0]
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
                self.get_version(name)
            self._retire(cur, row[0])
            if self.get_setting("active_version") == name:
                cur.execute(
                    f"SELECT name FROM {SCHEMA}.versions WHERE collection_id = %s ORDER BY name LIMIT 1",
                    (self.collection_id,),
                )
                rest = cur.fetchone()
                self._put_setting(cur, "active_version", rest[0] if rest else None)


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection, or a one-line error naming the server (without its password)."""
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1].strip()
        raise EmbedscopeError(f"cannot connect to PostgreSQL at {redact(url)}: {reason}") from None


def list_collections(url: str) -> list[str]:
    """Names of the collections in the database (none if embedscope never wrote there)."""
    with connect(url) as conn:
        if not conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.collections",)).fetchone()[0]:
            return []
        return [r[0] for r in conn.execute(f"SELECT name FROM {SCHEMA}.collections ORDER BY name")]


def _now() -> str:
    from embedscope.store.embedded import now

    return now()


def _copy_vectors(cur: psycopg.Cursor, table: Any, data: VersionData, storage: str) -> None:
    """COPY rows in binary (the fastest way into PostgreSQL), one pgvector value per row."""
    from pgvector import HalfVector, SparseVector, Vector
    from psycopg import sql

    vectors = data.vectors
    with cur.copy(
        sql.SQL("COPY {} (row, item_id, hash, embedding) FROM STDIN (FORMAT BINARY)").format(table)
    ) as copy:
        copy.set_types(["int4", "text", "text", storage])
        if storage == "sparsevec":
            csr = vectors.tocsr()
            for n, (item_id, h) in enumerate(zip(data.ids, data.hashes, strict=True)):
                lo, hi = csr.indptr[n], csr.indptr[n + 1]
                if hi - lo > _SPARSE_MAX_NNZ:
                    raise EmbedscopeError(
                        f"item '{item_id}' has {hi - lo} non-zero weights; pgvector's sparsevec holds at "
                        f"most {_SPARSE_MAX_NNZ:,}: keep this version in the embedded store"
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

    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "hnsw": {"connectivity": 16, "expansion_add": 128, "expansion_search": 64, "dtype": "f32"},
        "exact": {"dtype": "f32"},
    }

    def __init__(self, kind: str = "hnsw", **params: Any) -> None:
        if kind not in self.defaults:
            raise EmbedscopeError(f"unknown index '{kind}' for the PostgreSQL store; valid: hnsw, exact")
        unknown = sorted(set(params) - set(self.defaults[kind]))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults[kind].items())
            raise EmbedscopeError(
                f"pgvector {kind} index has no parameter {', '.join(unknown)}; valid: {valid}"
            )
        super().__init__(**{**self.defaults[kind], **params})
        for key in ("connectivity", "expansion_add", "expansion_search"):
            if key in self.params:
                count_param(self.params[key], f"pgvector {kind} {key}")
        if self.params["dtype"] not in _DTYPES:
            raise EmbedscopeError(
                f"dtype {self.params['dtype']!r}: pgvector stores f32 (vector) or f16 (halfvec); "
                "8-bit storage needs the embedded store"
            )
        self.kind = kind  # type: ignore[misc]  # one class serves both kinds
        self._store: PostgresStore | None = None
        self._table = ""
        self._storage = _DTYPES[self.params["dtype"]]

    def build(self, vectors: np.ndarray | sp.csr_matrix) -> PgVectorIndex:
        """Check the vectors fit pgvector; the index itself is built by the store, in the database."""
        self.size, self.dim = vectors.shape
        if sp.issparse(vectors):
            if self.kind == "hnsw":
                raise EmbedscopeError("sparse vectors: use --index exact")
            return self
        limit = _HNSW_MAX_DIM[self._storage]
        if self.kind == "hnsw" and self.dim > limit:
            raise EmbedscopeError(
                f"pgvector's HNSW indexes at most {limit:,} dimensions of {self._storage}; this version "
                f"has {self.dim:,}: use dtype=f16 (halfvec, up to 4,000) or --index exact"
            )
        return self

    def attach(self, store: PostgresStore, table: str, storage: str, *, size: int, dim: int) -> None:
        self._store, self._table, self._storage = store, table, storage
        self.size, self.dim = size, dim

    def _query_value(self, row: Any) -> Any:
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
        join = sql.SQL("")
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
        ef = min(int(expansion_search or self.params.get("expansion_search", 40)), _EF_SEARCH_MAX)
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
                        (str(max(ef, min(k, _EF_SEARCH_MAX))), "relaxed_order" if iterate else "off"),
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
        row = self._store._read(_INDEX_BYTES, f'{SCHEMA}."{self._table}"').fetchone()
        return int(row[0]) if row else 0
