"""Shared fixtures: where the real data is, and a private EMBEDSCOPE_HOME per test."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from embedscope.store.pgserver import PgServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BOOKS_CSV = SHARED_DATA / "books" / "books.csv"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh collections root for this test."""
    root = tmp_path / "home"
    monkeypatch.setenv("EMBEDSCOPE_HOME", str(root))
    return root


@pytest.fixture
def run_cli(home: Path) -> Callable[..., subprocess.CompletedProcess]:
    """The CLI as a user meets it: `run_cli("search", "books", "dragons")` in a subprocess on `home`."""
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "160"}

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "embedscope.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    return run


@pytest.fixture(scope="session")
def books_frame() -> pd.DataFrame:
    if not BOOKS_CSV.exists():
        pytest.skip(f"real books data not found at {BOOKS_CSV} (../shared/data is absent)")
    return pd.read_csv(BOOKS_CSV)


META_300 = ["title", "authors", "categories", "published_year", "average_rating"]


@pytest.fixture(scope="session")
def books_300_embedded(books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """300 real books embedded with MiniLM once per test session (read-only for tests)."""
    from embedscope import Collection

    root = tmp_path_factory.mktemp("books300")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EMBEDSCOPE_STORE", raising=False)  # the embedded store, whatever the shell says
        col = Collection.create("books300", root=root)
    col.ingest(
        books_frame.head(300),
        id_field="isbn13",
        template="{title}. {description}",
        metadata=META_300,
    )
    col.embed("minilm")
    return col


@pytest.fixture(scope="session")
def books_lsa(books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """LSA vectors (cosine, unit length) of all 5,197 books, row i for books_frame's row i: real
    vectors that take seconds to make."""
    from embedscope import Collection

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EMBEDSCOPE_STORE", raising=False)
        col = Collection.create("lsa", root=tmp_path_factory.mktemp("lsa"))
    col.ingest(books_frame, id_field="isbn13", template="{title}. {description}")
    col.embed("lsa", index="exact")
    ids, vectors = col.vectors("lsa")
    row_of = {item_id: row for row, item_id in enumerate(ids)}
    return np.asarray(vectors, dtype=np.float32)[[row_of[str(i)] for i in books_frame.isbn13]]


# --- the PostgreSQL store: one throwaway server per session, a fresh database per test ----------
_databases = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server with pgvector for this session: EMBEDSCOPE_TEST_POSTGRES (a URL of a
    server you run, whose user may create databases), else a throwaway one started here on a free
    loopback port (embedscope/store/pgserver.py). It fails loudly, never skips, if it cannot start."""
    from embedscope.store import pgserver

    existing = os.environ.get("EMBEDSCOPE_TEST_POSTGRES")
    if existing:
        yield pgserver.PgServer(None, existing)
        return
    directory = Path(tempfile.mkdtemp(prefix="embedscope-test-pg-"))  # reachable by the server user
    server = pgserver.start(directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def new_database(server: PgServer) -> str:
    return server.create_database(f"embedscope_test_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def pg_database(pg_server: PgServer) -> str:
    """The URL of a fresh PostgreSQL database."""
    return new_database(pg_server)


@pytest.fixture(params=["embedded", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None (the embedded store) or the URL of a fresh PostgreSQL database (test ids `[postgres]`)."""
    return new_database(request.getfixturevalue("pg_server")) if request.param == "postgres" else None


@pytest.fixture
def store_home(store_url: str | None, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh collections root whose new collections go to the embedded store, or (test ids with
    `postgres`) to a fresh PostgreSQL database, as EMBEDSCOPE_STORE says."""
    if store_url:
        monkeypatch.setenv("EMBEDSCOPE_STORE", store_url)
    else:
        monkeypatch.delenv("EMBEDSCOPE_STORE", raising=False)
    return home


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def books_300(request: pytest.FixtureRequest, books_300_embedded):  # noqa: ANN001, ANN201
    """books_300 in each store. The PostgreSQL copy gets the same items and the same MiniLM
    version (written through its store, index built by pgvector) instead of encoding twice."""
    if request.param == "embedded":
        return books_300_embedded
    from embedscope import Collection

    source = books_300_embedded
    root = request.getfixturevalue("tmp_path_factory").mktemp("books300pg")
    col = Collection.create("books300", root=root, store=new_database(request.getfixturevalue("pg_server")))
    col.ingest(
        [{"isbn13": i.id, "text": i.text, **i.metadata} for i in source.items()],
        id_field="isbn13",
        text="text",
        metadata=META_300,
    )
    for key in ("text_spec", "id_field"):
        col.store.set_setting(key, source.store.get_setting(key))
    data, encoder, _ = source.store.read_version("minilm")
    info = source.store.get_version("minilm")
    col.store.write_version(info, data, encoder, None)  # the same index parameters, in pgvector
    return col


def live_revisions_only(col) -> None:  # noqa: ANN001
    """No half-written or replaced revision (a folder, or a vector table) survives: what is stored
    is exactly what the version records point at."""
    from embedscope.store.postgres import PostgresStore

    live = {col.store.version_revision(v.name) for v in col.versions()}
    if isinstance(col.store, PostgresStore):
        # replaced revisions rest a while for readers that loaded them; each is recorded as such,
        # and garbage collection with no grace leaves exactly the live ones
        tables, live_tables = set(col.store.vector_tables()), {col.store._table(r) for r in live}
        assert tables - live_tables <= set(col.store.retired_tables())
        with col.store.writing():
            col.store._collect_garbage(grace=0)
        assert set(col.store.vector_tables()) == live_tables
    else:
        assert {p.name for p in (col.store.path / "versions").iterdir()} == live


@pytest.fixture
def no_leftovers():  # noqa: ANN201
    return live_revisions_only
