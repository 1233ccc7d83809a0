"""Data in (issue 16 items 1, 2, 3, 6, 10; issue 17 items 1, 3): metadata kept exactly, one type per
field kept with the collection, the text's source fields kept apart so `PUT` can rebuild the text,
HTTP writes read like ingests, encodings, Parquet types, the demo's no-delete rule, and vectors
reused by the hash of the text the encoder saw. Store-dependent tests run on both stores."""

from __future__ import annotations

import decimal
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BOOKS_CSV
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embedscope import Collection
from embedscope.errors import EmbedscopeError
from embedscope.sources import load_items
from embedscope.store.base import Item
from embedscope.store.postgres.schema import redact

TEMPLATE = "{title}. {description}"
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def raw_books() -> pd.DataFrame:
    """400 real books from the whole file (every 13th; ISBN-10s with and without a leading zero), as
    written in the file (every value as text)."""
    if not BOOKS_CSV.exists():
        pytest.skip(f"real books data not found at {BOOKS_CSV} (../shared/data is absent)")
    return pd.read_csv(BOOKS_CSV, dtype=str, keep_default_na=False).iloc[::13].head(400)


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "embedscope.cli", *args], capture_output=True, text=True, env=full, timeout=300
    )


# --- issue 16.1: metadata keep what the file says -------------------------------------------------------
def test_digits_stay_text_when_the_number_would_lose_them(tmp_path: Path) -> None:
    """The issue's file: `02139` was stored as 2139. A column is a number only when every value's
    text survives it: leading zeros, '+' and over 15 digits keep the column text."""
    path = tmp_path / "zip.csv"
    path.write_text(
        "id,text,zip,phone,code,year,rating,flag\n"
        "1,first thing,02139,+4412345,12345678901234567,2001,4.50,true\n"
        "2,second thing,10001,5550100,22,1999,3.85,False\n"
    )
    items, spec = load_items(path, text="text")
    assert [i.metadata["zip"] for i in items] == ["02139", "10001"]
    assert [i.metadata["phone"] for i in items] == ["+4412345", "5550100"]
    assert [i.metadata["code"] for i in items] == ["12345678901234567", "22"]
    assert [i.metadata["year"] for i in items] == [2001, 1999]
    assert [i.metadata["rating"] for i in items] == [4.5, 3.85]
    assert [i.metadata["flag"] for i in items] == [True, False]
    assert spec.types == {
        "text": "text",
        "zip": "text",
        "phone": "text",
        "code": "text",
        "year": "int",
        "rating": "float",
        "flag": "bool",
    }
    with pytest.raises(EmbedscopeError, match=r"row 1 \(id '1'\), field 'zip': '02139' is not a number"):
        load_items(path, text="text", types="zip=int")
    with pytest.raises(
        EmbedscopeError, match="unknown type 'integer' for 'zip'; valid: text, int, float, bool"
    ):
        load_items(path, text="text", types="zip=integer")


def test_field_types_are_kept_with_the_collection(
    store_home: Path, tmp_path: Path, raw_books: pd.DataFrame
) -> None:
    """A subset of the books whose ISBN-10s have no leading zero reads them as numbers; the same
    collection then meeting `0002005883` widens the field to text and converts what it stored, so
    the items equal those of a collection ingested from the whole file at once. Later records (the
    Python API, HTTP) are read by the stored types."""
    digits = raw_books[raw_books.isbn10.str.isdigit()]
    zeros, others = digits[digits.isbn10.str.startswith("0")], digits[~digits.isbn10.str.startswith("0")]
    assert len(zeros) > 50 and len(others) > 50
    kw = {
        "id_field": "isbn13",
        "template": TEMPLATE,
        "metadata": ["isbn10", "title", "published_year", "average_rating"],
    }
    col, _ = Collection.create_from("sub", _csv(others, tmp_path / "others.csv"), **kw)
    assert isinstance(col.get(others.isbn13.iloc[0]).metadata["isbn10"], int)
    counts = col.ingest(_csv(zeros, tmp_path / "zeros.csv"), **kw)
    assert col.get("9780002005883").metadata["isbn10"] == "0002005883"
    assert counts["added"] == len(zeros) and counts["retyped"] == len(others)
    assert col.field_types() == {
        "isbn10": "text",
        "title": "text",
        "published_year": "int",
        "average_rating": "float",
        "description": "text",
    }
    whole, _ = Collection.create_from("whole", _csv(digits, tmp_path / "digits.csv"), **kw)
    by_id = {i.id: i for i in whole.items()}
    assert {i.id: i for i in col.items()} == by_id  # one type per field, whatever the order
    assert [by_id[i].metadata["isbn10"] for i in digits.isbn13] == digits.isbn10.tolist()
    assert by_id["9780002005883"].metadata["isbn10"] == "0002005883"
    # records are read by the stored types: "2004" is the int 2004, a number sent for isbn10 its text
    row = digits.iloc[0]
    record = {**row.to_dict(), "published_year": "2004", "average_rating": "4.50", "isbn10": 2005883}
    col.upsert([record])
    meta = col.get(row.isbn13).metadata
    assert (meta["published_year"], meta["average_rating"], meta["isbn10"]) == (2004, 4.5, "2005883")
    # an explicit type is kept and enforced
    col.ingest([record], types="published_year=text")
    assert col.get(row.isbn13).metadata["published_year"] == "2004"
    with pytest.raises(EmbedscopeError, match="field 'published_year'.*type is int"):
        col.ingest([{**record, "published_year": "MMIV"}], types="published_year=int")
    col.upsert([{**record, "published_year": 2005}])
    assert col.get(row.isbn13).metadata["published_year"] == "2005"


