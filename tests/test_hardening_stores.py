"""One catalogue of bad inputs and faults, run on both stores (embedded and PostgreSQL) through the
Python API and over HTTP, and the CLI for ids (issue 16), so that the two can never drift apart in
what they accept: every case must end the same way on both, with the same message.

Inputs: ids that are not text or integers, ids and texts with control characters or lone
surrogates, non-finite metadata, empty and overlong texts, lookups of ids no item can have. Faults:
a busy writer lock, a version write that fails midway, a version damaged on disk or in the
database (files or table gone, rows swapped, counts that disagree), each refused by search with the
repair named, found by `check`, and repaired by the command it prints.

Cheap: 30 real books with TF-IDF, one collection per store for the module."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import live_revisions_only, new_database
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedscope import Collection
from embedscope.errors import ConflictError, DamagedError, NotFoundError
from embedscope.serve import create_app
from embedscope.sources import MAX_TEXT_CHARS
from embedscope.store.postgres import PostgresStore

TOKEN = "catalogue-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
STORES = ["embedded", "postgres"]
NAME = "cat"
ITEMS = "/api/collections/cat/items"


@dataclass
class Served:
    col: Collection
    http: TestClient
    root: Path


@pytest.fixture(scope="module")
def stores(
    books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Served]]:
    books = books_frame.head(30)
    records = [
        {
            "id": str(b.isbn13),
            "text": f"{b.title}. {b.description}",
            "title": b.title,
            "year": b.published_year,
        }
        for b in books.itertuples()
    ]
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EMBEDSCOPE_STORE", raising=False)
        for kind in STORES:
            root = tmp_path_factory.mktemp(f"catalogue-{kind}")
            url = new_database(request.getfixturevalue("pg_server")) if kind == "postgres" else None
            col = Collection.create(NAME, root=root, store=url)
            col.ingest(records, id_field="id", text="text")
            col.embed("tfidf", index="exact")
            app = create_app([NAME], root=root, token=TOKEN, warm=False)
            out[kind] = Served(col, TestClient(app, raise_server_exceptions=False), root)
    assert isinstance(out["postgres"].col.store, PostgresStore)
    yield out
    for served in out.values():
        served.http.close()


# --- bad input: (case, record fields beside the text, expected: None = stored, else words of the error)
def _record(case: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"ok-{case}", "text": f"a book about {case}", **fields}


INPUTS: list[tuple[str, dict[str, Any], str | None]] = [
    ("id-list", _record("id-list", id=[1, 2]), "is a list; ids are text or integers"),
    ("id-object", _record("id-object", id={"a": 1}), "is an object; ids are text or integers"),
    ("id-true", _record("id-true", id=True), "is a boolean; ids are text or integers"),
    ("id-decimal", _record("id-decimal", id=7.5), "is a decimal number; ids are text or integers"),
    ("id-nul", _record("id-nul", id="a\x00b"), "holds NUL (U+0000) at position 1"),
    ("id-newline", _record("id-newline", id="a\nb"), "holds a control character (U+000A)"),
    ("id-escape", _record("id-escape", id="\x1b[31mred"), "holds a control character (U+001B)"),
    ("id-c1", _record("id-c1", id="a\x85b"), "holds a control character (U+0085)"),
    ("id-surrogate", _record("id-surrogate", id="a\ud800"), "holds a lone surrogate (U+D800)"),
    ("id-blank", _record("id-blank", id="   "), "has no value (or only spaces) in id field 'id'"),
    ("id-missing", _record("id-missing", id=None), "has no value (or only spaces) in id field 'id'"),
    ("text-nul", _record("text-nul", text="before\x00after"), "field 'text' holds NUL (U+0000)"),
    ("text-surrogate", _record("text-surrogate", text="x\udfff"), "field 'text' holds a lone surrogate"),
    ("meta-nul", _record("meta-nul", title="T\x00"), "field 'title' holds NUL"),
    (
        "meta-nested",
        _record("meta-nested", tags=["ok", "\ud83d"]),
        "field 'tags' holds a lone surrogate",
    ),
    (
        "meta-key-nul",
        _record("meta-key-nul", **{"ti\x00tle": "T"}),
        "a field name 'ti\\x00tle' holds NUL",
    ),
    ("meta-inf", _record("meta-inf", year=math.inf), "field 'year' is inf"),
    ("text-empty", _record("text-empty", text="  "), "have empty text"),
    ("text-long", _record("text-long", text="x" * (MAX_TEXT_CHARS + 1)), "longer than 1,000,000 characters"),
    # accepted: what ids and texts may be
    ("id-int", _record("id-int", id=7), None),
    ("id-bigint", _record("id-bigint", id=2**70), None),
    ("id-unicode", _record("id-unicode", id="ok-é 漢字/slash\u00a0nbsp"), None),
    ("text-tabs", _record("text-tabs", text="a\ttabbed\nmulti-line\r\ntext"), None),
    ("meta-nan", _record("meta-nan", year=math.nan), None),
]


def _api(col: Collection, record: dict[str, Any]) -> tuple[str, str]:
    """('stored', id) or (error class, message)."""
    try:
        col.upsert([record], id_field="id", text="text")
    except Exception as exc:  # noqa: BLE001 - the outcome is what the stores are compared on
        return exc.__class__.__name__, str(exc)
    return "stored", str(record["id"])


def _http(client: TestClient, record: dict[str, Any]) -> tuple[int, str]:
    # json.dumps writes NaN/Infinity and escapes surrogates as \\udXXX, as a client may send them
    resp = client.post(ITEMS, content=json.dumps({"records": [record]}), headers=AUTH)
    return resp.status_code, resp.json().get("error", "")


@pytest.mark.parametrize(("case", "record", "says"), INPUTS, ids=[c[0] for c in INPUTS])
def test_both_stores_accept_and_refuse_the_same_input(
    stores: dict[str, Served], case: str, record: dict[str, Any], says: str | None
) -> None:
    outcomes = {}
    for kind, served in stores.items():
        before = len(served.col)
        api = _api(served.col, record)
        status, error = _http(served.http, {**record, "id": record["id"]})
        if says is None:
            assert api == ("stored", str(record["id"])), (kind, api)
            assert status == 200, (kind, error)
            item = served.col.get(str(record["id"]))
            assert item.text == record["text"].strip()
            got = served.http.get(f"{ITEMS}/{item.id}")
            assert got.status_code == 200 and got.json()["id"] == item.id
        else:
            assert api[0] == "EmbedscopeError" and says in api[1], (kind, api)
            # over HTTP a text over 1,000,000 characters is a body over the 1 MB limit
            assert (status, says in error) == ((413, False) if case == "text-long" else (400, True)), (
                kind,
                status,
                error,
            )
            assert len(served.col) == before  # nothing stored
        outcomes[kind] = (api, status, error)
    assert outcomes["embedded"] == outcomes["postgres"]  # same outcome, same words


LOOKUPS = ["a\x00b", "\ud800", "x\x1by", "", "no-such-id"]


@pytest.mark.parametrize("store", STORES)
def test_lookups_of_impossible_ids_are_not_found(stores: dict[str, Served], store: str) -> None:
    """An id no item can have is simply not there (a NUL was an error in PostgreSQL's queries)."""
    served = stores[store]
    n = len(served.col)
    for bad in LOOKUPS:
        with pytest.raises(NotFoundError):
            served.col.get(bad)
        with pytest.raises(NotFoundError):
            served.col.similar(bad, k=3)
        assert served.col.delete([bad]) == 0
    for path in ("a%00b", "x%1By", "%ED%A0%80"):
        assert served.http.get(f"{ITEMS}/{path}").status_code == 404
        assert served.http.delete(f"{ITEMS}/{path}", headers=AUTH).status_code == 404
        assert served.http.get(f"/api/collections/{NAME}/similar", params={"id": "a\x00"}).status_code == 404
    put = served.http.put(f"{ITEMS}/a%00b", json={"text": "t"}, headers=AUTH)
    assert put.status_code == 400 and "holds NUL" in put.json()["error"]
    assert len(served.col) == n


# --- property: any JSON value as an id -------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=_json)
def test_any_json_id_is_stored_as_its_text_or_refused_alike(stores: dict[str, Served], value: Any) -> None:
    """Text without control characters or surrogates, or an integer: stored as its text (the same
    on both stores); anything else: the same one-line error on both."""
    valid = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str)
        and value.strip() != ""
        and not any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in value)
    )
    outcomes = {kind: _api(s.col, {"id": value, "text": "property text"}) for kind, s in stores.items()}
    assert outcomes["embedded"] == outcomes["postgres"]
    if valid:
        assert outcomes["embedded"] == ("stored", str(value))
        for served in stores.values():
            assert served.col.get(str(value)).id == str(value)
    else:
        assert outcomes["embedded"][0] == "EmbedscopeError", outcomes


