"""pgvector HNSW backends of the scale bench: the PostgreSQL store's own code path, measured. Run
them through bench/bench_scale.py, which registers them as `pgvector-f32` and `pgvector-f16`:

    python bench/bench_scale.py --backends pgvector-f32,pgvector-f16 --out scale-pgvector
    python bench/bench_scale.py --n 100000 --backends pgvector-f32,hnsw-f32 --out scale-100k

Each backend starts a throwaway PostgreSQL 18 + pgvector 0.8 server (embedscope/store/pgserver.py),
writes the N items (JSONB metadata) and one embedding version through `PostgresStore`: one
transaction that COPYs the vectors into a `vector` (f32) or `halfvec` (f16) table and builds
pgvector's HNSW index (m=16, ef_construction=128: the embedded index's connectivity and
expansion_add). Queries go through `PgVectorIndex.search`, one at a time, as Collection sends them:
`hnsw.ef_search` set per query, the `where` filter translated to parameterised SQL over the JSONB
metadata, and for filtered queries three strategies:
- "iterative": the filter in SQL, with pgvector 0.8's iterative index scans (`relaxed_order`);
- "post-filter": the filter in SQL, plain HNSW (ef_search candidates, then the filter: what
  pgvector did before 0.8);
- "mask": the filter evaluated in Python over the metadata frame (as Collection.allowed_rows does
  today) and sent as the list of allowed rows; PostgreSQL's planner picks the index or the rows.

Server settings (a dedicated server for the bench; a production one is tuned the same way for
bulk loads): maintenance_work_mem large enough for the whole graph (pgvector builds much slower
once the graph spills), one parallel maintenance worker (2 cores), shared_buffers that hold the
index, and max_wal_size so the build is not interrupted by checkpoints.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SERVER_SETTINGS = {
    "shared_buffers": "3GB",
    "maintenance_work_mem": "4GB",
    "max_parallel_maintenance_workers": "1",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
}


class PgVectorHNSW:
    """A pgvector HNSW version in the PostgreSQL store (the bench's Backend interface)."""

    efs: tuple[int, ...] = (32, 64, 128)  # hnsw.ef_search
    filter_strategies: tuple[str | None, ...] = ("iterative", "post-filter", "mask")
    fallbacks = 0  # no fallback path: iterative scans keep walking the graph until k rows pass

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.name = f"pgvector hnsw {'vector' if dtype == 'f32' else 'halfvec'}"
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # the collection's pointer folder
        self.server_dir = Path(tempfile.mkdtemp(prefix="bench-pg-server-"))  # chowned to the server user
        self.server: Any = None
        self.store: Any = None
        self.masks: dict[str, np.ndarray] = {}

    def build(self, vectors: np.ndarray, metadata: pd.DataFrame) -> dict[str, Any]:
        from embedscope.encoders.registry import create_encoder
        from embedscope.store import pgserver
        from embedscope.store.base import Item, VersionData, VersionInfo
        from embedscope.store.postgres import PostgresStore

        self.metadata = metadata
        self.server = pgserver.start(self.server_dir, settings=SERVER_SETTINGS)
        self.store = PostgresStore(self.server.url, "scale", self.dir / "scale", create=True)
        records = metadata.to_dict(orient="records")
        items = [Item(str(n), "-", {k: _plain(v) for k, v in r.items()}) for n, r in enumerate(records)]
        t = time.perf_counter()
        self.store.upsert_items(items)
        load_items_s = time.perf_counter() - t
        ids = [i.id for i in items]
        hashes = [i.hash for i in items]
        del items, records
        info = VersionInfo(
            name="bench",
            encoder=create_encoder("minilm").config(),
            dim=int(vectors.shape[1]),
            count=len(vectors),
            fingerprint="",
            index={"kind": "hnsw", "params": {"dtype": self.dtype}},
            sparse=False,
            metric="cosine",
            created_at="",
            updated_at="",
        )
        t = time.perf_counter()
        self.store.write_version(info, VersionData(ids, hashes, vectors), create_encoder("minilm"), None)
        build_s = time.perf_counter() - t
        _, _, self.index = self.store.read_version("bench")
        self.table = self.index._table
        self.explained: set[tuple[str | None, str | None]] = set()
        print(f"  {self.name}: items {load_items_s:.1f} s, COPY + HNSW {build_s:.1f} s", flush=True)
        return {
            "build_s": round(build_s, 1),
            "hnsw_build_s": info.stats["index_seconds"],
            "copy_s": round(build_s - info.stats["index_seconds"], 1),
            "items_load_s": round(load_items_s, 1),
        }

    def search(
        self, query: np.ndarray, k: int, ef: int, where: str | None, strategy: str | None = None
    ) -> np.ndarray:
        if where is not None and strategy != "mask" and (where, strategy) not in self.explained:
            self.explained.add((where, strategy))  # the plan PostgreSQL chose, once per filter
            print(f"  plan for {where!r} ({strategy}):\n    " + self.explain(query, k, ef, where, strategy))
        if where is not None and strategy == "mask":
            if where not in self.masks:  # once per filter, as Collection caches it per data revision
                from embedscope.filters import evaluate_filter

                self.masks[where] = evaluate_filter(where, self.metadata)
            rows, _ = self.index.search(query[None], k, allowed=self.masks[where], expansion_search=ef)
            return rows[0]
        iterative = None if where is None else strategy != "post-filter"
        rows, _ = self.index.search(query[None], k, where=where, expansion_search=ef, iterative=iterative)
        return rows[0]

    def explain(self, query: np.ndarray, k: int, ef: int, where: str | None, strategy: str | None) -> str:
        """The plan PostgreSQL chose (which index, which join): printed by the bench once per filter."""
        from embedscope.filters import filter_sql
        from embedscope.store.postgres import SCHEMA

        clause, params = filter_sql(where, "i.metadata") if where else ("TRUE", [])
        conn = self.store._conn()
        with conn.transaction():
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true)",
                (str(ef), "off" if strategy == "post-filter" else "relaxed_order"),
            )
            plan = conn.execute(
                f'EXPLAIN (COSTS OFF) SELECT v.row FROM {SCHEMA}."{self.table}" v '
                f"JOIN {SCHEMA}.items i ON i.collection_id = %s AND i.id = v.item_id WHERE {clause} "
                "ORDER BY v.embedding <#> %s LIMIT %s",
                [self.store.collection_id, *params, self.index._query_value(query), k],
            ).fetchall()
        return "\n    ".join(r[0].split(" '[")[0] for r in plan)  # without the 384 numbers

    def sizes(self) -> dict[str, int]:
        from embedscope.store.postgres import SCHEMA

        table = f'{SCHEMA}."{self.table}"'
        total = (
            self.store._conn().execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()[0]
        )
        index = self.index.nbytes()
        # searching keeps the graph pages (which hold the vectors too) in shared buffers
        return {"index_disk": int(index), "store_disk": int(total), "memory": int(index)}

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.server_dir, ignore_errors=True)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