# --- issue 16.10: Parquet types -------------------------------------------------------------------------
def test_parquet_integers_with_nulls_stay_integers_and_decimals_keep_their_scale(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    table = pa.table(
        {
            "id": ["a", "b"],
            "title": ["Gilead", "Dune"],
            "year": pa.array([2001, None], pa.int64()),
            "info": pa.array([{"pages": 247, "sold": None}, {"pages": None, "sold": 3}]),
            "price": pa.array([decimal.Decimal("19.90"), decimal.Decimal("5.00")], pa.decimal128(10, 2)),
        }
    )
    pq.write_table(table, path)
    (a, b), spec = load_items(path, template="{title} ({year})")
    assert a.text == "Gilead (2001)" and a.metadata["year"] == 2001 and b.metadata["year"] is None
    assert isinstance(a.metadata["year"], int)
    assert a.metadata["info"] == {"pages": 247, "sold": None} and b.metadata["info"] == {
        "pages": None,
        "sold": 3,
    }
    assert json.dumps(a.metadata["info"]) == '{"pages": 247, "sold": null}'  # no 247.0
    assert [a.metadata["price"], b.metadata["price"]] == ["19.90", "5.00"]  # exact, with the scale
    assert spec.types["price"] == "text" and spec.types["year"] == "int"
    (a, _), _ = load_items(path, template="{title} ({year})", types="price=float")
    assert a.metadata["price"] == 19.9


# --- issue 16.6: encodings ----------------------------------------------------------------------------
def test_encodings_bom_and_a_bogus_name(tmp_path: Path, home: Path) -> None:
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "caf\xc3\xa9"}\n')
    assert [i.text for i in load_items(bom)[0]] == ["café"]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"id": 1, "text": "caf\xe9"}\n')
    with pytest.raises(EmbedscopeError, match="not utf-8 text.*pass --encoding"):
        load_items(latin)
    assert [i.text for i in load_items(latin, encoding="latin-1")[0]] == ["café"]
    proc = _cli(home, "ingest", str(bom), "-c", "enc", "--encoding", "bogus")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "unknown encoding 'bogus'" in proc.stderr and "latin-1" in proc.stderr


# --- issue 16.2 and 16.3: HTTP writes read records like the ingest ---------------------------------------
META = ["title", "authors", "categories", "published_year", "average_rating"]


def _served(home: Path, tmp_path: Path, books: pd.DataFrame) -> TestClient:
    """`books` ingested from a file as the README does (template, chosen metadata), served."""
    from embedscope.serve import create_app

    kw = {"id_field": "isbn13", "template": TEMPLATE, "metadata": META}
    Collection.create_from("books", _csv(books, tmp_path / "books.csv"), **kw)
    return TestClient(create_app(["books"], root=home, token=TOKEN, warm=False))


