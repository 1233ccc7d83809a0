"""The PostgreSQL store's plumbing: one connection per thread, transactions, the writer lock and
the collection's settings. `PgVersions` (versions.py) and `PostgresStore` (store.py) build on it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError, StorageFullError
from embedscope.jsontypes import JSONValue
from embedscope.store.base import Store
from embedscope.store.postgres.schema import (
    SCHEMA,
    SCHEMA_LOCK,
    SCHEMA_SQL,
    WRITE_WAIT_SECONDS,
    connect,
    lock_key,
    one_row,
    redact,
)

if TYPE_CHECKING:
    import psycopg

    from embedscope.store.postgres.schema import Query


class PgConnection(Store):
    """A collection's connection to its database: the parts of `PostgresStore` that every other
    part uses (see the package docstring for the guarantees)."""

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
        elif not one_row(conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.collections",)))[0]:
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

    def _read(self, query: Query, *params: object) -> psycopg.Cursor:
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
            row = one_row(conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
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
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(SCHEMA_SQL)

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
        conn, key = self._conn(), lock_key(self.name, "versions")
        deadline = time.monotonic() + (self.write_wait if wait is None else wait)
        while not one_row(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)))[0]:
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
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.name, lock),))
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

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # --- settings -------------------------------------------------------------------------------
    def get_setting(self, key: str, default: JSONValue = None) -> JSONValue:
        row = self._read(
            f"SELECT value FROM {SCHEMA}.settings WHERE collection_id = %s AND key = %s",
            self.collection_id,
            key,
        ).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: JSONValue) -> None:
        with self._write() as cur:
            self._put_setting(cur, key, value)

    def _put_setting(self, cur: psycopg.Cursor, key: str, value: JSONValue) -> None:
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
