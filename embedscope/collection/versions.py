"""Reading embedding versions: loaded once (vectors, fitted encoder, index), kept until rewritten.

A version is loaded with its revision checked before and after the read, so a reader never pairs
one revision's record with another's files while a writer replaces it (docs/design.md, "Several
processes at once").
"""

from __future__ import annotations

import threading
from collections.abc import Collection as Collection_

import numpy as np

from embedscope.collection import checks
from embedscope.errors import ConflictError, DamagedError, NotFoundError
from embedscope.index import create_index
from embedscope.index.quantized import QuantizedVectors
from embedscope.search.versions import LoadedVersion, damaged_error
from embedscope.store.base import Store


def activate(store: Store, collection: str, name: str, recipes: Collection_[str]) -> None:
    """`Collection.activate`: a version becomes the active version (and the default search), a
    recipe the default search."""
    names = [v.name for v in store.list_versions()]
    if name in names:
        store.activate_version(name)
        store.set_setting("default_search", None)
    elif name in recipes:
        store.set_setting("default_search", name)
    else:
        raise NotFoundError(
            f"collection '{collection}' has no version or recipe '{name}' "
            f"(versions: {', '.join(names) or 'none'}; recipes: {', '.join(recipes) or 'none'})"
        )


def active_version(store: Store, collection: str) -> str:
    """`Collection.active_version`: the version searches, more-like-this and recommendations use."""
    name = store.get_setting("active_version")
    if not name:
        raise NotFoundError(
            f"collection '{collection}' has no embeddings yet; run `embedscope embed {collection}`"
        )
    return name


class VersionCache:
    """The loaded versions of one collection, each kept until its revision changes."""

    def __init__(self, store: Store, collection: str, document_hashes: checks.DocumentHashes) -> None:
        self.store = store
        self.collection = collection
        self.document_hashes = document_hashes
        self._versions: dict[str, tuple[str, LoadedVersion]] = {}
        #: one load at a time: many threads finding a version rewritten load it once, not each
        self._loading = threading.RLock()

    def load(self, name: str) -> LoadedVersion:
        """The version's vectors, fitted encoder and index, cached until the version changes.

        A version that fails the checks a load can afford (`checks.load_problems`: sizes that
        disagree, rows holding another item's content, an index that does not find the vectors) is
        refused with DamagedError naming the repair, rather than answering searches wrongly."""
        with self._loading:
            return self._load(name)

    def _load(self, name: str) -> LoadedVersion:
        for _ in range(5):
            revision = self.store.version_revision(name)
            cached = self._versions.get(name)
            if cached and cached[0] == revision:
                return cached[1]
            info = self.store.get_version(name)
            try:
                data, enc, idx = self.store.read_version(name)
            except DamagedError as exc:
                raise damaged_error(self.collection, info, exc.problems) from None
            if self.store.version_revision(name) == revision:
                break  # record and files are of one revision (a writer may have replaced it meanwhile)
        else:
            raise ConflictError(
                f"collection '{self.collection}' is busy: version '{name}' keeps changing; retry"
            )
        if idx is None:
            idx = create_index("exact").build(data.vectors)
        elif hasattr(idx, "attach_vectors"):
            vectors = data.vectors  # f16/i8 codes stay codes: the index reads the rows it scores
            idx.attach_vectors(vectors if isinstance(vectors, QuantizedVectors) else np.asarray(vectors))
        loaded = LoadedVersion(info, data, enc, idx, {i: r for r, i in enumerate(data.ids)}, revision)
        problems = checks.load_problems(self.store, loaded, self.document_hashes)
        if problems:
            raise damaged_error(self.collection, info, problems)
        self._versions[name] = (revision, loaded)
        return loaded

    def forget(self, name: str) -> None:
        """Drop the cached copy (the version was rewritten or deleted by this process)."""
        self._versions.pop(name, None)

    def delete(self, name: str) -> bool:
        """Delete version `name` and return whether it was the active one. The store then makes the
        first remaining version active; when that is a sparse one and a dense one is left, the
        newest dense one becomes active instead: more-like-this, recommendations and maps want
        real neighbours, and the dense-only commands (drift, ann-recall) a version to use."""
        was_active = self.store.get_setting("active_version") == name
        self.store.delete_version(name)
        self.forget(name)
        if was_active:
            rest = self.store.list_versions()
            active = next((v for v in rest if v.name == self.store.get_setting("active_version")), None)
            dense = sorted((v for v in rest if not v.sparse), key=lambda v: v.updated_at)
            if active is not None and active.sparse and dense:
                self.store.activate_version(dense[-1].name)
        return was_active
