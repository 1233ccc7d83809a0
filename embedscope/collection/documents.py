"""What an encoder sees of each item, and the hashes that say when a stored vector still holds.

The rule, one for every store and every encoder (embedding.py is the one place that writes a
version, through whichever store):

- **A version's row hash is the hash of the exact document text its encoder saw** (`text_hash`).
  Today the document is the item's text; a per-version document template joins `document` and
  `encoder_setup` here, and nowhere else.
- **A vector is reused** by a version whose encoder setup (`encoder_setup`: the encoder's name and
  every parameter, precision included, and the document template: everything that changes a
  vector) equals that of the version holding it, for a row whose hash equals the document's hash
  now. So a re-ingest that changes only metadata re-encodes nothing, and a new version that differs
  only in its index (`--index exact`, `--index-param dtype=i8`) copies every vector.

Versions written before this rule hold each row's item content hash (text and metadata); a row
matches when that hash equals the item's (`matches`), so such a version is reused until its item's
metadata change, and its next `embed` rewrites it with text hashes (0 encoded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from embedscope.store.base import Item, content_hash, fingerprint, text_hash


def document(item: Item) -> str:
    """The text the encoder sees for `item`."""
    return item.text


def documents(items: Sequence[Item]) -> list[str]:
    return [document(i) for i in items]


def encoder_setup(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a vector: two versions with equal setups make equal vectors from equal documents.
    `config` is the encoder's {"name", "params"} (a version's `VersionInfo.encoder`)."""
    return {"encoder": config}


def row_hashes(items: Sequence[Item]) -> list[str]:
    """The row hash each item gets in a version written now."""
    return [text_hash(d) for d in documents(items)]


class Rows:
    """The current items' hashes, to tell whether a stored row (id, row hash) still holds: its
    document unchanged since it was encoded. The content hashes older versions hold are computed
    only when a row's text hash does not match (they cost a JSON dump per item)."""

    def __init__(self, items: Iterable[Item], item_hashes: Mapping[str, str] | None = None) -> None:
        self._items = list(items)
        self.ids = [i.id for i in self._items]
        self.document = dict(zip(self.ids, row_hashes(self._items), strict=True))
        self._item_hashes = item_hashes
        self._content: dict[str, tuple[str, str]] | None = None
        self._fingerprints: tuple[str, str] | None = None

    @property
    def content(self) -> dict[str, tuple[str, str]]:
        """id -> the item's content hash with and without its source fields (older versions' rows)."""
        if self._content is None:
            self._content = {}
            for i in self._items:
                plain = content_hash(i.text, i.metadata)
                self._content[i.id] = (i.hash if i.source else plain, plain)
        return self._content

    def matches(self, item_id: str, row_hash: str) -> bool:
        """Whether the row of `item_id` hashed `row_hash` holds the item's document as it is now."""
        return self.document.get(item_id) == row_hash or row_hash in self.content.get(item_id, ())

    def is_current(self, version_fingerprint: str) -> bool:
        """Whether a version with this fingerprint has exactly the current items' documents: its
        fingerprint is over the text hashes, or over the item hashes the store holds (behavioural
        versions, whose rows come from interactions, and versions older than text hashes; such a
        version whose items gained source fields since looks stale until its next `embed`, which
        reuses every row)."""
        if self._fingerprints is None:
            hashes = (
                self._item_hashes if self._item_hashes is not None else {i.id: i.hash for i in self._items}
            )
            self._fingerprints = (fingerprint(self.document.items()), fingerprint(hashes.items()))
        return version_fingerprint in self._fingerprints

    def changes(self, ids: Sequence[str], hashes: Sequence[str]) -> dict[str, list[str]]:
        """Items added, changed and deleted since a version with these rows was written."""
        then = dict(zip(ids, hashes, strict=True))
        return {
            "added": [i for i in self.ids if i not in then],
            "changed": [i for i in self.ids if i in then and not self.matches(i, then[i])],
            "deleted": [i for i in then if i not in self.document],
        }
