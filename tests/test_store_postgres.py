"""What only the PostgreSQL store has: filters translated to SQL (checked against the pandas
evaluator on the real books data), searches filtered in the database, writer locks, sparse and
half-precision storage. The contract tests both stores share live in test_store_api.py."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import ConflictError, EmbedscopeError
from embedscope.filters import evaluate_filter, filter_sql

POSTGRES_ONLY = pytest.mark.parametrize("books_300", ["postgres"], indirect=True)
FILTERS = [
    "published_year >= 2000",
    "published_year = 2004",
    "published_year != 2004",
    "2000 <= published_year < 2005",
    "average_rating > 4.2 and num_pages < 300",
    "average_rating >= 4.5 or ratings_count > 100000",
    "not published_year >= 1990",
    "categories == 'Fiction'",
    "categories != 'Fiction'",
    "categories in ['Fiction', 'Poetry', 'History']",
    "categories not in ['Fiction', 'Juvenile Fiction']",
    "authors contains 'tolkien'",
    "authors contains 'KING'",
    "not authors contains 'a'",
    "title startswith 'the'",
    "title < 'M'",
    "title >= 'The'",
    "isbn10 > 500000000",
    "isbn10 startswith '00'",
    "thumbnail contains 'zoom=1'",
    "published_year in [1999, 2000, 2001]",
    "average_rating in [4.0, 5]",
    "num_pages == 0",
    "description contains 'dragon' and published_year > 2000",
    "(categories == 'Fiction' or categories == 'Juvenile Fiction') and not average_rating < 3.5",
    "published_year contains '19'",
    "authors == None",
    "authors != None",
    'title == "Gilead"',
    "title = 'Gilead'",
    "ratings_count >= 1e5",
    "average_rating > -1",
    "categories contains 'fic' and authors startswith 's'",
    "categories has 'fiction'",
    "categories has 'History' or categories has ' Science '",
    "not categories has 'Fiction'",
    "published_year has '2004'",
    'title contains "\'"',
    "description contains '%' or description contains '_'",
    "published_year > 2000 and published_year < 1990",
    "title == 'x\\'; DROP TABLE embedscope.items; --'",
    'categories contains "\'); DELETE FROM embedscope.items; --"',
]


@pytest.fixture(scope="module")
def all_books(pg_server, books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Collection:  # noqa: ANN001
    """Every book with every field as metadata, in a PostgreSQL collection (no vectors needed)."""
    url = pg_server.create_database("embedscope_test_all_books")
    col = Collection.create("books", root=tmp_path_factory.mktemp("pgbooks"), store=url)
    col.ingest(books_frame, id_field="isbn13", template="{title}. {description}")
    return col


def test_postgres_filters_match_the_pandas_evaluator(all_books: Collection) -> None:
    frame, _ = all_books.metadata_frame()
    nontrivial = 0
    for expr in FILTERS:
        expected = set(frame.index[evaluate_filter(expr, frame)])
        assert set(all_books.store.filter_ids(expr)) == expected, expr
        nontrivial += 0 < len(expected) < len(frame)
    assert nontrivial >= 0.75 * len(FILTERS)  # most filters split the books: equality means something
    assert all_books.store.count() == len(frame)  # the injection attempts were only ever values


def test_postgres_filter_sql_is_parameterised() -> None:
    clause, params = filter_sql("title == 'a\\'b' and published_year > 2000", "m")
    assert "a'b" not in clause and "title" not in clause and "2000" not in clause
    assert params.count("title") == 1 and "a'b" in params and 2000.0 in params


def test_postgres_filter_errors_are_the_same(all_books: Collection) -> None:
    frame, _ = all_books.metadata_frame()
    for expr, message in [
        ("colour = 'red'", "unknown field"),
        ("published_year >=", "malformed filter"),
        ("categories in 'Fiction'", "needs a list"),
        ("title > True", "cannot compare"),
        ("published_year is 2000", "not supported"),
        ("__import__('os')", "unknown field"),
        ("title + 1", "unsupported expression"),
        ("1 == 1", "compares no field"),
    ]:
        with pytest.raises(EmbedscopeError, match=message):
            evaluate_filter(expr, frame)
        with pytest.raises(EmbedscopeError, match=message):
            all_books.store.filter_ids(expr)


@POSTGRES_ONLY
def test_postgres_search_filters_in_sql(books_300: Collection) -> None:
    """`where` applied in the database (iterative index scans) returns the exact filtered top-k."""
    from embedscope.index import create_index

    v = books_300.load_version()
    exact = create_index("exact").build(np.asarray(v.data.vectors))
    frame, _ = books_300.metadata_frame()
    agree = total = 0
    for n, expr in enumerate(["published_year >= 2005", "categories == 'Fiction'", "average_rating > 4.3"]):
        mask = books_300.allowed_rows(v, expr)
        assert mask is not None and 0 < mask.sum() < len(mask)
        query = np.asarray(v.data.vectors[n * 7 : n * 7 + 1])
        rows, scores = v.index.search(query, 10, where=expr)
        want, _ = exact.search(query, 10, allowed=mask)
        got = [r for r in rows[0] if r >= 0]
        assert (
            all(mask[r] for r in got) and list(scores[0][: len(got)]) == sorted(scores[0][: len(got)])[::-1]
        )
        agree += len(set(got) & set(want[0][want[0] >= 0]))
        total += int((want[0] >= 0).sum())
    assert agree / total >= 0.9


@POSTGRES_ONLY
def test_postgres_search_where_takes_the_filter_both_ways(
    books_300: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few rows pass: searched among them; many: the filter in SQL, the mask dropping what it
    also excludes (here the query's own item, as `similar` excludes it). Both give the exact
    filtered top-k minus the excluded item."""
    from embedscope.index import create_index

    v = books_300.load_version()
    exact = create_index("exact").build(np.asarray(v.data.vectors))
    expr, own = "published_year >= 2000", v.data.ids[3]
    mask = books_300.allowed_rows(v, expr, exclude=[own])
    query = np.asarray(v.data.vectors[3:4])
    want, _ = exact.search(query, 10, allowed=mask)
    for max_rows in (len(mask), 0):  # the row-list path, then the SQL path
        monkeypatch.setattr(v.index, "exact_filter_max_rows", max_rows)
        rows, _ = v.index.search_where(query, 10, allowed=mask, where=expr)
        assert 3 not in rows[0] and all(mask[r] for r in rows[0] if r >= 0)
        assert len(set(rows[0]) & set(want[0])) >= 9


