"""The PostgreSQL store's schema and the SQL-level helpers its parts share: table layout, limits
of pgvector, lock keys, connecting, and URLs shown without their password."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote, urlencode

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

SCHEMA = "embedscope"


#: a statement `Connection.execute` takes (psycopg.abc.Query also admits t-string templates, which
#: its `execute` does not)
Query: TypeAlias = "str | bytes | sql.SQL | sql.Composed"


# Any: psycopg types a row's values as Any (their types are the query's columns)
def one_row(cursor: psycopg.Cursor) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, `to_regclass`, a lock attempt)."""
    row = cursor.fetchone()
    if row is None:
        raise EmbedscopeError("PostgreSQL returned no row to a query that always returns one")
    return row


SCHEMA_SQL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.collections (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL,
    data_revision bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.settings (
    collection_id int NOT NULL REFERENCES {SCHEMA}.collections ON DELETE CASCADE,
    key text NOT NULL,
    value jsonb NOT NULL,
    PRIMARY KEY (collection_id, key)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.items (
    collection_id int NOT NULL REFERENCES {SCHEMA}.collections ON DELETE CASCADE,
    id text NOT NULL,
    seq bigserial NOT NULL,
    text text NOT NULL,
    metadata jsonb NOT NULL,
    hash text NOT NULL,
    source jsonb,
    PRIMARY KEY (collection_id, id)
);
CREATE INDEX IF NOT EXISTS items_in_order ON {SCHEMA}.items (collection_id, seq);
CREATE TABLE IF NOT EXISTS {SCHEMA}.versions (
    collection_id int NOT NULL REFERENCES {SCHEMA}.collections ON DELETE CASCADE,
    name text NOT NULL,
    info jsonb NOT NULL,
    revision text UNIQUE NOT NULL,
    encoder bytea NOT NULL,
    PRIMARY KEY (collection_id, name)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.retired (
    collection_id int NOT NULL,
    table_name text PRIMARY KEY,
    retired_at timestamptz NOT NULL DEFAULT now()
);
"""
SCHEMA_LOCK = 0x656D6273  # advisory lock key while creating the schema ("embs")
#: how long a writer waits for another writer of the same collection before ConflictError
WRITE_WAIT_SECONDS = 10.0
#: how long a replaced revision's table outlives its replacement: a reader that loaded the version
#: just before the switch still finishes its search (as a memory-mapped embedded revision does)
RETIRED_SECONDS = 120.0
#: pgvector limits: HNSW indexes at most 2,000 `vector` / 4,000 `halfvec` dimensions; a
#: `sparsevec` holds at most 16,000 non-zero values (HNSW: 1,000)
HNSW_MAX_DIM = {"vector": 2000, "halfvec": 4000}
SPARSE_MAX_NNZ = 16000
#: bytes of a version table's indexes (its HNSW graph), the primary key left out
INDEX_BYTES = (
    "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index "
    "WHERE indrelid = %s::regclass AND NOT indisprimary"
)
EF_SEARCH_MAX = 1000
OPS = {"vector": "vector_ip_ops", "halfvec": "halfvec_ip_ops", "sparsevec": "sparsevec_ip_ops"}


def redact(url: str) -> str:
    """The URL without its password (what may be shown or written to disk)."""

    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as nothing rather than leaked
        return "postgresql://?"
    parts.pop("password", None)
    user = f"{quote(parts.pop('user'), safe='')}@" if parts.get("user") else ""
    host = parts.pop("host", "")
    port = f":{parts.pop('port')}" if parts.get("port") else ""
    dbname = quote(parts.pop("dbname", ""), safe="")
    query = f"?{urlencode(sorted(parts.items()), quote_via=quote)}" if parts else ""
    return f"postgresql://{user}{host}{port}/{dbname}{query}"


def lock_key(name: str, what: str) -> int:
    """A stable signed 64-bit advisory-lock key per collection and lock ("versions", "items")."""
    digest = hashlib.sha1(f"embedscope/{name}/{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


#: the column type for each `dtype` index parameter (pgvector has no 8-bit vector type)
DTYPES = {"f32": "vector", "f16": "halfvec"}


def storage_of(info_index: JSONObject, sparse: bool) -> str:
    return "sparsevec" if sparse else DTYPES[str(info_index.get("params", {}).get("dtype", "f32"))]


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection, or a one-line error naming the server (without its password)."""
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1].strip()
        raise EmbedscopeError(f"cannot connect to PostgreSQL at {redact(url)}: {reason}") from None


def list_collections(url: str) -> list[str]:
    """Names of the collections in the database (none if embedscope never wrote there)."""
    with connect(url) as conn:
        if not one_row(conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.collections",)))[0]:
            return []
        return [r[0] for r in conn.execute(f"SELECT name FROM {SCHEMA}.collections ORDER BY name")]
