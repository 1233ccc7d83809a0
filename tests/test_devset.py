"""The books development set (bench/data/vibe) is consistent with the catalogue it judges: every
judged book exists, every query has something worth finding, ids and kinds are sound, editions of
one work carry one grade, and every recorded catalogue browse still matches books."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import devset  # noqa: E402


@pytest.fixture(scope="module")
def books() -> pd.DataFrame:
    if not devset.BOOKS.exists():
        pytest.skip(f"real books data not found at {devset.BOOKS} (../shared/data is absent)")
    return devset.books_frame()


@pytest.fixture(scope="module")
def qrels() -> list[tuple[str, str, int]]:
    return devset.load_qrels()


def test_queries_have_unique_ids_and_known_kinds() -> None:
    queries = devset.load_queries()  # raises on a repeated id or an unknown kind
    assert len(queries) >= 60
    kinds = Counter(q["kind"] for q in queries.values())
    assert kinds["vibe"] >= 30 and kinds["request"] >= 24, kinds
    assert all(q["text"].strip() for q in queries.values())


def test_judgements_are_unique_graded_and_about_known_queries(qrels: list[tuple[str, str, int]]) -> None:
    queries = devset.load_queries()
    pairs = Counter((q, d) for q, d, _ in qrels)
    assert [p for p, n in pairs.items() if n > 1] == []
    assert {s for _, _, s in qrels} <= {0, 1, 2}
    assert {q for q, _, _ in qrels} == set(queries), (
        "a query without judgements, or judgements without a query"
    )


def test_every_judged_book_is_in_the_catalogue(
    books: pd.DataFrame, qrels: list[tuple[str, str, int]]
) -> None:
    known = set(books.isbn13)
    assert sorted({d for _, d, _ in qrels} - known) == []


def test_every_query_has_a_book_worth_finding(qrels: list[tuple[str, str, int]]) -> None:
    best: dict[str, int] = defaultdict(int)
    for q, _, s in qrels:
        best[q] = max(best[q], s)
    assert sorted(q for q in devset.load_queries() if best[q] < 1) == []


def test_editions_of_one_work_share_a_grade(books: pd.DataFrame, qrels: list[tuple[str, str, int]]) -> None:
    # the title up to a bracket, subtitle kept: "Pirates of the Caribbean: The Sword of Cortes" and
    # "...: The Siren Song" are two books of one series (graded 2 and 1 for l05), not two editions
    def edition_key(title: object, authors: object) -> str:
        return devset.work_key(str(title).split("(")[0].replace(":", " "), authors)

    key = dict(zip(books.isbn13, map(edition_key, books.title, books.authors), strict=True))
    grades: dict[tuple[str, str], set[int]] = defaultdict(set)
    for q, d, s in qrels:
        grades[(q, key[d])].add(s)
    assert {k: g for k, g in grades.items() if len(g) > 1} == {}


def test_browses_name_known_queries_and_fields() -> None:
    queries = devset.load_queries()
    browses: list[dict[str, Any]] = devset.load_browses()
    assert browses, "browse.jsonl is missing"
    fields = {*devset.BROWSE_FIELDS, "max_pages"}
    assert [b for b in browses if b["query-id"] not in queries or not set(b["where"]) <= fields] == []
    # long known-item requests are pooled by title/author searches for the target's editions
    # (bench/data/vibe/LONG.md), not by browses
    browsed = {q for q, v in queries.items() if v["kind"] != "long"}
    assert {b["query-id"] for b in browses} == browsed, "every vibe list and request is browsed at least once"


@pytest.mark.slow
def test_every_browse_still_matches_books(books: pd.DataFrame) -> None:
    """The recorded browses reproduce: each one finds books (113 regular expressions over 5,197
    descriptions: several seconds on a busy 2-core machine)."""
    assert [b for b in devset.load_browses() if not devset.browse_hits(books, b["where"], 1)] == []


def test_beir_folders_keep_kinds_and_text_fields(books: pd.DataFrame, tmp_path: Path) -> None:
    from embedscope.sources import load_beir, read_jsonl

    plain = devset.write_folder(tmp_path, "books-vibe")
    fields = devset.write_folder(tmp_path, "books-vibe-fields")
    ds = load_beir(plain)
    assert len(ds.corpus) == len(books) and set(ds.qrels) == set(devset.load_queries())
    kinds = {r["_id"]: r["metadata"]["kind"] for r in read_jsonl(plain / "queries.jsonl")}
    assert kinds == {q: v["kind"] for q, v in devset.load_queries().items()}
    row = books.iloc[0]
    doc = load_beir(fields).corpus[row.isbn13]
    assert row.categories in doc["text"] and row.authors.split(";")[0] in doc["text"]


def test_long_request_files_join_the_set_with_their_kind(tmp_path: Path) -> None:
    """The other kind's files (long-queries.jsonl / long-qrels.tsv), when present, are read with the
    main ones; a kind outside KINDS or an id used twice is an error, not a silent merge."""
    import json
    import shutil

    for name in ("queries.jsonl", "qrels.tsv"):
        shutil.copy(devset.DEVSET / name, tmp_path / name)
    long_q = {"_id": "l01", "text": "a book I read years ago " * 10, "metadata": {"kind": "long"}}
    (tmp_path / "long-queries.jsonl").write_text(json.dumps(long_q) + "\n")
    (tmp_path / "long-qrels.tsv").write_text("query-id\tcorpus-id\tscore\nl01\t9780002005883\t2\n")
    queries = devset.load_queries(tmp_path)
    assert queries["l01"]["kind"] == "long" and queries["v01"]["kind"] == "vibe"
    assert ("l01", "9780002005883", 2) in devset.load_qrels(tmp_path)
    (tmp_path / "long-queries.jsonl").write_text(json.dumps({"_id": "l01", "text": "a book"}) + "\n")
    assert devset.load_queries(tmp_path)["l01"]["kind"] == "long", "the long file's kind by default"
    (tmp_path / "long-queries.jsonl").write_text(json.dumps(long_q | {"_id": "v01"}) + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        devset.load_queries(tmp_path)
    (tmp_path / "long-queries.jsonl").write_text(json.dumps(long_q | {"metadata": {"kind": "essay"}}) + "\n")
    with pytest.raises(ValueError, match="kind 'essay'"):
        devset.load_queries(tmp_path)
