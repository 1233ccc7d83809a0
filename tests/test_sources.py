"""Readers keep what the file says: ids exactly as written, every row whole, metadata as JSON values;
anything they cannot keep is a one-line error naming where. Properties are checked with hypothesis."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BOOKS_CSV
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedscope import Collection
from embedscope.errors import EmbedscopeError
from embedscope.sources import MAX_TEXT_CHARS, IngestSpec, TextSpec, load_items, read_table, rows_to_items

TEMPLATE = "{title}. {description}"


def _items(path: Path, id_field: str = "id", **kwargs):  # noqa: ANN202
    items, _ = load_items(path, id_field=id_field, **kwargs)
    return items


# --- ids ---------------------------------------------------------------------------------------------
def test_isbn10_ids_of_the_real_books_keep_their_leading_zeros(tmp_path: Path) -> None:
    """Defect 2 of issue 13, with the issue's own file: the first 1,000 books, whose ISBN-10s are
    all digits (no 'X'), were read as numbers and `0002005883` became `2005883`."""
    if not BOOKS_CSV.exists():
        pytest.skip("shared books data absent")
    raw = pd.read_csv(BOOKS_CSV, dtype=str, keep_default_na=False).head(1000)
    digits = raw[raw.isbn10.str.isdigit()]
    csv_path = tmp_path / "books.csv"
    digits.to_csv(csv_path, index=False)
    assert digits.isbn10.str.startswith("0").sum() > 100, "the sample must hold ISBN-10s with leading zeros"
    items = _items(csv_path, id_field="isbn10", template=TEMPLATE, metadata=["title"])
    assert [i.id for i in items] == digits.isbn10.tolist()
    assert items[0].id == "0002005883"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_ids_are_strings_exactly_as_written(tmp_path: Path, fmt: str) -> None:
    ids = ["007", "0007", "7", "1e3", "NA", "null", "0x1F", " padded "]
    frame = pd.DataFrame({"id": ids, "text": [f"item {n}" for n in range(len(ids))]})
    path = tmp_path / f"items.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    else:
        frame.to_parquet(path)
    assert [i.id for i in _items(path, text="text")] == ids


def test_numeric_ids_in_json_and_parquet_have_no_float_tail(tmp_path: Path) -> None:
    jsonl = tmp_path / "n.jsonl"
    jsonl.write_text('{"id": 7, "text": "a"}\n{"id": 12345678901234567890, "text": "b"}\n')
    assert [i.id for i in _items(jsonl, text="text")] == ["7", "12345678901234567890"]
    parquet = tmp_path / "n.parquet"
    pq.write_table(pa.table({"id": pa.array([7, None], pa.int64()), "text": ["a", "b"]}), parquet)
    with pytest.raises(EmbedscopeError, match="row 2 has no value"):
        _items(parquet, text="text")
    pq.write_table(pa.table({"id": pa.array([7, 8], pa.int64()), "text": ["a", "b"]}), parquet)
    assert [i.id for i in _items(parquet, text="text")] == ["7", "8"]


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_id_is_refused(blank: str) -> None:
    frame = pd.DataFrame({"id": ["a", blank], "text": ["x", "y"]})
    with pytest.raises(EmbedscopeError, match="row 2 has no value"):
        load_items(frame, text="text")


# --- rows --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("id,text,year\n1,a,2000\n2,b\n3,c,2001\n", 3),  # too few: pandas pads with nulls
        ("id,text,year\n1,a,2000\n2,b,2001,x\n", 3),  # too many
        ('id,text,year\n1,"a\nlong, quoted\ntext",2000\n2,b\n', 5),  # a record spanning lines
    ],
)
def test_a_ragged_csv_row_is_an_error_naming_its_line(tmp_path: Path, body: str, line: int) -> None:
    path = tmp_path / "r.csv"
    path.write_text(body)
    with pytest.raises(EmbedscopeError, match=f"malformed CSV: line {line} has"):
        read_table(path)


def test_empty_text_is_an_error_not_a_lone_full_stop() -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "title": ["Dune", None], "description": ["Sand.", "  "]})
    with pytest.raises(EmbedscopeError, match=r"1 item\(s\) have empty text, e.g. 'b'"):
        load_items(frame, template=TEMPLATE)
    assert TextSpec(template=TEMPLATE).render({"title": "Dune", "description": None}) == "Dune."


def test_a_text_over_the_limit_is_an_error() -> None:
    frame = pd.DataFrame({"id": ["a", "big"], "text": ["short", "x" * (MAX_TEXT_CHARS + 1)]})
    with pytest.raises(EmbedscopeError, match="longer than 1,000,000 characters, e.g. 'big'"):
        load_items(frame, text="text")


# --- metadata ----------------------------------------------------------------------------------------
def test_parquet_lists_timestamps_and_nulls_become_json_values(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    table = pa.table(
        {
            "id": ["a", "b"],
            "text": ["one", "two"],
            "tags": pa.array([["x", "y"], []], pa.list_(pa.string())),
            "scores": pa.array([[1.5, None], None], pa.list_(pa.float64())),
            "seen": pa.array([dt.datetime(2024, 5, 1, 12, 30), None], pa.timestamp("us")),
            "day": pa.array([dt.date(2020, 1, 2), None], pa.date32()),
            "info": pa.array([{"k": 1}, None], pa.struct([("k", pa.int64())])),
        }
    )
    pq.write_table(table, path)
    a, b = _items(path, text="text")
    assert a.metadata == {
        "text": "one",
        "tags": ["x", "y"],
        "scores": [1.5, None],
        "seen": "2024-05-01T12:30:00",
        "day": "2020-01-02",
        "info": {"k": 1},
    }
    assert b.metadata == {"text": "two", "tags": [], "scores": None, "seen": None, "day": None, "info": None}
    json.dumps([a.metadata, b.metadata], allow_nan=False)  # storable as strict JSON


def test_bytes_and_infinity_are_errors_naming_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bin.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", "y"], "blob": [b"\x00\x01", b"\x02"]}), path)
    with pytest.raises(EmbedscopeError, match="row 1 .*field 'blob' holds binary data"):
        _items(path, text="text")
    assert _items(path, text="text", metadata=[])[0].metadata == {}  # leaving it out works
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "ratio": [1.0, math.inf]})
    with pytest.raises(EmbedscopeError, match=r"row 2 \(id 'b'\), field 'ratio' is inf"):
        load_items(frame, text="text")
    nan = pd.DataFrame({"id": ["a"], "text": ["x"], "ratio": [math.nan]})
    assert load_items(nan, text="text", metadata=["ratio"])[0][0].metadata == {"ratio": None}


# --- properties (hypothesis) -------------------------------------------------------------------------
# ids and texts as a person could write them in any of the three formats: any printable text, but
# not blank (blank ids are refused) and without NUL/surrogates/line separators (not text)
_TEXT_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
_ids = st.one_of(
    # a column of all-digit ids (leading zeros included) is the one a number parser destroys
    st.lists(st.from_regex(r"[0-9]{1,8}", fullmatch=True), min_size=1, max_size=8, unique=True),
    st.lists(
        st.text(_TEXT_CHARS, min_size=1, max_size=12).filter(lambda s: s.strip()),
        min_size=1,
        max_size=8,
        unique=True,
    ),
)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(_TEXT_CHARS, max_size=10),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=_ids, fmt=st.sampled_from(["csv", "jsonl", "parquet"]))
def test_any_ids_round_trip_exactly(tmp_path: Path, ids: list[str], fmt: str) -> None:
    path = tmp_path / f"p.{fmt}"
    texts = [f"text {n}" for n in range(len(ids))]
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "text"])
            writer.writerows(zip(ids, texts, strict=True))
    elif fmt == "jsonl":
        path.write_text(
            "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts, strict=True))
        )
    else:
        pq.write_table(pa.table({"id": ids, "text": texts}), path)
    assert [i.id for i in _items(path, text="text")] == ids


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), _values), min_size=1, max_size=6))
def test_records_become_items_or_one_clear_error(rows: list[dict]) -> None:
    """Whatever the records hold, the reader answers with items whose metadata is strict JSON, one
    type per field (numbers stay numbers in a field of numbers; in a field that also holds text or
    booleans they are their text), or with an EmbedscopeError; nothing else escapes."""
    records = [{"id": str(n), "text": f"t{n}", **r} for n, r in enumerate(rows)]
    try:
        items, _ = load_items(records, text="text")
    except EmbedscopeError:
        return
    for item, rec in zip(items, records, strict=True):
        json.dumps(item.metadata, allow_nan=False)
        for key, value in item.metadata.items():
            given = rec.get(key)
            if not isinstance(given, int | float) or isinstance(given, bool):
                continue
            column = [r.get(key) for r in records if r.get(key) is not None]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in column):
                assert value == given
            else:
                assert value == (repr(given) if isinstance(given, float) else str(given))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(widths=st.lists(st.integers(1, 5), min_size=2, max_size=8))
def test_csv_rows_of_the_wrong_width_are_always_caught(tmp_path: Path, widths: list[int]) -> None:
    path = tmp_path / "w.csv"
    header, rows = widths[0], widths[1:]
    lines = [",".join(f"h{i}" for i in range(header))] + [",".join(f"v{i}" for i in range(w)) for w in rows]
    path.write_text("\n".join(lines) + "\n")
    bad = [n for n, w in enumerate(rows, 2) if w != header]
    if bad:
        with pytest.raises(EmbedscopeError, match=f"line {bad[0]} has"):
            read_table(path)
    else:
        assert len(read_table(path)) == len(rows)


# --- through the collection ----------------------------------------------------------------------------
def test_collection_keeps_ids_and_refuses_another_id_field(home: Path, books_frame: pd.DataFrame) -> None:
    col = Collection.create("ids")
    raw = books_frame.head(30).astype({"isbn10": str})
    col.ingest(raw, id_field="isbn13", template=TEMPLATE, metadata=["title"])
    with pytest.raises(EmbedscopeError, match="identifies items by 'isbn13', not 'isbn10'"):
        col.ingest(raw, id_field="isbn10", template=TEMPLATE, metadata=["title"])
    assert len(col) == 30  # not doubled
    col.ingest(raw, id_field="isbn10", template=TEMPLATE, metadata=["title"], replace=True)
    assert len(col) == 30 and col.store.get_setting("id_field") == "isbn10"


def test_rows_to_items_names_a_missing_id_field() -> None:
    with pytest.raises(EmbedscopeError, match="id field 'isbn' not found"):
        spec = IngestSpec(id_field="isbn", text=TextSpec(field="text"))
        rows_to_items(pd.DataFrame({"id": ["a"], "text": ["x"]}), spec)
