"""The PostgreSQL + pgvector store: the same contract as the embedded store, kept in a database
the user already runs, and searched there.

Why this shape (docs/design.md has the measurements):
- Items, settings and version records live in four shared tables of the schema `embedscope`,
  keyed by collection, with metadata as JSONB, so `--where` filters run in SQL over it.
- Each version revision gets its own vector table (`vector`, `halfvec` or `sparsevec` column)
  with pgvector's HNSW index. A version is written in ONE transaction: create the table, copy
  the rows in, build the index, point the version record at it. A writer killed at any point
  leaves nothing: the database rolls it back, and readers saw the old revision all along.
- The fitted encoder state (a vocabulary, weights) is stored as bytes beside the version, so
  the collection needs nothing but the database.
- Search runs in the database (`ORDER BY embedding <#> $1 LIMIT k`) with `hnsw.ef_search` set
  per query, and pgvector 0.8's iterative index scans for filtered queries, so a query process
  never loads the vectors; `VersionData.vectors` is read only when asked (exact search, more-
  like-this of an item, incremental embedding).
- Scores are inner products, as in the embedded indexes: the encoders that want cosine already
  L2-normalise, and pgvector recommends inner product for normalised vectors (fastest).
- Concurrency, the guarantees of `Store`: a version writer holds the collection's writer lock, a
  session-level advisory lock (it spans the many transactions of an embed and dies with its
  connection, so a killed process leaves no stale lock); item writes serialise on a transaction-
  scoped advisory lock; a writer that waits longer than `write_wait` gets ConflictError("... is
  busy"); readers take no locks and see the last committed state (MVCC).
"""

from embedscope.store.postgres.index import PgVectorIndex
from embedscope.store.postgres.schema import SCHEMA, connect, list_collections, redact
from embedscope.store.postgres.store import PostgresStore

__all__ = ["SCHEMA", "PgVectorIndex", "PostgresStore", "connect", "list_collections", "redact"]
