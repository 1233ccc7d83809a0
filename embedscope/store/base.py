"""The storage contract. The embedded default (SQLite + files, store/embedded.py) and PostgreSQL +
pgvector (store/postgres/) implement it; search, recommendation and serving code only ever talk
to this interface. tests/test_store_api.py runs the same tests against both."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.base import Encoder
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.index import create_index
from embedscope.jsontypes import JSONObject, JSONValue
from embedscope.validation import check_items

if TYPE_CHECKING:
    from embedscope.index import VectorIndex


def content_hash(text: str, metadata: JSONObject, source: JSONObject | None = None) -> str:
    """The hash of an item's whole content (what an upsert compares to decide what to write).
    Without `source` it is the hash items had before they kept one, and the row hash of versions
    written before row hashes became document hashes (collection/embedding.py)."""
    parts: list[object] = [text, metadata, source] if source else [text, metadata]
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()


@dataclass
class Item:
    """An item: its id, its text, its metadata (the filterable fields) and `source`: the fields the
    text is built from that are not metadata (a template's `description`), kept apart so the text
    can be rebuilt when one of them changes, without becoming filter fields."""

    id: str
    text: str
    metadata: JSONObject = field(default_factory=dict)
    source: JSONObject = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """Content hash: what decides whether an upsert changes the stored item (whether its
        vectors must be re-encoded is decided by the hash of its document, `encoders.document`)."""
        return content_hash(self.text, self.metadata, self.source)

    @property
    def fields(self) -> JSONObject:
        """Every field the item keeps (its text's source fields and its metadata): what a version's
        document template may read (`encoders.document`)."""
        return {**self.source, **self.metadata}

    def source_json(self) -> str | None:
        """`source` as stored (None when empty)."""
        return json.dumps(self.source, default=str, allow_nan=False) if self.source else None

    def to_dict(self) -> JSONObject:
        return asdict(self)


@dataclass
class VersionInfo:
    """An embedding version: what encoded which data, when, and how it is indexed."""

    name: str
    encoder: JSONObject  # {"name": ..., "params": {...}} - enough to rebuild it
    dim: int
    count: int
    fingerprint: str  # hash of the (id, row hash) pairs that were encoded (row hash: encoders/document.py)
    index: JSONObject  # {"kind": "hnsw"|"exact", "params": {...}}
    sparse: bool
    metric: str
    created_at: str
    updated_at: str
    active: bool = False
    stats: JSONObject = field(default_factory=dict)  # encode time, items/s, bytes
    #: the document template each item was encoded as (embedscope.encoders.document); None = the
    #: item's text as ingested. Versions written before documents existed have None.
    document: str | None = None

    def to_dict(self) -> JSONObject:
        return asdict(self)


class VersionData:
    """A version's vectors, row-aligned with `ids` and `hashes` (each row's hash: the hash of the
    exact document text its encoder saw, `embedscope.encoders.document.document_hash`; versions
    written before documents existed hold the item's content hash without source fields).

    A store may pass `load` instead of `vectors` to read them on first use: the PostgreSQL store
    searches in the database, so most processes never need a version's vectors in memory."""

    def __init__(
        self,
        ids: list[str],
        hashes: list[str],
        vectors: np.ndarray | sp.csr_matrix | None = None,
        *,
        load: Callable[[], np.ndarray | sp.csr_matrix] | None = None,
    ) -> None:
        if vectors is None and load is None:
            raise ValueError("VersionData needs vectors or a function that loads them")
        self.ids, self.hashes = ids, hashes
        self._vectors, self._load = vectors, load

    @property
    def vectors(self) -> np.ndarray | sp.csr_matrix:
        if self._vectors is None:
            assert self._load is not None
            self._vectors = self._load()
        return self._vectors

    def loaded_shape(self) -> tuple[int, ...] | None:
        """The vectors' shape if they are in memory (or memory-mapped), without reading them."""
        return None if self._vectors is None else tuple(self._vectors.shape)

    def check_aligned(self, version: str) -> None:
        """One vector and one hash per id, before any store writes them."""
        if len(self.ids) != self.vectors.shape[0] or len(self.hashes) != len(self.ids):
            raise EmbedscopeError(
                f"version '{version}': {self.vectors.shape[0]} vectors for {len(self.ids)} ids"
            )


@dataclass
class ItemChanges:
    """What an upsert changes, decided against the stored content hashes: new and changed items
    as (item, metadata JSON, hash), the count left as they are, and the ids to delete."""

    added: list[tuple[Item, str, str]]
    updated: list[tuple[Item, str, str]]
    unchanged: int
    deleted: list[str]

    @classmethod
    def of(cls, items: Sequence[Item], existing: dict[str, str], *, replace_all: bool) -> ItemChanges:
        """Both stores decide their writes here, so both refuse the same items (validation.py)."""
        check_items(items)
        added: list[tuple[Item, str, str]] = []
        updated: list[tuple[Item, str, str]] = []
        unchanged = 0
        for item in items:
            h = item.hash
            old = existing.get(item.id)
            if old == h:
                unchanged += 1
                continue
            meta = json.dumps(item.metadata, default=str, allow_nan=False)
            (added if old is None else updated).append((item, meta, h))
        deleted = sorted(set(existing) - {i.id for i in items}) if replace_all else []
        return cls(added, updated, unchanged, deleted)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": self.unchanged,
            "deleted": len(self.deleted),
        }


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
    4. **Item writes serialise** on the backend's own transaction lock (SQLite's write lock; in
       PostgreSQL a transaction-scoped advisory lock of the collection); existence checks happen
       inside the transaction, so two ingests of the same new rows both succeed (the second finds
       them unchanged). A write that cannot get the lock in time is `ConflictError` "busy".
    5. **Opening and reading never write.** A full disk still answers `info`, `check` and searches;
       a write on it fails with `StorageFullError` ("no space left on device: ...") and leaves the
       previous state.
    """

    #: the local folder of the collection (its data for the embedded store, a pointer for others)
    path: Path

    @property
    def location(self) -> str:
        """Where the data lives, for people: a folder, or a database URL without its password."""
        return str(self.path)

    # --- collection-level settings -------------------------------------------------------------
    @abstractmethod
    def get_setting(self, key: str, default: JSONValue = None) -> JSONValue: ...

    @abstractmethod
    def set_setting(self, key: str, value: JSONValue) -> None: ...

    # --- items -----------------------------------------------------------------------------------
    @abstractmethod
    def upsert_items(
        self, items: Sequence[Item], *, replace_all: bool = False, settings: JSONObject | None = None
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

    def iter_metadata(self) -> Iterable[tuple[str, JSONObject]]:
        """(id, metadata) of every item, in insertion order: what filters and display read, without
        the texts and source fields (a store overrides it to read only those columns)."""
        for item in self.iter_items():
            yield item.id, item.metadata

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

    def get_version(self, name: str) -> VersionInfo:
        """The version's record; NotFoundError naming the existing versions if absent."""
        versions = self.list_versions()
        for v in versions:
            if v.name == name:
                return v
        raise self.no_version(name, versions)

    def no_version(self, name: str, versions: list[VersionInfo] | None = None) -> NotFoundError:
        """The NotFoundError for a version that is not there, naming the ones that are."""
        have = self.list_versions() if versions is None else versions
        names = ", ".join(v.name for v in have if v.name != name) or "none yet: run `embedscope embed`"
        return NotFoundError(
            f"collection '{self.path.name}' has no embedding version '{name}'; versions: {names}"
        )

    def new_index(self, kind: str, params: JSONObject) -> VectorIndex:
        """The (unbuilt) index a new version gets. A server backend returns its own kind, which
        its `write_version` builds in the database."""

        return create_index(kind, **params)

    @abstractmethod
    def writing(self, wait: float | None = None) -> AbstractContextManager[None]:
        """The collection's writer lock (guarantee 2): re-entrant in one thread, `ConflictError`
        "busy" after `wait` seconds (default `write_wait`; 0: at once, as the server's embedding
        jobs ask, so that a busy collection is a 409 rather than a job that fails later)."""

    @abstractmethod
    def inspect_version(self, name: str) -> list[str]:
        """Cheap health check of a version's stored data, without loading the encoder: every file
        present, ids, hashes and vectors of one length, the record's count and dimension, the index
        of the same size. Returns the problems found, in words (empty when healthy)."""

    @abstractmethod
    def write_version(
        self, info: VersionInfo, data: VersionData, encoder: Encoder, index: VectorIndex | None
    ) -> None:
        """Create or replace a version atomically: readers see the old one or the new one whole."""

    @abstractmethod
    def read_version(self, name: str) -> tuple[VersionData, Encoder, VectorIndex | None]:
        """(vectors, fitted encoder, loaded index or None).

        The index is whatever implements `embedscope.index.VectorIndex.search`: the embedded store
        returns a memory-mapped HNSW graph; the PostgreSQL store returns an index object whose
        `search` runs the query in the database. Search code only calls `index.search`."""

    @abstractmethod
    def version_revision(self, name: str) -> str:
        """An id that changes whenever the version is rewritten (readers key caches on it)."""

    def activate_version(self, name: str) -> None:
        self.get_version(name)  # NotFoundError names the versions there are
        self.set_setting("active_version", name)

    @abstractmethod
    def delete_version(self, name: str) -> None: ...

    def close(self) -> None:
        """Release connections."""
        return None

    def destroy(self) -> None:
        """Remove what this store keeps outside the collection's folder (the caller removes the
        folder): used when a new collection's first write failed."""
        return None
