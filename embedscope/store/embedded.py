"""The embedded default store: SQLite for items, settings and version records; one folder of
files per version revision for vectors, the fitted encoder and the ANN index.

Why this shape (docs/design.md has the measurements): SQLite gives atomic, crash-safe item writes
with no server; vectors live in a plain .npy matrix that is memory-mapped, because a single BLAS
product over it is the fastest exact search on a CPU, and an HNSW graph file is memory-mapped
beside it. A version is replaced by writing a new revision folder, fsyncing it, and switching
the pointer in one SQLite transaction, so a crash at any point leaves the previous revision.

Several processes (the guarantees are listed in `Store`): the writer lock is an `flock` on
`.writer.lock` in the collection folder, through the `filelock` library. A lock rather than a lease:
the kernel releases it when its holder dies, even by `kill -9`, so there is no expiry to tune and no
stale owner to detect, and a writer that is merely slow (minutes of encoding) keeps it. Garbage
collection only runs while holding it (it skips when a writer is active), so it can never remove a
revision folder a live writer is still filling. Readers take no lock: revisions are immutable once
written, and a reader that finds its revision replaced and cleaned up simply reads the new one.

Opening writes nothing (no schema statement or journal-mode change on an existing collection), and
when the disk is so full that SQLite cannot even create its shared-memory index, the collection is
opened read-only from the committed database file, so `info`, `check` and searches still work.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import filelock
import numpy as np
import scipy.sparse as sp

from embedscope.clock import now
from embedscope.encoders.base import Encoder
from embedscope.encoders.registry import load_encoder
from embedscope.errors import ConflictError, DamagedError, EmbedscopeError, NotFoundError, StorageFullError
from embedscope.index import load_index
from embedscope.index.base import VectorIndex
from embedscope.index.quantized import QuantizedVectors
from embedscope.jsontypes import JSONObject, JSONValue
from embedscope.store.base import Item, ItemChanges, Store, VersionData, VersionInfo
from embedscope.validation import can_be_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    hash TEXT NOT NULL,
    source TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    revision TEXT NOT NULL
);
"""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb+") as fh:
                os.fsync(fh.fileno())
    for p in [path, *[d for d in path.rglob("*") if d.is_dir()]]:
        _fsync_dir(p)


_T = TypeVar("_T")
#: a dense version's vectors (float32, float16 or int8 codes) and, for int8, one scale per row
VECTORS_FILE, SCALES_FILE = "vectors.npy", "scales.npy"
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# SQLite's names for "cannot get space for the database, its journal or its shared-memory index"
_SQLITE_FULL = {"SQLITE_FULL", "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_WRITE", "SQLITE_READONLY"}