# --- faults ----------------------------------------------------------------------------------------
def _damage(col: Collection, version: str, how: str) -> None:
    """Damage a version behind the store's back, as a disk error or a careless hand would."""
    store = col.store
    revision = store.version_revision(version)
    if isinstance(store, PostgresStore):
        table = f'embedscope."{store._table(revision)}"'
        conn = store._conn()
        if how == "files":
            conn.execute(f"DROP TABLE {table}")
        elif how == "swap":
            conn.execute(
                f"UPDATE {table} t SET item_id = o.item_id FROM {table} o "
                "WHERE (t.row, o.row) IN ((0, 1), (1, 0))"
            )
        elif how == "count":
            conn.execute(f"DELETE FROM {table} WHERE row = 3")
        return
    folder = store.path / "versions" / revision
    if how == "files":
        (folder / "vectors.npz").unlink()
        return
    meta = json.loads((folder / "ids.json").read_text())
    if how == "swap":
        meta["ids"][0], meta["ids"][1] = meta["ids"][1], meta["ids"][0]
    elif how == "count":
        del meta["ids"][3], meta["hashes"][3]
    (folder / "ids.json").write_text(json.dumps(meta))


DAMAGE = [
    ("files", "missing"),
    ("swap", "hold another item's content \\(ids swapped or misaligned\\)"),
    ("count", "counts disagree"),
]


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize(("how", "says"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_version_is_refused_found_and_repaired(
    stores: dict[str, Served], store: str, how: str, says: str
) -> None:
    """Search refuses a damaged version with the repair in the message (HTTP 409, no server path),
    `check` names the damage, and the printed command repairs it; other versions keep answering."""
    served = stores[store]
    version = f"dmg-{how}"
    served.col.embed("tfidf", version=version, index="exact")
    assert served.col.check()["ok"]
    _damage(served.col, version, how)
    fresh = Collection.open(NAME, root=served.root)
    with pytest.raises(DamagedError, match=rf"version '{version}' .*damaged .*{says}") as caught:
        fresh.search("a murder mystery", version=version)
    repair = f"embedscope embed {NAME} --encoder tfidf --version {version}"
    assert repair in str(caught.value) and "--refit" in str(caught.value)
    report = {v["name"]: v for v in fresh.check()["versions"]}
    assert not report[version]["ok"] and report[version]["problems"], report[version]
    assert repair in report[version]["repair"]
    assert report["tfidf"]["ok"] and fresh.search("a murder mystery", version="tfidf")
    resp = served.http.get(f"/api/collections/{NAME}/search", params={"query": "murder", "version": version})
    assert resp.status_code == 409 and repair in resp.json()["error"]
    assert str(served.root) not in resp.text and "/tmp" not in resp.text
    fresh.embed("tfidf", version=version, index="exact", refit=True)  # what the hint says
    assert fresh.check()["ok"] and fresh.search("a murder mystery", version=version)
    fresh.delete_version(version)
    live_revisions_only(fresh)
    fresh.close()


@pytest.mark.parametrize("store", STORES)
def test_a_busy_writer_lock_is_the_same_conflict(stores: dict[str, Served], store: str) -> None:
    served = stores[store]
    other = Collection.open(NAME, root=served.root)  # another writer (its own lock handle/connection)
    served.col.store.write_wait = 0.2
    try:
        with other.store.writing():
            with pytest.raises(ConflictError, match=f"collection '{NAME}' is busy"):
                served.col.embed("tfidf", index="exact")
            with pytest.raises(ConflictError, match="is busy"), served.col.store.writing(wait=0):
                pass
    finally:
        served.col.store.write_wait = 10.0
        other.close()
    assert served.col.embed("tfidf", index="exact").count == len(served.col)


@pytest.mark.parametrize("store", STORES)
def test_a_version_write_that_fails_midway_leaves_the_old_one(
    stores: dict[str, Served], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedscope.encoders.base import Encoder

    served = stores[store]
    revision = served.col.store.version_revision("tfidf")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    for method in ("save", "to_bytes"):  # the embedded store saves files, PostgreSQL stores bytes
        monkeypatch.setattr(Encoder, method, broken)
    with pytest.raises(RuntimeError, match="injected fault"):
        served.col.embed("tfidf", index="exact", refit=True)
    monkeypatch.undo()
    assert served.col.store.version_revision("tfidf") == revision
    live_revisions_only(served.col)
    assert Collection.open(NAME, root=served.root).search("a murder mystery", version="tfidf")


def _job(client: TestClient, body: dict[str, Any], version: str = "tfidf") -> Callable[[], Any]:
    return lambda: client.post(f"/api/collections/{NAME}/versions/{version}/embed", json=body, headers=AUTH)


@pytest.mark.parametrize("store", STORES)
def test_embedding_jobs_are_checked_before_they_are_accepted(stores: dict[str, Served], store: str) -> None:
    """Issue 16, item 4: these answered 202 and then failed, or said "busy" in a failed job."""
    served = stores[store]
    for version, body, status, says in [
        ("tfidf", {"params": {"max_features": "abc"}}, 400, "'max_features' must be a whole number"),
        ("tfidf", {"params": {"max_features": True}}, 400, "'max_features' must be a whole number"),
        ("tfidf", {"index": "annoy"}, 400, "unknown index 'annoy'"),
        ("bad%00name", {"encoder": "tfidf"}, 400, "invalid version name"),
        ("new", {"encoder": "nope"}, 404, "nope"),
        ("tfidf", {"activate": 1}, 422, "activate"),
        ("tfidf", {"refit": "yes"}, 422, "refit"),
    ]:
        resp = _job(served.http, body, version)()
        assert resp.status_code == status and says in resp.json()["error"], (body, resp.text)
    other = Collection.open(NAME, root=served.root)
    try:
        with other.store.writing():  # a CLI `embed` holds the writer lock
            resp = _job(served.http, {})()
            assert resp.status_code == 409 and "busy" in resp.json()["error"], resp.text
    finally:
        other.close()
    resp = _job(served.http, {})()
    assert resp.status_code == 202, resp.text
    for _ in range(600):
        job = served.http.get(f"/api/jobs/{resp.json()['id']}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job


@pytest.mark.parametrize("store", STORES)
def test_a_507_names_neither_the_folder_nor_the_database(
    stores: dict[str, Served], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 12: the stores' own no-space messages (a folder; a database URL without its password)
    reach HTTP clients as `<collections>` and `<database>`."""
    from embedscope.errors import StorageFullError

    served = stores[store]
    location = served.col.store.location

    def full(self: Collection, records: list, **kwargs: object) -> dict:
        raise StorageFullError(
            f"no space left on device: writing failed at {self.store.location}; nothing was changed"
        )

    monkeypatch.setattr(Collection, "upsert", full)
    resp = served.http.post(ITEMS, json={"records": [{"id": "p", "text": "t"}]}, headers=AUTH)
    assert resp.status_code == 507 and location not in resp.text and str(served.root) not in resp.text
    assert ("<database>" if store == "postgres" else "<collections>/cat") in resp.json()["error"]


def test_the_cli_refuses_the_same_ids(store_home: Path, run_cli: Callable[..., Any], tmp_path: Path) -> None:
    """The CLI reads JSON lines through the same rules, on either store (ids `[embedded]`,
    `[postgres]`): a one-line error naming the row, exit 2, and no collection left behind."""
    path = tmp_path / "bad.jsonl"
    rows = [{"id": "fine", "text": "a"}, {"id": [1, 2], "text": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli("ingest", str(path), "-c", "clicat", "--text", "text")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "row 2: the id [1, 2] in 'id' is a list; ids are text or integers" in proc.stderr
    assert Collection.list() == []
