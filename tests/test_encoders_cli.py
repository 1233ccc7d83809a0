"""CLI: `embedscope encoders`, `words`, `compare` (and compare.py) on a real books collection."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from embedscope.cli import _load_commands
from embedscope.cli.app import app

_load_commands()
runner = CliRunner()


def test_encoders_lists_all_with_params() -> None:
    res = runner.invoke(app, ["encoders", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert {"bm25", "tfidf", "lsa", "lda", "word2vec", "torch_word2vec", "static", "minilm"} <= set(rows)
    assert rows["word2vec"]["params"]["sg"] == 0
    table = runner.invoke(app, ["encoders"])
    assert table.exit_code == 0 and "bm25" in table.stdout and "k1=1.5" in table.stdout
    assert "hybrid create" in table.stdout  # hybrid is a search recipe now, and the listing says how


@pytest.fixture
def books_w2v(home: Path, books_frame: pd.DataFrame):  # noqa: ANN201
    from embedscope.collection import Collection

    col = Collection.create("books")
    col.ingest(
        books_frame.head(600),
        id_field="isbn13",
        template="{title}. {description}",
        metadata=["title", "authors"],
    )
    col.embed("word2vec", {"epochs": 20, "min_count": 3})
    col.embed("tfidf")
    return col


@pytest.mark.slow
def test_words_and_compare_on_a_collection(books_w2v) -> None:  # noqa: ANN001
    res = runner.invoke(app, ["words", "books", "--neighbors", "novel", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["version"] == "word2vec" and len(out["words"]) == 10
    res = runner.invoke(app, ["words", "books", "--similarity", "novel,book"])
    assert res.exit_code == 0 and "similarity(novel, book)" in res.stdout
    res = runner.invoke(app, ["words", "books", "--analogy", "king,man,woman", "-k", "3", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["words"]) == 3
    res = runner.invoke(app, ["words", "books", "--neighbors", "qwertyuiop"])
    assert res.exit_code == 2 and "not in the word2vec vocabulary" in res.output
    res = runner.invoke(app, ["words", "books", "--encoder", "torch_word2vec", "--neighbors", "novel"])
    assert res.exit_code == 2 and "no torch_word2vec version" in res.output

    title = books_w2v.items()[5].metadata["title"]
    res = runner.invoke(
        app, ["compare", "books", title, "--encoders", "bm25,tfidf,lsa,word2vec", "-k", "3", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    by = {r["encoder"]: r for r in out["runs"]}
    assert by["tfidf"]["source"] == "version tfidf" and by["bm25"]["source"] == "on the fly"
    assert title in [h["title"] for h in by["bm25"]["hits"]]
    assert title in [h["title"] for h in by["tfidf"]["hits"]]
    assert not by["bm25"]["error"] and not by["tfidf"]["error"] and not by["word2vec"]["error"]
    # lsa may legitimately report "no known terms" (its min_df=2 drops words seen once)
    assert all(r["encode_ms"] is not None and 1 <= len(r["hits"]) <= 3 for r in out["runs"] if not r["error"])
    # a sparse retriever returns only documents sharing a term with the query (no zero-score filler)
    assert all(h["score"] > 0 for r in out["runs"] for h in r["hits"] if r["encoder"] in ("bm25", "tfidf"))
    table = runner.invoke(app, ["compare", "books", "the of and", "--encoders", "bm25,lsa", "-k", "2"])
    assert table.exit_code == 0 and "bm25" in table.stdout and "lsa" in table.stdout
    res = runner.invoke(app, ["compare", "books", "the of and", "--encoders", "bm25,lsa", "--json"])
    assert all("no terms known" in r["error"] for r in json.loads(res.stdout)["runs"])
    bad = runner.invoke(app, ["compare", "books", "x", "--encoders", "bm99"])
    assert bad.exit_code == 2 and "unknown encoder" in bad.output


@pytest.mark.slow
def test_compare_by_encoder_uses_stored_versions_and_fits_the_rest(books_300) -> None:  # noqa: ANN001
    from embedscope.compare import compare

    item = books_300.items()[3]
    out = compare(books_300, item.metadata["title"], ["bm25", "minilm", "hybrid"], k=5, by_encoder=True)
    by = {c.target: c for c in out.columns}
    assert by["minilm"].source == "version minilm" and by["bm25"].source == "on the fly"
    assert by["bm25"].result.hits[0].id == item.id  # its own title: BM25's best match
    # the hybrid recipe needs a stored sparse version, which this collection does not have
    assert by["hybrid"].result is None and "bm25" in by["hybrid"].error
    assert set(out.overlap) == {"bm25|minilm"}
