"""`PostgresStore`: the Store contract in PostgreSQL + pgvector (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from embedscope.filters import filter_sql
from embedscope.jsontypes import JSONObject
from embedscope.store.base import Item, ItemChanges
from embedscope.store.postgres.schema import SCHEMA
from embedscope.store.postgres.versions import PgVersions
from embedscope.validation import can_be_id

if TYPE_CHECKING:
    import psycopg


class PostgresStore(PgVersions):
    """One collection in a PostgreSQL database with pgvector. `path` is the local folder of the
    collection's pointer file (and of files other modules keep beside a collection)."""

    _has_source = False  # whether the items table has its `source` column (checked on use)

    def destroy(self) -> None:
        with self.writing(), self._write() as cur:
            cur.execute(f"DELETE FROM {SCHEMA}.collections WHERE id = %s", (self.collection_id,))
        for table in self.vector_tables():
            self._drop_table(table)

    # --- items -----------------------------------------------------------------------------------
    def upsert_items(
        self, items: Sequence[Item], *, replace_all: bool = False, settings: JSONObject | None = None
    ) -> dict[str, int]:
        cid = self.collection_id
        with self._write() as cur:
            self._add_source_column(cur)
            # read under the items lock, so the diff is against what this transaction replaces
            existing = dict(
                cur.execute(f"SELECT id, hash FROM {SCHEMA}.items WHERE collection_id = %s", (cid,))
            )
            changes = ItemChanges.of(items, existing, replace_all=replace_all)
            if changes.added:
                with cur.copy(
                    f"COPY {SCHEMA}.items (collection_id, id, text, metadata, hash, source) FROM STDIN"
                ) as copy:
                    for item, meta, h in changes.added:
                        copy.write_row((cid, item.id, item.text, meta, h, item.source_json()))
            if changes.updated:
                cur.executemany(
                    f"UPDATE {SCHEMA}.items SET text = %s, metadata = %s::jsonb, hash = %s, "
                    "source = %s::jsonb WHERE collection_id = %s AND id = %s",
                    [
                        (item.text, meta, h, item.source_json(), cid, item.id)
                        for item, meta, h in changes.updated
                    ],
                )
            if changes.deleted:
                cur.execute(
                    f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)",
                    (cid, changes.deleted),
                )
            counts = changes.counts()
            if counts["added"] or counts["updated"] or counts["deleted"]:
                self._bump_revision(cur)
            for key, value in (settings or {}).items():
                self._put_setting(cur, key, value)
        return counts

    def delete_items(self, ids: Sequence[str]) -> int:
        with self._write() as cur:
            cur.execute(
                f"DELETE FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)",
                (self.collection_id, [i for i in ids if can_be_id(i)]),
            )
            n = cur.rowcount
            if n:
                self._bump_revision(cur)
        return n

    def _source_column(self) -> str:
        """`source`, or NULL in a database written before items kept their source fields (opening
        writes nothing: the column is added by the first item write, `_add_source_column`)."""
        if not self._has_source:
            row = self._read(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'source' "
                "AND NOT attisdropped",
                f"{SCHEMA}.items",
            ).fetchone()
            self._has_source = row is not None
        return "source" if self._has_source else "NULL::jsonb"

    def _add_source_column(self, cur: psycopg.Cursor) -> None:
        if self._source_column() != "source":
            cur.execute(f"ALTER TABLE {SCHEMA}.items ADD COLUMN IF NOT EXISTS source jsonb")
            self._has_source = True

    def get_items(self, ids: Sequence[str]) -> list[Item | None]:
        ids = list(ids)
        rows = self._read(
            f"SELECT id, text, metadata, {self._source_column()} FROM {SCHEMA}.items "
            "WHERE collection_id = %s AND id = ANY(%s)",
            self.collection_id,
            [i for i in ids if can_be_id(i)],  # no item has any other id; a NUL would be an error
        )
        found = {i: Item(i, text, meta, src or {}) for i, text, meta, src in rows}
        return [found.get(i) for i in ids]

    def iter_items(self) -> Iterable[Item]:
        rows = self._read(
            f"SELECT id, text, metadata, {self._source_column()} FROM {SCHEMA}.items "
            "WHERE collection_id = %s ORDER BY seq",
            self.collection_id,
        )
        for i, text, meta, src in rows:
            yield Item(i, text, meta, src or {})

    def iter_metadata(self) -> Iterable[tuple[str, JSONObject]]:
        rows = self._read(
            f"SELECT id, metadata FROM {SCHEMA}.items WHERE collection_id = %s ORDER BY seq",
            self.collection_id,
        )
        yield from rows

    def item_hashes(self) -> dict[str, str]:
        rows = self._read(
            f"SELECT id, hash FROM {SCHEMA}.items WHERE collection_id = %s ORDER BY seq",
            self.collection_id,
        )
        return dict(rows)

    def count(self) -> int:
        row = self._read(
            f"SELECT count(*) FROM {SCHEMA}.items WHERE collection_id = %s", self.collection_id
        ).fetchone()
        return int(row[0]) if row else 0

    def metadata_fields(self) -> list[str]:
        """The metadata keys of the items (what a filter may name), cached per data revision."""
        rev = self.data_revision()
        if self._fields is None or self._fields[0] != rev:
            rows = self._read(
                f"SELECT DISTINCT jsonb_object_keys(metadata) FROM {SCHEMA}.items WHERE collection_id = %s",
                self.collection_id,
            )
            self._fields = (rev, sorted(r[0] for r in rows))
        return self._fields[1]

    def filter_ids(self, where: str) -> list[str]:
        """Ids of the items that match a `--where` filter, decided in SQL."""

        clause, params = filter_sql(where, "metadata", self.metadata_fields())
        rows = self._read(
            f"SELECT id FROM {SCHEMA}.items WHERE collection_id = %s AND {clause} ORDER BY seq",
            self.collection_id,
            *params,
        )
        return [r[0] for r in rows]