class EmbeddedStore(Store):
    DB = "collection.db"
    LOCK = ".writer.lock"

    def __init__(self, path: Path, *, create: bool = False, write_wait: float = 10.0) -> None:
        self.path = Path(path)
        #: seconds a writer waits for the collection's writer lock (or SQLite's) before "busy"
        self.write_wait = write_wait
        #: why the collection is open read-only (a full disk), or None
        self.read_only: str | None = None
        self._has_source = False  # whether the items table has its `source` column (checked on use)
        new = not (self.path / self.DB).exists()
        if new:
            if not create:
                raise NotFoundError(f"collection '{self.path.name}' does not exist at {self.path}")
            with self._storage_errors(f"creating collection '{self.path.name}'"):
                self.path.mkdir(parents=True, exist_ok=True)
        self._writer_lock = filelock.FileLock(self.path / self.LOCK, fallback_to_soft=False)
        #: read safety, in one place: a server's threads share this connection, and one thread's
        #: statement must not run while another's is half-read; every read takes it (`_rows`)
        self._read_lock = threading.RLock()
        self._conn = self._connect(new)
        self._collect_garbage()

    # --- plumbing ------------------------------------------------------------------------------
    def _connect(self, new: bool) -> sqlite3.Connection:
        db = self.path / self.DB
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=self.write_wait)
        try:  # every statement here only reads, unless the collection is new or its schema missing
            conn.execute("PRAGMA synchronous=FULL")  # per connection: writes nothing
            if new or not self._ready(conn):
                # Two processes creating one collection at once: switching to WAL takes an
                # exclusive lock that SQLite does not wait for (SQLITE_BUSY at once), so creation
                # runs under the writer lock and the second process finds it done.
                with self.writing(), self._storage_errors(f"creating collection '{self.path.name}'"):
                    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        conn.execute("PRAGMA journal_mode=WAL")
                    if not self._ready(conn):
                        conn.executescript(_SCHEMA)
            return conn
        except BaseException as exc:
            conn.close()
            wal = db.with_name(db.name + "-wal")
            full = isinstance(exc, sqlite3.OperationalError) and _sqlite_error(exc) in _SQLITE_FULL
            if new or not full or (wal.exists() and wal.stat().st_size):
                raise
        # The disk is full: SQLite cannot create its shared-memory WAL index, which even reading
        # needs. With no un-checkpointed WAL, the database file alone holds every committed
        # transaction, so it can be read as an immutable file.
        self.read_only = "the disk is full"
        return sqlite3.connect(f"{db.as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)

    @staticmethod
    def _ready(conn: sqlite3.Connection) -> bool:
        """Whether the database is in WAL mode with every table: created, not half-created."""
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            return False
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {"settings", "items", "versions"} <= tables

    @contextmanager
    def _storage_errors(self, what: str) -> Iterator[None]:
        """A full disk or a busy database as one-line errors, never a traceback."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            name = _sqlite_error(exc)
            if name.startswith("SQLITE_BUSY") or "locked" in str(exc):
                raise ConflictError(
                    f"collection '{self.path.name}' is busy (another process is writing it); retry"
                ) from None
            if name in _SQLITE_FULL or name.startswith("SQLITE_IOERR"):
                raise StorageFullError(self._full_message(what, str(exc))) from None
            raise
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise StorageFullError(f"read-only file system: {what} failed at {self.path}") from None
            if exc.errno in _DISK_FULL:
                raise StorageFullError(self._full_message(what, exc.strerror or str(exc))) from None
            raise

    def _full_message(self, what: str, why: str) -> str:
        if self.read_only:
            why = f"opened read-only because {self.read_only}"
        return f"no space left on device: {what} failed ({why}) at {self.path}; nothing was changed"

    @contextmanager
    def writing(self, wait: float | None = None) -> Iterator[None]:
        wait = self.write_wait if wait is None else wait
        try:
            self._writer_lock.acquire(timeout=wait)
        except filelock.Timeout:
            raise ConflictError(
                f"collection '{self.path.name}' is busy: another process is writing an embedding "
                f"version (waited {wait:g} s); retry when it is done"
            ) from None
        except OSError as exc:  # the lock file cannot be created: a full or read-only file system
            with self._storage_errors(f"locking collection '{self.path.name}' for writing"):
                raise exc from None
        try:
            yield
        finally:
            self._writer_lock.release()

    @contextmanager
    def _tx(self):  # noqa: ANN202
        # the read lock too: another thread's read on this connection never sees a half-made write
        with self._read_lock, self._storage_errors(f"writing to collection '{self.path.name}'"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    # Any: sqlite3 types fetched rows as Any
    def _rows(self, query: str, params: Sequence[object] = ()) -> list[Any]:
        """One read statement's rows, read whole under the read lock (the server's threads share
        the connection). Every read goes through here, so no caller above the store locks."""
        with self._read_lock:
            return self._conn.execute(query, params).fetchall()

    def _versions_dir(self) -> Path:
        return self.path / "versions"

    def _collect_garbage(self) -> None:
        """Remove revision folders no version points at (left by a crash mid-write).

        Only with the writer lock, taken without waiting: while another process holds it, its
        unfinished revision folder looks exactly like garbage, so the collection waits for a later
        open."""
        root = self._versions_dir()
        if not root.exists():
            return
        try:
            self._writer_lock.acquire(blocking=False)
        except (filelock.Timeout, OSError):  # a writer is active, or the lock file cannot be made
            return
        try:
            live = {r for (r,) in self._rows("SELECT revision FROM versions")}
            for d in root.iterdir():
                if d.name not in live:
                    shutil.rmtree(d, ignore_errors=True)
        finally:
            self._writer_lock.release()

    # --- settings -------------------------------------------------------------------------------
    def get_setting(self, key: str, default: JSONValue = None) -> JSONValue:
        rows = self._rows("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: JSONValue) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))

    def _bump_revision(self, c: sqlite3.Connection) -> None:
        rev = self.data_revision() + 1
        c.execute("INSERT OR REPLACE INTO settings VALUES ('data_revision', ?)", (json.dumps(rev),))

    def data_revision(self) -> int:
        return int(self.get_setting("data_revision", 0))

    # --- items -----------------------------------------------------------------------------------
    def upsert_items(
        self, items: Sequence[Item], *, replace_all: bool = False, settings: JSONObject | None = None
    ) -> dict[str, int]:
        with self._tx() as c:
            self._add_source_column(c)
            # read inside the write transaction: another process may have added the same ids since
            changes = ItemChanges.of(
                items, dict(c.execute("SELECT id, hash FROM items")), replace_all=replace_all
            )
            c.executemany(
                "INSERT INTO items (id, text, metadata, hash, source) VALUES (?,?,?,?,?)",
                [(item.id, item.text, meta, h, item.source_json()) for item, meta, h in changes.added],
            )
            c.executemany(
                "UPDATE items SET text=?, metadata=?, hash=?, source=? WHERE id=?",
                [(item.text, meta, h, item.source_json(), item.id) for item, meta, h in changes.updated],
            )
            c.executemany("DELETE FROM items WHERE id=?", [(i,) for i in changes.deleted])
            counts = changes.counts()
            if counts["added"] or counts["updated"] or counts["deleted"]:
                self._bump_revision(c)
            for key, value in (settings or {}).items():
                c.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))
        return counts

    def delete_items(self, ids: Sequence[str]) -> int:
        with self._tx() as c:
            n = sum(c.execute("DELETE FROM items WHERE id=?", (i,)).rowcount for i in ids if can_be_id(i))
            if n:
                self._bump_revision(c)
        return n

    def _source_column(self) -> str:
        """`source`, or NULL in a collection written before items kept their source fields (opening
        writes nothing: the column is added by the first item write, `_add_source_column`)."""
        if not self._has_source:
            columns = {row[1] for row in self._rows("PRAGMA table_info(items)")}
            self._has_source = "source" in columns
        return "source" if self._has_source else "NULL"

    def _add_source_column(self, c: sqlite3.Connection) -> None:
        if self._source_column() == "NULL":
            c.execute("ALTER TABLE items ADD COLUMN source TEXT")
            self._has_source = True

    def get_items(self, ids: Sequence[str]) -> list[Item | None]:
        found: dict[str, Item] = {}
        ids = list(ids)
        valid = [i for i in ids if can_be_id(i)]  # no item has another id; SQLite cannot bind surrogates
        source = self._source_column()
        for start in range(0, len(valid), 900):  # SQLite's bound-parameter limit
            chunk = valid[start : start + 900]
            q = f"SELECT id, text, metadata, {source} FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            for i, text, meta, src in self._rows(q, chunk):
                found[i] = Item(i, text, json.loads(meta), json.loads(src) if src else {})
        return [found.get(i) for i in ids]

    def iter_items(self) -> Iterable[Item]:
        q = f"SELECT id, text, metadata, {self._source_column()} FROM items ORDER BY seq"
        for i, text, meta, src in self._rows(q):
            yield Item(i, text, json.loads(meta), json.loads(src) if src else {})

    def iter_metadata(self) -> Iterable[tuple[str, JSONObject]]:
        for i, meta in self._rows("SELECT id, metadata FROM items ORDER BY seq"):
            yield i, json.loads(meta)

    def item_hashes(self) -> dict[str, str]:
        return dict(self._rows("SELECT id, hash FROM items ORDER BY seq"))

    def count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM items")[0][0])

    # --- versions --------------------------------------------------------------------------------
    def list_versions(self) -> list[VersionInfo]:
        active = self.get_setting("active_version")
        out = []
        for name, info in self._rows("SELECT name, info FROM versions ORDER BY name"):
            v = VersionInfo(**json.loads(info))
            v.active = name == active
            out.append(v)
        return out

    def write_version(
        self, info: VersionInfo, data: VersionData, encoder: Encoder, index: VectorIndex | None
    ) -> None:
        data.check_aligned(info.name)
        with self.writing():
            self._write_version(info, data, encoder, index)

    def _write_version(
        self, info: VersionInfo, data: VersionData, encoder: Encoder, index: VectorIndex | None
    ) -> None:
        revision = f"{info.name}-{uuid.uuid4().hex[:12]}"
        tmp = self._versions_dir() / revision
        what = f"writing version '{info.name}' of collection '{self.path.name}'"
        try:
            with self._storage_errors(what):
                self._write_files(tmp, data, encoder, index)
            info.updated_at = now()
            record = info.to_dict()
            record.pop("active", None)
            with self._tx() as c:
                row = c.execute("SELECT revision FROM versions WHERE name=?", (info.name,)).fetchone()
                c.execute(
                    "INSERT OR REPLACE INTO versions VALUES (?, ?, ?)",
                    (info.name, json.dumps(record, default=str), revision),
                )
                if self.get_setting("active_version") is None:
                    c.execute(
                        "INSERT OR REPLACE INTO settings VALUES ('active_version', ?)",
                        (json.dumps(info.name),),
                    )
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(exc, EmbedscopeError) and shutil.disk_usage(self.path).free < 1 << 20:
                # libraries that wrap ENOSPC in their own exception (an index writer's RuntimeError)
                raise StorageFullError(self._full_message(what, str(exc))) from exc
            raise
        if row:
            shutil.rmtree(self._versions_dir() / row[0], ignore_errors=True)

    @staticmethod
    def _write_files(tmp: Path, data: VersionData, encoder: Encoder, index: VectorIndex | None) -> None:
        tmp.mkdir(parents=True)
        if sp.issparse(data.vectors):
            sp.save_npz(tmp / "vectors.npz", sp.csr_matrix(data.vectors), compressed=False)
        else:
            save_dense(tmp, data.vectors)
        (tmp / "ids.json").write_text(json.dumps({"ids": data.ids, "hashes": data.hashes}))
        encoder.save(tmp / "encoder")
        if index is not None:
            index.save(tmp / "index")
        _fsync_tree(tmp)

    def _record(self, name: str) -> tuple[VersionInfo, Path]:
        """The version's record and its revision folder, read in one statement (so they agree)."""
        rows = self._rows("SELECT info, revision FROM versions WHERE name=?", (name,))
        if not rows:
            self.get_version(name)  # raises a helpful NotFoundError
        return VersionInfo(**json.loads(rows[0][0])), self._versions_dir() / rows[0][1]

    def _revision_dir(self, name: str) -> Path:
        return self._record(name)[1]

    def version_revision(self, name: str) -> str:
        return self._revision_dir(name).name

    def read_version(self, name: str) -> tuple[VersionData, Encoder, VectorIndex | None]:
        return self._read_consistent(name, _load_revision)

    def _read_consistent(self, name: str, read: Callable[[Path, VersionInfo], _T]) -> _T:
        """`read(revision folder, its record)`, retried while writers replace the revision under it
        (guarantee 1: a replaced revision is deleted once no record points at it).

        Damage that no writer explains (a file gone or unreadable while the record still points at
        it) is an error that says how to find out more and repair."""
        info, d = self._record(name)
        for _ in range(5):
            try:
                return read(d, info)
            except Exception as exc:
                info, again = self._record(name)
                if again != d:
                    d = again  # replaced and cleaned up while we read: read the new revision
                    continue
                if isinstance(exc, EmbedscopeError) and not isinstance(exc, StorageFullError):
                    raise
                problem = (
                    f"file {Path(exc.filename).name} is missing"
                    if isinstance(exc, FileNotFoundError) and exc.filename
                    else f"{exc.__class__.__name__}: {exc}"
                )
                raise DamagedError(
                    f"version '{name}' of collection '{self.path.name}' is damaged ({problem}); "
                    f"run `embedscope check {self.path.name}` for how to repair it",
                    [problem],
                ) from exc
        raise ConflictError(f"collection '{self.path.name}' is busy: version '{name}' keeps changing; retry")

    def inspect_version(self, name: str) -> list[str]:
        def inspect(d: Path, info: VersionInfo) -> list[str]:
            problems = _inspect_revision(d, info)
            if problems and self._record(name)[1] != d:
                # a writer replaced the revision while its files were looked at (a file seen gone
                # was being cleaned up): no damage, read the new revision (`_read_consistent`)
                raise FileNotFoundError(errno.ENOENT, "revision replaced while inspected", str(d))
            return problems

        try:
            return self._read_consistent(name, inspect)
        except DamagedError as exc:
            return exc.problems
        except EmbedscopeError as exc:
            return [str(exc)]

    def delete_version(self, name: str) -> None:
        with self.writing():
            d = self._revision_dir(name)
            with self._tx() as c:
                c.execute("DELETE FROM versions WHERE name=?", (name,))
                if self.get_setting("active_version") == name:
                    rest = [r for (r,) in c.execute("SELECT name FROM versions ORDER BY name")]
                    c.execute(
                        "INSERT OR REPLACE INTO settings VALUES ('active_version', ?)",
                        (json.dumps(rest[0] if rest else None),),
                    )
            shutil.rmtree(d, ignore_errors=True)


