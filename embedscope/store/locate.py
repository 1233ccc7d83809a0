"""Where a collection lives: the embedded store in $EMBEDSCOPE_HOME/NAME, or a PostgreSQL database.

A collection is created in PostgreSQL when a URL is given (`--store postgresql://...`) or
EMBEDSCOPE_STORE holds one. Its folder $EMBEDSCOPE_HOME/NAME then holds a small pointer file,
`store.json`, with the URL (never its password: give that by PGPASSWORD or ~/.pgpass), so
`Collection.open(NAME)` and every CLI command find it again without the variable. With
EMBEDSCOPE_STORE set, collections in that database are found even without a pointer file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.store.base import Store
from embedscope.store.embedded import EmbeddedStore

POINTER = "store.json"
ENV = "EMBEDSCOPE_STORE"
_SCHEMES = ("postgresql://", "postgres://")


def env_url() -> str | None:
    url = os.environ.get(ENV, "").strip()
    return check_url(url) if url else None


def check_url(url: str) -> str:
    if not url.startswith(_SCHEMES):
        raise EmbedscopeError(
            f"store {url!r} is not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DATABASE "
            "(or leave it out for the embedded store)"
        )
    return url


def _pointer(path: Path) -> str | None:
    file = path / POINTER
    return str(json.loads(file.read_text())["url"]) if file.exists() else None


def open_store(path: Path, *, create: bool = False, url: str | None = None) -> Store:
    """The store of the collection at `path` (folder name = collection name). Existing collections
    open where they are; a new one (create=True) goes to `url`, else $EMBEDSCOPE_STORE, else the
    embedded store."""
    name = path.name
    if url:
        check_url(url)
    if (path / EmbeddedStore.DB).exists():
        if url:
            raise EmbedscopeError(
                f"collection '{name}' already exists in the embedded store at {path}; "
                "choose another name for the PostgreSQL one"
            )
        return EmbeddedStore(path)
    pointed = _pointer(path)
    if pointed is not None:
        from embedscope.store.postgres import PostgresStore, redact

        if url and redact(url) != redact(pointed):
            raise EmbedscopeError(
                f"collection '{name}' already lives in {redact(pointed)}, not {redact(url)}"
            )
        return PostgresStore(url or pointed, name, path)
    target = url or env_url()
    if target is None:
        if not create:
            raise NotFoundError(f"collection '{name}' does not exist at {path}")
        return EmbeddedStore(path, create=True)
    from embedscope.store.postgres import PostgresStore, redact

    if not create:
        return PostgresStore(target, name, path)  # NotFoundError if the database lacks it
    store = PostgresStore(target, name, path, create=True)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{POINTER}.{os.getpid()}.tmp"  # two processes may create the collection at once
    tmp.write_text(json.dumps({"backend": "postgresql", "url": redact(target)}) + "\n")
    tmp.replace(path / POINTER)
    return store


def exists(path: Path) -> bool:
    return (path / EmbeddedStore.DB).exists() or (path / POINTER).exists()


def list_collections(root: Path) -> list[str]:
    """Collections with a folder under `root`, plus those in $EMBEDSCOPE_STORE's database."""
    names = {p.name for p in root.iterdir() if exists(p)} if root.exists() else set()
    url = env_url()
    if url:
        from embedscope.store.postgres import list_collections as in_database

        names.update(in_database(url))
    return sorted(names)