def test_http_upserts_read_records_like_the_ingest(
    store_home: Path, tmp_path: Path, raw_books: pd.DataFrame
) -> None:
    """Records POSTed (every value a string, one field more than kept) become the items the file
    would have made: the `--metadata` choice holds (description is no filter field), the types too."""
    books = raw_books.head(25)
    kw = {"id_field": "isbn13", "template": TEMPLATE, "metadata": META}
    reference, _ = Collection.create_from("reference", _csv(books, tmp_path / "all.csv"), **kw)
    client = _served(store_home, tmp_path, books.head(20))
    records = [
        {**{k: v or None for k, v in r.items()}, "extra": "x"} for r in books.tail(5).to_dict("records")
    ]
    resp = client.post("/api/collections/books/items", json={"records": records}, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["counts"]["added"] == 5, resp.text
    col = Collection.open("books")
    assert "description" not in col.metadata_frame()[0].columns  # never a filter field
    assert {i.id: i for i in col.items()} == {i.id: i for i in reference.items()}  # however they arrived


def test_put_rebuilds_the_text_of_items_ingested_with_a_template(
    store_home: Path, tmp_path: Path, raw_books: pd.DataFrame
) -> None:
    """Every PUT answered 400 `text field(s) description not found` on items ingested the README's
    way; now the template's fields are kept apart and the text is rebuilt from them."""
    books = raw_books.head(5)
    client = _served(store_home, tmp_path, books)
    col, first, B = Collection.open("books"), books.iloc[0], "/api/collections/books/items"
    resp = client.put(f"{B}/{first.isbn13}", json={"average_rating": 4.9}, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["counts"]["updated"] == 1, resp.text
    item = col.get(first.isbn13)
    assert item.metadata["average_rating"] == 4.9 and item.text == f"{first.title}. {first.description}"
    resp = client.put(f"{B}/{first.isbn13}", json={"description": "A new blurb."}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert col.get(first.isbn13).text == f"{first.title}. A new blurb."
    # what cannot be done says what to send instead
    resp = client.put(f"{B}/{first.isbn13}", json={"text": "x"}, headers=AUTH)
    assert resp.status_code == 400
    assert "keeps no field 'text'" in resp.json()["error"] and "title, description" in resp.json()["error"]
    col.store.upsert_items([Item("legacy-1", "Old. Words.", {"title": "Old"})])  # kept no source
    resp = client.put(f"{B}/legacy-1", json={"average_rating": 3.0}, headers=AUTH)
    assert resp.status_code == 400 and "give description in the body" in resp.json()["error"]
    resp = client.put(f"{B}/legacy-1", json={"description": "New words."}, headers=AUTH)
    assert resp.status_code == 200 and col.get("legacy-1").text == "Old. New words."


# --- issue 17.1: the demo never deletes, and goes where it is told ----------------------------------------
@pytest.mark.slow  # four CLI processes
def test_demo_never_deletes_items_and_honours_the_store(
    home: Path, tmp_path: Path, raw_books: pd.DataFrame, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMBEDSCOPE_STORE", raising=False)
    books = raw_books[raw_books.description != ""]
    demo_csv = _csv(books.head(20), tmp_path / "demo.csv")
    kw = {"id_field": "isbn13", "template": TEMPLATE, "metadata": ["title"]}
    Collection.create_from("books", _csv(books.head(30), tmp_path / "mine.csv"), **kw)
    env = {"EMBEDSCOPE_STORE": ""}
    proc = _cli(home, "demo", "--data", str(demo_csv), "-e", "bm25", env=env)
    assert proc.returncode == 2 and "--replace" in proc.stderr and "-c NEW_NAME" in proc.stderr, proc.stderr
    assert len(Collection.open("books")) == 30
    # EMBEDSCOPE_STORE names PostgreSQL: an embedded `books` is not silently used (nor changed)
    proc = _cli(home, "demo", "--data", str(demo_csv), "-e", "bm25", env={"EMBEDSCOPE_STORE": pg_database})
    assert proc.returncode == 2 and "EMBEDSCOPE_STORE" in proc.stderr, proc.stderr
    proc = _cli(
        home,
        "demo",
        "--data",
        str(demo_csv),
        "-e",
        "bm25",
        "-c",
        "books-pg",
        env={"EMBEDSCOPE_STORE": pg_database},
    )
    assert proc.returncode == 0, proc.stderr
    pg = Collection.open("books-pg")
    assert len(pg) == 20 and pg.location == redact(pg_database) and pg.field_types()["title"] == "text"
    proc = _cli(home, "demo", "--data", str(demo_csv), "-e", "bm25", "--replace", env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(Collection.open("books")) == 20


# --- issue 17.3: vectors reused by the hash of the text the encoder saw ----------------------------------
def test_vectors_are_reused_across_metadata_changes_and_index_only_versions(
    store_home: Path, tmp_path: Path, raw_books: pd.DataFrame
) -> None:
    from embedscope.cli import app

    books = raw_books.head(60)
    path = _csv(books, tmp_path / "b.csv")
    col, _ = Collection.create_from("b", path, id_field="isbn13", template=TEMPLATE, metadata=["title"])
    lsa = {"n_components": 8}
    first = col.embed("lsa", lsa)
    assert first.stats["encoded"] == 60
    # a re-ingest that only changes --metadata changes no document: nothing is re-encoded
    counts = col.ingest(path, id_field="isbn13", template=TEMPLATE, metadata=["title", "authors"])
    assert counts["updated"] == 60
    again = col.embed("lsa", lsa)
    assert (again.stats["encoded"], again.stats["reused"]) == (0, 60)
    assert col.is_current("lsa")
    # a version that only changes the index copies every vector of the version with the same setup
    exact = col.embed("lsa", lsa, version="lsa-exact", index="exact")
    assert (exact.stats["encoded"], exact.stats["reused"], exact.stats["reused_from"]) == (0, 60, "lsa")
    assert np.array_equal(np.asarray(col.vectors("lsa")[1]), np.asarray(col.vectors("lsa-exact")[1]))
    result = CliRunner().invoke(
        app, ["embed", "b", "-e", "lsa", "-p", "n_components=8", "-v", "lsa-f16", "-i", "dtype=f16"]
    )
    assert result.exit_code == 0 and "0 encoded, 60 reused" in " ".join(result.output.split()), result.output
    # another encoder setup reuses nothing; a changed document is the one encoded
    assert col.embed("lsa", {"n_components": 9}, version="lsa9").stats["encoded"] == 60
    changed = books.copy()
    changed.loc[0, "description"] = "A different blurb entirely."
    col.ingest(_csv(changed, tmp_path / "c.csv"))  # the stored spec: same id field, template, metadata
    assert not col.is_current("lsa") and col.changes_since("lsa")["changed"] == [books.isbn13.iloc[0]]
    assert col.embed("lsa", lsa, version="lsa-exact").stats["encoded"] == 1