@POSTGRES_ONLY
def test_postgres_selective_filter_still_finds_k(books_300: Collection) -> None:
    """A filter that passes ~3% of the items: iterative scans keep looking until k rows pass."""
    v = books_300.load_version()
    frame, _ = books_300.metadata_frame()
    years = frame["published_year"].value_counts().sort_index()
    year = int(years[years.between(5, 15)].index[0])
    expr = f"published_year == {year}"
    rows, _ = v.index.search(np.asarray(v.data.vectors[:1]), 5, where=expr)
    assert (rows[0] >= 0).sum() == 5


def hold(lock: Any) -> tuple[threading.Thread, threading.Event]:
    """Hold a lock context in another thread (another connection) until the event is set."""
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock():
            holding.set()
            release.wait(20)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(20)
    return thread, release


def test_postgres_writers_serialise_and_a_waiting_one_gives_up(
    pg_database: str, tmp_path: Path, books_frame: pd.DataFrame
) -> None:
    col = Collection.create("busy", root=tmp_path, store=pg_database)
    col.ingest(books_frame.head(5), id_field="isbn13", template="{title}. {description}", metadata=["title"])
    col.embed("bm25")
    other = Collection.open("busy", root=tmp_path)
    other.store.write_wait = 0.3
    more = books_frame.iloc[5:8]

    # an item write in progress: another item write waits, then is refused; readers never wait
    thread, release = hold(col.store._write)
    try:
        with pytest.raises(ConflictError, match="collection 'busy' is busy"):
            other.ingest(more, id_field="isbn13", template="{title}. {description}", metadata=["title"])
        assert len(other) == 5 and other.search("a story", k=2, version="bm25")
    finally:
        release.set()
        thread.join()

    # a version writer (e.g. a long embed): other version writers wait, item writes do not
    thread, release = hold(col.store.writing)
    try:
        with pytest.raises(ConflictError, match="busy"):
            other.delete_version("bm25")
        counts = other.ingest(more, id_field="isbn13", template="{title}. {description}", metadata=["title"])
        assert counts["added"] == 3 and len(col) == 8
    finally:
        release.set()
        thread.join()
    with col.store.writing(), col.store.writing():  # re-entrant in one thread
        col.delete_version("bm25")
    # the deleted version's table rests a while for readers that loaded it, then goes
    assert col.versions() == [] and other.store.vector_tables() == other.store.retired_tables()
    with col.store.writing():
        col.store._collect_garbage(grace=0)
    assert other.store.vector_tables() == [] == other.store.retired_tables()


