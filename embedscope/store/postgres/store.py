"""`PostgresStore`: the Store contract in PostgreSQL + pgvector (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from embedscope.store.base import Item, ItemChanges
from embedscope.store.postgres.schema import SCHEMA
from embedscope.store.postgres.versions import PgVersions
from embedscope.validation import can_be_id


class PostgresStore(PgVersions):
    """One collection in a PostgreSQL database with pgvector. `path` is the local folder of the
    collection's pointer file (and of files other modules keep beside a collection)."""

    def destroy(self) -> None:
        with self.writing(), self._write() as cur:
            cur.execute(f"DELETE FROM {SCHEMA}.collections WHERE id = %s", (self.collection_id,))
        for table in self.vector_tables():
            self._drop_table(table)

    # --- items -----------------------------------------------------------------------------------
    def upsert_items(
        self, items: Sequence[Item], *, replace_all: bool = False, settings: dict[str, Any] | None = None
    ) -> dict[str, int]:
        cid = self.collection_id
        with self._write() as cur:
            # read under the items lock, so the diff is against what this transaction replaces
            existing = dict(
                cur.execute(f"SELECT id, hash FROM {SCHEMA}.items WHERE collection_id = %s", (cid,))
            )
            changes = ItemChanges.of(items, existing, replace_all=replace_all)
            if changes.added:
                with cur.copy(
                    f"COPY {SCHEMA}.items (collection_id, id, text, metadata, hash) FROM STDIN"
                ) as copy:
                    for item, meta, h in changes.added:
                        copy.write_row((cid, item.id, item.text, meta, h))
            if changes.updated:
                cur.executemany(
                    f"UPDATE {SCHEMA}.items SET text = %s, metadata = %s::jsonb, hash = %s "
                    "WHERE collection_id = %s AND id = %s",
                    [(item.text, meta, h, cid, item.id) for item, meta, h in changes.updated],
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

    def get_items(self, ids: Sequence[str]) -> list[Item | None]:
        ids = list(ids)
        rows = self._read(
            f"SELECT id, text, metadata FROM {SCHEMA}.items WHERE collection_id = %s AND id = ANY(%s)",
            self.collection_id,
            [i for i in ids if can_be_id(i)],  # no item has any other id; a NUL would be an error
        )
        found = {i: Item(i, text, meta) for i, text, meta in rows}
        return [found.get(i) for i in ids]

    def iter_items(self) -> Iterable[Item]:
        rows = self._read(
            f"SELECT id, text, metadata FROM {SCHEMA}.items WHERE collection_id = %s ORDER BY seq",
            self.collection_id,
        )
        for i, text, meta in rows:
            yield Item(i, text, meta)

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
        from embedscope.filters import filter_sql

        clause, params = filter_sql(where, "metadata", self.metadata_fields())
        rows = self._read(
            f"SELECT id FROM {SCHEMA}.items WHERE collection_id = %s AND {clause} ORDER BY seq",
            self.collection_id,
            *params,
        )
        return [r[0] for r in rows]
