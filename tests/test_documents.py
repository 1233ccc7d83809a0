"""Documents built from an item's fields (`embed --document`): the template and its boosts, the
stored configuration, row hashes that are the hash of the encoded text, re-encoding only what a
document reads, and versions written before documents existed reused as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from embedscope import Collection
from embedscope.cli import _load_commands
from embedscope.cli.app import app
from embedscope.encoders.document import Document, document_hash
from embedscope.errors import EmbedscopeError

_load_commands()
runner = CliRunner()
META = ["title", "authors", "categories", "published_year"]
FIELDS = "{title}. {authors}. {categories}. {text}"


# --- the template ---------------------------------------------------------------------------------------
def test_render_fields_boosts_and_missing_values() -> None:
    doc = Document.parse(FIELDS)
    meta = {"title": "Emma", "authors": "Jane Austen", "categories": "Fiction"}
    assert (
        doc.render("Emma. A comedy of manners.", meta)
        == "Emma. Jane Austen. Fiction. Emma. A comedy of manners."
    )
    # a missing field goes with the separator after it; a list is joined
    assert doc.render("t", {"title": "Emma", "authors": None, "categories": ["A", "B"]}) == "Emma. A, B. t"
    assert doc.render("t", {"title": None, "authors": float("nan"), "categories": ""}) == "t"
    # a boost writes the field that many times (BM25F with whole-number weights)
    assert Document.parse("{title^3} {text}").render("body", {"title": "Emma"}) == "Emma Emma Emma body"
    assert doc.fields() == ["title", "authors", "categories", "text"]
    assert Document.parse("{text}").is_default and Document.parse(None).is_default


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("no field at all", "names no field"),
        ("{title:>10}", "no format specs"),
        ("{title^0} {text}", "between 1 and 10"),
        ("{title^11} {text}", "between 1 and 10"),
        ("{title", "expected '}'"),
        ("{ti tle^x}", "is not a field name"),
    ],
)
def test_bad_templates_are_one_line_errors(template: str, message: str) -> None:
    with pytest.raises(EmbedscopeError, match=message):
        Document.parse(template)


# --- versions -------------------------------------------------------------------------------------------
@pytest.fixture
def books(books_frame: pd.DataFrame, home: Path) -> tuple[Collection, pd.DataFrame]:
    frame = books_frame.head(120).dropna(subset=["description"]).copy()
    col = Collection.create("books")
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=META)
    return col, frame


def test_the_document_is_stored_and_each_row_hash_is_the_hash_of_its_text(
    books: tuple[Collection, pd.DataFrame], home: Path
) -> None:
    col, _ = books
    col.embed("bm25", version="bm25f", document="{title^2} {authors} {categories} {text}")
    col.close()
    again = Collection.open("books")  # a new process would see the same
    info = {v.name: v for v in again.versions()}["bm25f"]
    assert info.document == "{title^2} {authors} {categories} {text}"
    lv = again.load_version("bm25f")
    item = again.get(lv.data.ids[0])
    text = f"{item.metadata['title']} {item.metadata['title']} {item.metadata['authors']} "
    assert again.document("bm25f").render(item.text, item.metadata).startswith(text)
    assert lv.data.hashes[0] == document_hash(again.document("bm25f").render(item.text, item.metadata))
    # the title counted twice is what BM25 indexed: a title word scores higher than in plain bm25
    again.embed("bm25")
    word = "gilead"
    plain = again.search(word, 1, version="bm25", collapse=False)[0]
    boosted = again.search(word, 1, version="bm25f", collapse=False)[0]
    assert plain.id == boosted.id and boosted.score > plain.score
    # and `info` says what each version encodes
    listed = {v["name"]: v for v in again.info()["versions"]}
    assert listed["bm25f"]["document"] == info.document and listed["bm25"]["document"] is None


def test_a_metadata_change_re_encodes_only_versions_whose_document_reads_it(
    books: tuple[Collection, pd.DataFrame],
) -> None:
    col, frame = books
    col.embed("bm25")
    col.embed("bm25", version="bm25-cat", document="{text} {categories}")
    col.embed("bm25", version="bm25-authors", document="{text} {authors}")
    changed = frame.copy()
    changed.loc[changed.index[0], "categories"] = "Detective and mystery stories"
    assert (
        col.ingest(changed, id_field="isbn13", template="{title}. {description}", metadata=META)["updated"]
        == 1
    )
    stale = {v["name"]: v["stale"] for v in col.info()["versions"]}
    assert stale == {"bm25": False, "bm25-authors": False, "bm25-cat": True}
    assert col.embed("bm25").stats["encoded"] == 0
    assert col.embed("bm25", version="bm25-authors").stats["encoded"] == 0
    assert col.embed("bm25", version="bm25-cat").stats["encoded"] == 1
    # a text change reaches every version
    changed.loc[changed.index[1], "description"] = "A new description."
    col.ingest(changed, id_field="isbn13", template="{title}. {description}", metadata=META)
    assert [col.embed("bm25", version=v).stats["encoded"] for v in ("bm25", "bm25-cat")] == [1, 1]


def test_a_new_document_re_encodes_everything_and_none_keeps_the_stored_one(
    books: tuple[Collection, pd.DataFrame],
) -> None:
    col, frame = books
    col.embed("bm25", version="b", document="{text} {authors}")
    assert col.embed("bm25", version="b").stats["encoded"] == 0  # None: the version's own document
    assert col.embed("bm25", version="b", document="{text} {categories}").stats["encoded"] == len(frame)
    assert col.embed("bm25", version="b", document="{text}").document is None  # back to the item's text
    with pytest.raises(EmbedscopeError, match="unknown field.*isbn10"):
        col.embed("bm25", version="c", document="{isbn10} {text}")


def test_versions_written_before_documents_existed_are_reused_without_encoding(
    books: tuple[Collection, pd.DataFrame],
) -> None:
    """Their rows hold the item's hash (text and metadata): an unchanged item keeps its vector and its
    row gets the document hash. Simulated by writing such a version through the store."""
    from embedscope.store.base import VersionData, fingerprint

    col, _ = books
    info = col.embed("bm25")
    lv = col.load_version("bm25")
    items = {i.id: i for i in col.items()}
    legacy_hashes = [items[i].hash for i in lv.data.ids]
    info.fingerprint = fingerprint(zip(lv.data.ids, legacy_hashes, strict=True))
    col.store.write_version(info, VersionData(lv.data.ids, legacy_hashes, lv.data.vectors), lv.encoder, None)
    assert not {v["name"]: v for v in col.info()["versions"]}["bm25"]["stale"]
    again = col.embed("bm25")
    assert again.stats["encoded"] == 0 and again.stats["reused"] == len(items)
    assert col.load_version("bm25").data.hashes[0] == document_hash(items[lv.data.ids[0]].text)


def test_cli_embed_document_and_hybrid_documents(books: tuple[Collection, pd.DataFrame], home: Path) -> None:
    col, _ = books
    col.close()
    res = runner.invoke(
        app, ["embed", "books", "-e", "bm25", "-v", "bm25f", "--document", "{title^2} {text}"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["info", "books", "--json"])
    assert {v["name"]: v["document"] for v in json.loads(res.output)["versions"]} == {
        "bm25f": "{title^2} {text}"
    }
    # errors are EmbedscopeErrors, which `embedscope` prints in one line and exits 2 on
    res = runner.invoke(app, ["embed", "books", "-e", "bm25", "--document", "{nope}"])
    assert isinstance(res.exception, EmbedscopeError) and "unknown field(s) nope" in str(res.exception)
    res = runner.invoke(app, ["embed", "books", "-e", "hybrid", "--document", "{text}"])
    assert isinstance(res.exception, EmbedscopeError) and "dense_document" in str(res.exception)


def test_http_embed_job_takes_a_document_and_checks_stages_first(
    books: tuple[Collection, pd.DataFrame], home: Path
) -> None:
    """The embed job's body names the document (stored with the version, shown by the collection's
    info); a bad template or a bad recipe stage is a 4xx before any job starts."""
    import time

    from fastapi.testclient import TestClient

    from embedscope.serve import create_app

    col, _ = books
    col.close()
    token = "test-token-0123456789abcdef"
    client = TestClient(create_app(["books"], root=home, token=token))
    auth = {"Authorization": f"Bearer {token}"}
    url = "/api/collections/books"
    job = client.post(
        f"{url}/versions/bm25f/embed", json={"encoder": "bm25", "document": "{title^2} {text}"}, headers=auth
    )
    assert job.status_code == 202, job.text
    deadline = time.time() + 60
    while (state := client.get(f"/api/jobs/{job.json()['id']}").json())["status"] in ("queued", "running"):
        assert time.time() < deadline, state
        time.sleep(0.1)
    assert state["status"] == "done", state
    versions = {v["name"]: v for v in client.get(url).json()["versions"]}
    assert versions["bm25f"]["document"] == "{title^2} {text}"
    bad = client.post(f"{url}/versions/x/embed", json={"encoder": "bm25", "document": "{title"}, headers=auth)
    assert bad.status_code == 400 and "expected '}'" in bad.json()["error"]
    bad = client.post(
        f"{url}/versions/x/embed",
        json={"encoder": "hybrid", "params": {"stages": {"rm3": {"docs": 0}}}},
        headers=auth,
    )
    assert bad.status_code == 400 and "docs=0" in bad.json()["error"]
