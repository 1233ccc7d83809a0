"""`StoredState`: the few raw facts of a collection's store that the layers above it need (settings,
revisions for their caches, item hashes, version records, the folder beside the data, the writer
lock), so the CLI, server, evaluate, recommend and experiments reach them through `Collection` and
never through `collection.store` (tests/test_layering.py holds that line).

A mixin of `Collection`, kept apart so the facade's own jobs (ingest, embed, search, describe) stay
readable in one class of at most 400 lines; every method is a one-line delegation to the store.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from embedscope.collection.opening import default_root
from embedscope.jsontypes import JSONValue
from embedscope.names import check_name
from embedscope.store.base import Store, VersionInfo


class StoredState:
    name: str
    store: Store

    @property
    def path(self) -> Path:
        """The collection's folder: the embedded store's files, or the PostgreSQL store's side files."""
        return Path(getattr(self.store, "path", None) or default_root() / self.name)

    def folder(self, name: str) -> Path:
        """A folder for files derived from this collection (experiment logs, projection caches),
        beside its stored data so they move and are deleted with it; created on first use."""
        path = self.path / check_name(name, "folder")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def setting(self, key: str, default: JSONValue = None) -> JSONValue:
        """A JSON value stored with the collection (None/`default` when unset)."""
        return self.store.get_setting(key, default)

    def set_setting(self, key: str, value: JSONValue) -> None:
        self.store.set_setting(key, value)

    def item_hashes(self) -> dict[str, str]:
        """Item id -> its content hash (text and metadata), in insertion order; reads no texts."""
        return self.store.item_hashes()

    def version_info(self, name: str) -> VersionInfo:
        """A version's record (NotFoundError naming the versions there are)."""
        return self.store.get_version(name)

    def data_revision(self) -> int:
        """A number that changes whenever items are written: the key of caches derived from items."""
        return self.store.data_revision()

    def version_revision(self, name: str) -> str:
        """Changes whenever the version is rewritten: the key of caches derived from its vectors."""
        return self.store.version_revision(name)

    def writing(self, wait: float | None = None) -> AbstractContextManager[None]:
        """The collection's writer lock (re-entrant); `wait=0`: ConflictError at once when held."""
        return self.store.writing(wait)