def test_postgres_sparse_and_halfvec_versions(
    pg_database: str, tmp_path: Path, books_frame: pd.DataFrame
) -> None:
    col = Collection.create("kinds", root=tmp_path, store=pg_database)
    col.ingest(books_frame.head(60), id_field="isbn13", template="{title}. {description}", metadata=["title"])
    bm25 = col.embed("bm25")  # sparse: a sparsevec column, searched exactly in the database
    assert bm25.sparse and bm25.index["kind"] == "exact"
    target = col.items()[7]
    assert col.search(target.metadata["title"], k=3, version="bm25")[0].id == target.id
    ids, vectors = col.vectors("bm25")
    assert vectors.shape == (60, bm25.dim) and vectors.nnz > 0
    half = col.embed(
        "minilm", {"max_seq_length": 64}, version="half", index_params={"dtype": "f16", "connectivity": 8}
    )
    assert half.index["params"]["dtype"] == "f16" and half.stats["index_bytes"] > 0
    assert col.search(target.text, k=1, version="half")[0].id == target.id
    _, half_vectors = col.vectors("half")
    assert half_vectors.dtype == np.float32 and np.allclose(
        np.linalg.norm(half_vectors, axis=1), 1, atol=1e-2
    )
    with pytest.raises(EmbedscopeError, match="no parameter threads"):
        col.embed("minilm", version="bad", index_params={"threads": 2})
    with pytest.raises(EmbedscopeError, match="8-bit storage needs the embedded store"):
        col.embed("minilm", version="bad", index_params={"dtype": "i8"})
    with pytest.raises(EmbedscopeError, match="sparse: use --index exact"):
        col.embed("bm25", version="bm25-hnsw", index="hnsw")


def test_postgres_collection_is_found_by_name_without_the_variable(
    pg_database: str,
    home: Path,
    books_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = pg_database
    monkeypatch.setenv("EMBEDSCOPE_STORE", url)
    Collection.create("found").ingest(books_frame.head(3), id_field="isbn13", text="description")
    assert Collection.list() == ["found"]
    monkeypatch.delenv("EMBEDSCOPE_STORE")
    col = Collection.open("found")  # via the pointer file in $EMBEDSCOPE_HOME/found
    assert len(col) == 3 and col.info()["store"] == url
    with pytest.raises(EmbedscopeError, match="already lives in"):
        Collection.create("found", store=url.replace(url.rsplit("/", 1)[1], "elsewhere"))
    with pytest.raises(EmbedscopeError, match="not a PostgreSQL URL"):
        Collection.create("other", store="mysql://x")


def test_postgres_url_never_shows_or_stores_the_password() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from embedscope.store.postgres import redact

    url = "postgresql://bob:s3cret@db.example:5433/shop?sslmode=require&options=-c%20work_mem%3D64MB"
    shown = redact(url)
    assert "s3cret" not in shown
    assert conninfo_to_dict(shown) == {
        **{k: v for k, v in conninfo_to_dict(url).items() if k != "password"},
    }
