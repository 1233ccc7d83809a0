"""The embedded default store: SQLite for items, settings and version records; one folder of
files per version revision for vectors, the fitted encoder and the ANN index.

Why this shape (docs/design.md has the measurements): SQLite gives atomic, crash-safe item writes
with no server; vectors live in a plain .npy matrix that is memory-mapped, because a single BLAS
product over it is the fastest exact search on a CPU, and an HNSW graph file is memory-mapped
beside it. A version is replaced by writing a new revision folder, fsyncing it, and switching
the pointer in one SQLite transaction, so a crash at any point leaves the previous revision.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.store.base import Item, Store, VersionData, VersionInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    revision TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


class EmbeddedStore(Store):
    DB = "collection.db"

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not (self.path / self.DB).exists():
            if not create:
                raise NotFoundError(f"collection '{self.path.name}' does not exist at {self.path}")
            self.path.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path / self.DB, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._collect_garbage()

    # --- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _tx(self):  # noqa: ANN202
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def _versions_dir(self) -> Path:
        return self.path / "versions"

    def _collect_garbage(self) -> None:
        """Remove revision folders no version points at (left by a crash mid-write)."""
        live = {r for (r,) in self._conn.execute("SELECT revision FROM versions")}
        root = self._versions_dir()
        if root.exists():
            for d in root.iterdir():
                if d.name not in live:
                    shutil.rmtree(d, ignore_errors=True)

    # --- settings -------------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))

    def _bump_revision(self, c: sqlite3.Connection) -> None:
        rev = self.data_revision() + 1
        c.execute("INSERT OR REPLACE INTO settings VALUES ('data_revision', ?)", (json.dumps(rev),))

    def data_revision(self) -> int:
        return int(self.get_setting("data_revision", 0))

    # --- items -----------------------------------------------------------------------------------
    def upsert_items(self, items: Sequence[Item], *, replace_all: bool = False) -> dict[str, int]:
        existing = dict(self._conn.execute("SELECT id, hash FROM items"))
        counts = {"added": 0, "updated": 0, "unchanged": 0, "deleted": 0}
        with self._tx() as c:
            for item in items:
                h = item.hash
                old = existing.get(item.id)
                if old == h:
                    counts["unchanged"] += 1
                    continue
                meta = json.dumps(item.metadata, default=str, allow_nan=False)
                if old is None:
                    c.execute(
                        "INSERT INTO items (id, text, metadata, hash) VALUES (?,?,?,?)",
                        (item.id, item.text, meta, h),
                    )
                    counts["added"] += 1
                else:
                    c.execute(
                        "UPDATE items SET text=?, metadata=?, hash=? WHERE id=?",
                        (item.text, meta, h, item.id),
                    )
                    counts["updated"] += 1
            if replace_all:
                gone = set(existing) - {i.id for i in items}
                c.executemany("DELETE FROM items WHERE id=?", [(i,) for i in gone])
                counts["deleted"] = len(gone)
            if counts["added"] or counts["updated"] or counts["deleted"]:
                self._bump_revision(c)
        return counts

    def delete_items(self, ids: Sequence[str]) -> int:
        with self._tx() as c:
            n = sum(c.execute("DELETE FROM items WHERE id=?", (i,)).rowcount for i in ids)
            if n:
                self._bump_revision(c)
        return n

    def get_items(self, ids: Sequence[str]) -> list[Item | None]:
        found: dict[str, Item] = {}
        ids = list(ids)
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 900]
            q = f"SELECT id, text, metadata FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            for i, text, meta in self._conn.execute(q, chunk):
                found[i] = Item(i, text, json.loads(meta))
        return [found.get(i) for i in ids]

    def iter_items(self) -> Iterable[Item]:
        for i, text, meta in self._conn.execute("SELECT id, text, metadata FROM items ORDER BY seq"):
            yield Item(i, text, json.loads(meta))

    def item_hashes(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT id, hash FROM items ORDER BY seq"))

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    # --- versions --------------------------------------------------------------------------------
    def list_versions(self) -> list[VersionInfo]:
        active = self.get_setting("active_version")
        out = []
        for name, info in self._conn.execute("SELECT name, info FROM versions ORDER BY name"):
            v = VersionInfo(**json.loads(info))
            v.active = name == active
            out.append(v)
        return out

    def write_version(self, info: VersionInfo, data: VersionData, encoder: Any, index: Any | None) -> None:
        if len(data.ids) != data.vectors.shape[0] or len(data.hashes) != len(data.ids):
            raise EmbedscopeError(
                f"version '{info.name}': {data.vectors.shape[0]} vectors for {len(data.ids)} ids"
            )
        revision = f"{info.name}-{uuid.uuid4().hex[:12]}"
        tmp = self._versions_dir() / revision
        tmp.mkdir(parents=True)
        try:
            if sp.issparse(data.vectors):
                sp.save_npz(tmp / "vectors.npz", data.vectors.tocsr(), compressed=False)
            else:
                np.save(tmp / "vectors.npy", np.ascontiguousarray(data.vectors, dtype=np.float32))
            (tmp / "ids.json").write_text(json.dumps({"ids": data.ids, "hashes": data.hashes}))
            encoder.save(tmp / "encoder")
            if index is not None:
                index.save(tmp / "index")
            _fsync_tree(tmp)
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
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if row:
            shutil.rmtree(self._versions_dir() / row[0], ignore_errors=True)

    def _revision_dir(self, name: str) -> Path:
        row = self._conn.execute("SELECT revision FROM versions WHERE name=?", (name,)).fetchone()
        if row is None:
            self.get_version(name)  # raises a helpful NotFoundError
        return self._versions_dir() / row[0]

    def version_revision(self, name: str) -> str:
        return self._revision_dir(name).name

    def read_version(self, name: str) -> tuple[VersionData, Any, Any | None]:
        from embedscope.encoders.base import Encoder
        from embedscope.index import load_index

        d = self._revision_dir(name)
        if (d / "vectors.npz").exists():
            vectors: np.ndarray | sp.csr_matrix = sp.load_npz(d / "vectors.npz").tocsr()
        else:
            vectors = np.load(d / "vectors.npy", mmap_mode="r")
        meta = json.loads((d / "ids.json").read_text())
        encoder = Encoder.load(d / "encoder")
        index = load_index(d / "index") if (d / "index" / "index.json").exists() else None
        return VersionData(meta["ids"], meta["hashes"], vectors), encoder, index

    def activate_version(self, name: str) -> None:
        self.get_version(name)
        self.set_setting("active_version", name)

    def delete_version(self, name: str) -> None:
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
