"""A collection's items: writing what an ingest read, and what is derived from them, cached per
data revision (the metadata frame, the display fields and work keys, each version's row mask for a
filter).

Search asks for the derived views on every query (through `Collection`, the `CollectionReader` of
search/versions.py), so each is computed once per data revision, not per query.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from embedscope import field_types
from embedscope.display import DisplayFields
from embedscope.encoders.document import Document, document_hash
from embedscope.errors import EmbedscopeError
from embedscope.filters import evaluate_filter
from embedscope.jsontypes import JSONMapping, JSONObject
from embedscope.search.rerank import WorkKey, work_key
from embedscope.search.versions import LoadedVersion
from embedscope.sources import IngestSpec
from embedscope.store.base import Item, Store


class ItemViews:
    """The derived views of one store's items (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._frame: tuple[int, pd.DataFrame, dict[str, int]] | None = None
        self._display: tuple[int, DisplayFields, dict[str, WorkKey | None]] | None = None
        #: (data revision, document template) -> item id -> document hash
        self._doc_hashes: dict[tuple[int, str | None], dict[str, str]] = {}

    def metadata_frame(self) -> tuple[pd.DataFrame, dict[str, int]]:
        """Metadata of all items as a frame (index = item id), cached per data revision."""
        rev = self.store.data_revision()
        if self._frame is None or self._frame[0] != rev:
            rows = list(self.store.iter_metadata())  # no texts or source fields: filters need neither
            frame = pd.DataFrame.from_records([m for _, m in rows], index=[i for i, _ in rows])
            self._frame = (rev, frame, {i: n for n, (i, _) in enumerate(rows)})
        return self._frame[1], self._frame[2]

    def document_hashes(self, document: Document) -> dict[str, str]:
        """Item id -> the hash of the item's document as `document` builds it now (a version's row
        whose hash differs holds an item it must encode again); once per data revision and template."""
        key = (self.store.data_revision(), document.template)
        if key not in self._doc_hashes:
            hashes = {i.id: document_hash(document.render(i.text, i.fields)) for i in self.store.iter_items()}
            self._doc_hashes = {k: v for k, v in self._doc_hashes.items() if k[0] == key[0]} | {key: hashes}
        return self._doc_hashes[key]

    def set_display_fields(self, fields: JSONObject) -> None:
        self.store.set_setting("display_fields", fields)
        self._display = None

    def display_state(self) -> tuple[int, DisplayFields, dict[str, WorkKey | None]]:
        """(data revision, display fields, item id -> work key)."""
        rev = self.store.data_revision()
        if self._display is None or self._display[0] != rev:
            frame, _ = self.metadata_frame()
            fields = DisplayFields.choose(list(frame.columns), self.store.get_setting("display_fields") or {})
            keys: dict[str, WorkKey | None] = {}
            if fields.title:
                cols = [c for c in (fields.title, fields.subtitle) if c]
                for item_id, row in zip(frame.index, frame[cols].to_dict("records"), strict=True):
                    keys[item_id] = work_key(row, fields)
            self._display = (rev, fields, keys)
        return self._display

    def allowed_rows(
        self, v: LoadedVersion, where: str | None, exclude: Sequence[str] = ()
    ) -> np.ndarray | None:
        """Row mask: rows of items that still exist, match the filter and are not excluded."""
        frame, pos = self.metadata_frame()
        rev = self.store.data_revision()
        if v.item_positions is None or v.item_positions[0] != rev:
            # computed once per version and data revision, not per query (a hot path)
            v.item_positions = (rev, np.array([pos.get(i, -1) for i in v.data.ids], dtype=np.int64))
        item_pos = v.item_positions[1]
        ok = item_pos >= 0  # rows whose item was deleted since embedding never match
        if where is None and not exclude and ok.all():
            return None
        if where:
            matches = evaluate_filter(where, frame)
            ok = ok & matches[np.maximum(item_pos, 0)] if len(matches) else np.zeros_like(ok)
        for item_id in exclude:
            r = v.row_of.get(item_id)
            if r is not None:
                ok[r] = False
        return ok


def stored_spec(store: Store) -> IngestSpec | None:
    """The ingest spec the collection keeps (None before its first ingest)."""
    return IngestSpec.from_settings(store.get_setting)


def check_id_field(store: Store, collection: str, id_field: str, *, replace: bool) -> None:
    """An ingest keys items by the collection's id field, unless it replaces every item."""
    stored_id = store.get_setting("id_field")
    if stored_id is not None and stored_id != id_field and not replace and store.count():
        raise EmbedscopeError(
            f"collection '{collection}' identifies items by '{stored_id}', not '{id_field}': "
            f"ingest with --id-field {stored_id} (or --replace to re-key every item)"
        )


def write_items(store: Store, items: list[Item], spec: IngestSpec, *, replace: bool) -> dict[str, int]:
    """Write ingested items in one transaction, with the spec they were read by (so later ingests
    and HTTP writes read records the same way). A field whose type the input widened (an int field
    that met '02139') has its stored values converted too (losslessly, field_types), so a field
    keeps one type across the collection; `retyped` counts the items that changed so."""
    before = stored_spec(store)
    retyped: list[Item] = []
    if before is not None and not replace:
        widened = {f: t for f, t in spec.types.items() if before.types.get(f) not in (None, t)}
        if widened:
            given = {i.id for i in items}
            retyped = [r for i in store.iter_items() if i.id not in given and (r := _retype(i, widened))]
    counts = store.upsert_items([*items, *retyped], replace_all=replace, settings=spec.settings())
    if retyped:
        counts["retyped"] = len(retyped)
    return counts


def _retype(item: Item, kinds: dict[str, str]) -> Item | None:
    """`item` with the values of `kinds`' fields converted to those types (None: nothing changed)."""
    meta, source = dict(item.metadata), dict(item.source)
    for values in (meta, source):
        for f, kind in kinds.items():
            if values.get(f) is not None:
                values[f] = field_types.convert(values[f], kind)
    if meta == item.metadata and source == item.source:
        return None
    return Item(item.id, item.text, meta, source)


def update_record(store: Store, collection: str, item_id: str, fields: JSONMapping) -> JSONObject:
    """The record `PUT /items/{id}` writes: the stored item's fields (metadata and the text's
    source fields) with `fields` replacing some. One-line errors when a field is not one the
    collection keeps, or when the text cannot be rebuilt, saying what to send instead."""
    spec = stored_spec(store) or IngestSpec()
    text_fields = spec.text.fields()
    if spec.metadata is not None:
        known = {*spec.metadata, *text_fields, spec.id_field}
        unknown = sorted(set(fields) - known)
        if unknown:
            hint = (
                f"; its text is built by {spec.text.describe()}: change {', '.join(text_fields)}"
                if spec.text.template
                else ""
            )
            raise EmbedscopeError(
                f"collection '{collection}' keeps no field {', '.join(map(repr, unknown))} (fields: "
                f"{', '.join(sorted(known - {spec.id_field}))}){hint}"
            )
    item = store.get_items([item_id])[0]
    current = {**item.source, **item.metadata} if item is not None else {}
    record = {**current, **fields, spec.id_field: item_id}
    missing = [f for f in text_fields if f not in record]
    if missing:
        why = (
            "it was ingested before embedscope kept the fields its text is built from; give"
            if item is not None
            else "a new item needs"
        )
        raise EmbedscopeError(
            f"item '{item_id}': its text is built by {spec.text.describe()}: {why} "
            f"{', '.join(missing)} in the body (or re-ingest the file, which keeps them)"
        )
    return record
