"""The storage contract. The embedded default (SQLite + files) and a server backend implement it;
search, recommendation and serving code only ever talk to this interface."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass
class Item:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """Content hash: what decides whether an item must be re-embedded."""
        payload = json.dumps([self.text, self.metadata], sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VersionInfo:
    """An embedding version: what encoded which data, when, and how it is indexed."""

    name: str
    encoder: dict[str, Any]  # {"name": ..., "params": {...}} - enough to rebuild it
    dim: int
    count: int
    fingerprint: str  # hash of the (id, content hash) pairs that were encoded
    index: dict[str, Any]  # {"kind": "hnsw"|"exact", "params": {...}}
    sparse: bool
    metric: str
    created_at: str
    updated_at: str
    active: bool = False
    stats: dict[str, Any] = field(default_factory=dict)  # encode time, items/s, bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VersionData:
    """A version's vectors, row-aligned with `ids` and `hashes`."""

    ids: list[str]
    hashes: list[str]
    vectors: np.ndarray | sp.csr_matrix


def fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for item_id, item_hash in sorted(pairs):
        h.update(f"{item_id}\t{item_hash}\n".encode())
    return h.hexdigest()[:16]


class Store(ABC):
    """Items with typed metadata, and embedding versions with their vectors. All writes atomic.

    What every backend guarantees when several processes (CLI commands, servers, notebooks) use one
    collection at once; `tests/test_concurrency.py` checks it with real processes:

    1. **Readers never see a half state.** An item write is one transaction; a version is switched
       to its new revision in one step, after every file of that revision is durable. A reader that
       loses a race with a writer (the revision it was reading was replaced and cleaned up) retries
       on the new revision; a missing file it cannot explain that way is reported as a damaged
       version (`Collection.check` says how to repair it), never as an empty result.
    2. **One version writer per collection.** `writing()` is the collection's writer lock, held by
       `write_version`, `delete_version`, garbage collection and, around the whole fit-encode-write,
       by `Collection.embed`. A second writer waits up to `write_wait` seconds, then gets
       `ConflictError` "collection ... is busy". The lock dies with its holder (a killed process
       never leaves a stale lock).
    3. **Work in progress is never collected.** Garbage (revisions no record points at, left by a
       crash) is removed only by a process holding the writer lock, so never while a writer that
       owns it is alive.
    4. **Item writes serialise** on the backend's own transaction lock (SQLite's write lock,
       PostgreSQL row locks); existence checks happen inside the transaction, so two ingests of the
       same new rows both succeed (the second finds them unchanged). A write that cannot get the
       lock in time is `ConflictError` "busy".
    5. **Opening and reading never write.** A full disk still answers `info`, `check` and searches;
       a write on it fails with `StorageFullError` ("no space left on device: ...") and leaves the
       previous state.
    """

    # --- collection-level settings -------------------------------------------------------------
    @abstractmethod
    def get_setting(self, key: str, default: Any = None) -> Any: ...

    @abstractmethod
    def set_setting(self, key: str, value: Any) -> None: ...

    # --- items -----------------------------------------------------------------------------------
    @abstractmethod
    def upsert_items(
        self, items: Sequence[Item], *, replace_all: bool = False, settings: dict[str, Any] | None = None
    ) -> dict[str, int]:
        """Insert or update items in one transaction; `replace_all` deletes items not given;
        `settings` are written in the same transaction. Returns counts: added, updated, unchanged,
        deleted."""

    @abstractmethod
    def delete_items(self, ids: Sequence[str]) -> int: ...

    @abstractmethod
    def get_items(self, ids: Sequence[str]) -> list[Item | None]: ...

    @abstractmethod
    def iter_items(self) -> Iterable[Item]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def item_hashes(self) -> dict[str, str]:
        """id -> content hash, in insertion order (what incremental embedding compares)."""

    @abstractmethod
    def data_revision(self) -> int:
        """Increases on every item write; lets readers cache derived data."""

    # --- embedding versions ----------------------------------------------------------------------
    @abstractmethod
    def list_versions(self) -> list[VersionInfo]: ...

    @abstractmethod
    def get_version(self, name: str) -> VersionInfo:
        """The version's record; NotFoundError naming the existing versions if absent."""

    @abstractmethod
    def writing(self) -> AbstractContextManager[None]:
        """The collection's writer lock (guarantee 2): re-entrant in one thread, `ConflictError`
        "busy" after `write_wait` seconds."""

    @abstractmethod
    def inspect_version(self, name: str) -> list[str]:
        """Cheap health check of a version's stored data, without loading the encoder: every file
        present, ids, hashes and vectors of one length, the record's count and dimension, the index
        of the same size. Returns the problems found, in words (empty when healthy)."""

    @abstractmethod
    def write_version(self, info: VersionInfo, data: VersionData, encoder: Any, index: Any | None) -> None:
        """Create or replace a version atomically: readers see the old one or the new one whole."""

    @abstractmethod
    def read_version(self, name: str) -> tuple[VersionData, Any, Any | None]:
        """(vectors, fitted encoder, loaded index or None).

        The index is whatever implements `embedscope.index.VectorIndex.search`: the embedded store
        returns a memory-mapped HNSW graph; a server backend (pgvector) would return an index object
        whose `search` runs the query in the database. Search code only calls `index.search`."""

    @abstractmethod
    def version_revision(self, name: str) -> str:
        """An id that changes whenever the version is rewritten (readers key caches on it)."""

    @abstractmethod
    def activate_version(self, name: str) -> None: ...

    @abstractmethod
    def delete_version(self, name: str) -> None: ...

    def close(self) -> None:
        """Release connections."""
        return None
