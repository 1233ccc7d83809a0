"""The HTTP API under hostile input (issue 13): client mistakes are 4xx JSON with no traceback in the
log, ids with '/' are reachable, `refit` is honoured, deleted items have no neighbours, the query log
is private, and an unexpected error does not reset the client's keep-alive connection.

Cheap on purpose (TF-IDF and BM25 over 60 real books); tests/test_serve_fuzz.py fuzzes every endpoint."""

from __future__ import annotations

import logging
import socket
import stat
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from embedscope import Collection
from embedscope.serve import create_app

TOKEN = "hardening-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
B = "/api/collections/books"
META = ["title", "authors", "categories", "published_year"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("hardening")
    col = Collection.create("books", root)
    col.ingest(books_frame.head(60), id_field="isbn13", template="{title}. {description}", metadata=META)
    col.embed("tfidf", activate=True)
    col.embed("bm25")
    col.close()
    return root


@pytest.fixture(scope="module")
def client(root: Path, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    logs = tmp_path_factory.mktemp("logs")
    app = create_app(["books"], root=root, token=TOKEN, log_dir=logs)
    app.state.log_dir = logs
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"where": "published_year > " + "-" * 400 + "1"}, "too deeply nested"),
        ({"where": "authors in [[1], {2: 3}]"}, "needs a list of plain values"),
        ({"where": "published_year > [1]"}, "expected a string or a number"),
        ({"where": "title == 'what it contains'"}, None),  # a literal holding `contains` is fine
    ],
)
def test_bad_filters_are_400_without_a_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture, params: dict, says: str | None
) -> None:
    """Defect 3: these answered 500 with ~125 KB of traceback in the log each."""
    with caplog.at_level(logging.INFO):
        resp = client.get(f"{B}/search", params={"query": "a mystery", **params})
    if says is None:
        assert resp.status_code == 200 and resp.json()["hits"] == []
    else:
        assert resp.status_code == 400 and says in resp.json()["error"]
    assert not [r for r in caplog.records if r.exc_info], "a client error left a traceback in the log"


def test_infinity_in_upserted_metadata_is_400(client: TestClient) -> None:
    """Defect 5: Python's JSON parser reads `Infinity`; storing it failed with a 500."""
    body = '{"records": [{"isbn13": "inf-1", "title": "T", "description": "D", "published_year": Infinity}]}'
    resp = client.post(f"{B}/items", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 400 and "field 'published_year' is inf" in resp.json()["error"]


def test_ids_with_slashes_are_reachable(client: TestClient) -> None:
    """Defect 6: `/items/{id}` could not reach ids containing '/'."""
    records = [{"isbn13": i, "title": f"Book {i}", "description": "slashed"} for i in ("a/b", "x/y/z")]
    assert client.post(f"{B}/items", json={"records": records}, headers=AUTH).status_code == 200
    assert client.get(f"{B}/items/a/b").json()["id"] == "a/b"
    assert client.get(f"{B}/items/a%2Fb").json()["id"] == "a/b"
    resp = client.put(f"{B}/items/x/y/z", json={"title": "Renamed"}, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["counts"]["updated"] == 1
    assert client.get(f"{B}/items/x/y/z").json()["metadata"]["title"] == "Renamed"
    assert client.delete(f"{B}/items/x/y/z", headers=AUTH).json()["counts"] == {"deleted": 1}
    assert client.get(f"{B}/items/x/y/z").status_code == 404


def _job(client: TestClient, version: str, body: dict) -> dict:
    resp = client.post(f"{B}/versions/{version}/embed", json=body, headers=AUTH)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    for _ in range(600):
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_refit_over_http_is_honoured(client: TestClient) -> None:
    """Defect 4: the embed request's `refit: true` was ignored (nothing was re-encoded)."""
    first = _job(client, "bm25", {})
    assert first["status"] == "done", first
    again = _job(client, "bm25", {})
    assert again["result"]["encoded"] == 0 and again["result"]["reused"] == again["result"]["count"]
    refit = _job(client, "bm25", {"refit": True})
    assert refit["status"] == "done" and refit["result"]["encoded"] == refit["result"]["count"] > 0
    assert refit["result"]["reused"] == 0


def test_more_like_a_deleted_item_is_404(client: TestClient, books_frame: pd.DataFrame) -> None:
    """Defect 6: "more like this" answered for deleted items."""
    gone = str(books_frame.isbn13[7])
    assert client.get(f"{B}/similar", params={"id": gone, "k": 3}).status_code == 200
    assert client.delete(f"{B}/items/{gone}", headers=AUTH).status_code == 200
    resp = client.get(f"{B}/similar", params={"id": gone, "k": 3})
    assert resp.status_code == 404 and gone in resp.json()["error"]


def test_the_query_log_is_readable_by_its_owner_only(client: TestClient) -> None:
    """Defect 6: the query log was created world-readable."""
    client.get(f"{B}/search", params={"query": "private question"})
    path = Path(client.app.state.log_dir) / "queries.jsonl"
    assert "private question" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _exchange(conn: socket.socket, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open keep-alive socket: (status, body); (0, b"") if it was closed."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return 0, b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(
        next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split()[1]), body


def test_an_unexpected_error_keeps_the_connection(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 3: after a 500 the server closed the keep-alive connection (the client's next valid
    request was reset). A real uvicorn server, one TCP connection, a bug injected into one call."""
    app = create_app(["books"], root=root, warm=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        original = Collection.info

        def broken(self: Collection) -> dict:
            raise RuntimeError("injected bug")

        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            monkeypatch.setattr(Collection, "info", broken)
            status, body = _exchange(conn, B)
            assert status == 500 and b"RuntimeError" in body
            monkeypatch.setattr(Collection, "info", original)
            assert _exchange(conn, B)[0] == 200  # the same connection, still open
            assert _exchange(conn, f"{B}/search?query=x&where=((")[0] == 400
            assert _exchange(conn, B)[0] == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