def save_dense(folder: Path, vectors: np.ndarray | QuantizedVectors) -> None:
    """A version's dense vectors as the version keeps them (index parameter `vectors`):
    `vectors.npy` in float32, float16 or int8 (its header says which), and for int8 the per-row
    scales in `scales.npy`. Plain .npy files, so every reader memory-maps them."""
    if isinstance(vectors, QuantizedVectors):
        np.save(folder / VECTORS_FILE, np.ascontiguousarray(vectors.codes))
        if vectors.scales is not None:
            np.save(folder / SCALES_FILE, np.ascontiguousarray(vectors.scales, dtype=np.float32))
    else:
        np.save(folder / VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))


def load_dense(folder: Path) -> np.ndarray | QuantizedVectors:
    """What `save_dense` wrote, memory-mapped: the float32 matrix, or its f16/i8 codes (read as
    float32 row by row)."""
    vectors = np.load(folder / VECTORS_FILE, mmap_mode="r")
    if vectors.dtype == np.float32:
        return vectors
    if vectors.dtype == np.int8:
        return QuantizedVectors(vectors, np.load(folder / SCALES_FILE, mmap_mode="r"))
    return QuantizedVectors(vectors)


def _sqlite_error(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _load_revision(d: Path, info: VersionInfo) -> tuple[VersionData, Encoder, VectorIndex | None]:

    if not d.is_dir():
        raise FileNotFoundError(errno.ENOENT, "revision folder missing", str(d))
    if info.sparse:
        vectors: np.ndarray | sp.csr_matrix | QuantizedVectors = sp.load_npz(d / "vectors.npz").tocsr()
    else:
        vectors = load_dense(d)
    meta = json.loads((d / "ids.json").read_text())
    encoder = load_encoder(d / "encoder")
    index = load_index(d / "index") if (d / "index").exists() else None
    return VersionData(meta["ids"], meta["hashes"], vectors), encoder, index


def _inspect_revision(d: Path, info: VersionInfo) -> list[str]:
    """What `inspect_version` checks, from file headers only (memory-mapped, no encoder loaded)."""
    if not d.is_dir():
        raise FileNotFoundError(errno.ENOENT, "revision folder missing", str(d))
    problems = []
    if info.sparse:
        with np.load(d / "vectors.npz") as z:
            shape = tuple(int(x) for x in z["shape"])
    else:
        shape = load_dense(d).shape  # file headers only: memory-mapped
    meta = json.loads((d / "ids.json").read_text())
    n_ids, n_hashes = len(meta["ids"]), len(meta["hashes"])
    if not (n_ids == n_hashes == shape[0] == info.count):
        problems.append(
            f"counts disagree: {n_ids} ids, {n_hashes} hashes, {shape[0]} vectors, record says {info.count}"
        )
    if len(shape) != 2 or shape[1] != info.dim:
        problems.append(f"vectors have shape {shape}, the record says dimension {info.dim}")
    if not (d / "encoder" / "encoder.json").exists():
        problems.append("the fitted encoder (encoder/encoder.json) is missing")
    if info.index.get("kind") not in (None, "exact"):
        index_meta = d / "index" / "index.json"
        if not index_meta.exists():
            problems.append(f"the {info.index['kind']} index is missing")
        else:
            idx = json.loads(index_meta.read_text())
            if (idx.get("size"), idx.get("dim")) != (shape[0], shape[1] if len(shape) == 2 else None):
                problems.append(
                    f"the index holds {idx.get('size')} vectors of dimension {idx.get('dim')}, "
                    f"the version {shape[0]} of dimension {shape[1] if len(shape) == 2 else '?'}"
                )
            if not any(p.name != "index.json" for p in (d / "index").iterdir()):
                problems.append(f"the {info.index['kind']} index file is missing")
    return problems
