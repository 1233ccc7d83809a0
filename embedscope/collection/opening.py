"""Where collections live and how their stores are created, opened and, after a failed first
write, removed again. `Collection.create/open/create_from/list` are these plus the facade."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from embedscope.collection.items import write_items
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.index.base import INDEX_KINDS
from embedscope.jsontypes import JSONObject
from embedscope.names import check_name
from embedscope.sources import Source, load_items
from embedscope.store import locate
from embedscope.store.base import Store


def default_root() -> Path:
    """Where collections live: $EMBEDSCOPE_HOME, else ~/.embedscope."""
    return Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")


def collection_path(name: str, root: str | Path | None) -> Path:
    """The folder of the collection `name` (a valid name) under `root` (default: `default_root`)."""
    return Path(root or default_root()) / check_name(name)


def create_store(name: str, root: str | Path | None, *, exist_ok: bool, url: str | None) -> Store:
    """The store of a new collection (or of an existing one, with `exist_ok`); `url`: see
    `Collection.create`."""
    path = collection_path(name, root)
    if locate.exists(path) and not exist_ok:
        raise EmbedscopeError(f"collection '{name}' already exists at {path}")
    return locate.open_store(path, create=True, url=url)


def new_store(path: Path, url: str | None) -> Store:
    """The store of a collection created at `path`; what was begun is removed if that fails
    (e.g. no space for the database)."""
    try:
        return locate.open_store(path, create=True, url=url)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def open_store(name: str, root: str | Path | None) -> Store:
    try:
        return locate.open_store(collection_path(name, root))
    except NotFoundError:
        known = ", ".join(list_collections(root)) or "none"
        raise NotFoundError(f"collection '{name}' does not exist (collections: {known})") from None


def list_collections(root: str | Path | None) -> list[str]:
    return locate.list_collections(Path(root or default_root()))


def discard_if_empty(store: Store) -> None:
    """Remove a collection that holds nothing (a creation whose first write failed)."""
    if store.count() == 0 and not store.list_versions():
        path = store.path
        store.destroy()
        store.close()
        shutil.rmtree(path, ignore_errors=True)


def check_index_kind(kind: str) -> str:

    if kind not in INDEX_KINDS:
        raise EmbedscopeError(f"unknown index '{kind}'; valid: {', '.join(INDEX_KINDS)}")
    return kind


def ingest_new(
    path: Path, url: str | None, source: Source, default_index: str | None, ingest_args: JSONObject
) -> tuple[Store, dict[str, int]]:
    """`Collection.create_from` for a collection that does not exist yet: the input is read and
    validated before the store is created, and a store whose first write fails anyway (a full disk)
    is removed again, so a failed ingest never leaves an empty collection behind."""
    args = dict(ingest_args)
    replace = args.pop("replace", False)
    kind = None if default_index is None else check_index_kind(default_index)  # before reading
    items, spec = load_items(source, **args)
    store = new_store(path, url)
    try:
        if kind is not None:
            store.set_setting("default_index", kind)
        counts = write_items(store, items, spec, replace=replace)
    except BaseException:
        discard_if_empty(store)
        raise
    return store, counts
