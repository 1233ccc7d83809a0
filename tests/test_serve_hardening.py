"""The HTTP API under hostile input (issue 13): client mistakes are 4xx JSON with no traceback in the
log, ids with '/' are reachable, `refit` is honoured, deleted items have no neighbours, the query log
is private, and an unexpected error does not reset the client's keep-alive connection.

Cheap on purpose (TF-IDF and BM25 over 60 real books); tests/test_serve_fuzz.py fuzzes every endpoint."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from embedscope import Collection
from embedscope.errors import EmbedscopeError
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


# --- issue 16 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["search", "similar", "compare"])
def test_booleans_are_not_numbers(client: TestClient, path: str) -> None:
    """Item 8: `"k": true` was read as k = 1."""
    body = {"query": "a mystery", "k": True} if path != "similar" else {"id": "x", "k": True}
    resp = client.post(f"{B}/{path}", json=body)
    assert resp.status_code == 422 and "k: " in resp.json()["error"], resp.text
    assert client.post(f"{B}/search", json={"query": "a mystery", "k": 2}).status_code == 200
    assert client.get(f"{B}/search", params={"query": "a mystery", "k": "2"}).status_code == 200


def test_an_id_given_as_a_list_is_refused_not_stored_as_text(client: TestClient) -> None:
    """Item 8: `"isbn13": [1, 2]` was stored as the item '[1, 2]'."""
    for bad, says in (([1, 2], "is a list"), (True, "is a boolean"), ("a\x00b", "holds NUL")):
        record = {"isbn13": bad, "title": "T", "description": "D"}
        resp = client.post(f"{B}/items", json={"records": [record]}, headers=AUTH)
        assert resp.status_code == 400 and says in resp.json()["error"], resp.text
    assert client.get(f"{B}/items/[1, 2]").status_code == 404
    resp = client.post(
        f"{B}/items", json={"records": [{"isbn13": 12345, "title": "T", "description": "D"}]}, headers=AUTH
    )
    assert resp.status_code == 200 and client.get(f"{B}/items/12345").json()["id"] == "12345"


@pytest.mark.parametrize(
    "token",
    [" " * 20, "\t\n  ", " leading-space-token-0123", "token-with-a-\x01-inside-0123", "pässwörd-0123456789"],
)
def test_a_token_no_request_can_match_is_refused_at_start(root: Path, token: str) -> None:
    """Item 9: a whitespace-only token started the server with `writes: enabled`, matching nothing."""
    with pytest.raises(EmbedscopeError, match="write token"):
        create_app(["books"], root=root, token=token, warm=False)


def test_serve_refuses_a_whitespace_token(root: Path) -> None:
    env = {**os.environ, "EMBEDSCOPE_HOME": str(root), "EMBEDSCOPE_TOKEN": " " * 24}
    proc = subprocess.run(
        [sys.executable, "-m", "embedscope.cli", "serve", "books", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "only whitespace" in proc.stderr and "Traceback" not in proc.stderr


def test_answers_never_show_server_paths(
    client: TestClient, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 12: a 507 showed the server's absolute store path; so could a failed job."""
    from embedscope.errors import StorageFullError

    def full(self: Collection, records: list, **kwargs: object) -> dict:
        raise StorageFullError(self.store._full_message("writing to collection 'books'", "disk full"))

    monkeypatch.setattr(Collection, "upsert", full)
    resp = client.post(f"{B}/items", json={"records": [{"isbn13": "p1", "title": "T"}]}, headers=AUTH)
    assert resp.status_code == 507 and "no space left on device" in resp.json()["error"]
    assert str(root) not in resp.text and str(root.resolve()) not in resp.text and "/tmp" not in resp.text
    assert "<collections>/books" in resp.json()["error"]


def _experiment(client: TestClient, name: str) -> dict:
    for e in client.get(f"{B}/experiments").json():
        if e["status"] == "running":
            client.post(f"{B}/experiments/{e['name']}/stop", headers=AUTH)
    started = client.post(f"{B}/experiments", json={"a": "tfidf", "b": "bm25", "name": name}, headers=AUTH)
    assert started.status_code == 201, started.text
    resp = client.post(f"{B}/search", json={"query": "a murder mystery", "k": 5, "session": "s-1"})
    return resp.json()["experiment"]


def test_repeated_clicks_are_logged_once_and_rate_limited(client: TestClient, root: Path) -> None:
    """Item 11: 2,000 identical clicks on one impression were all written, though the report
    counted one. Now: logged once, 429 past 30 a minute, and the report's counts are the log's."""
    from embedscope.experiments.eventlog import read_events
    from embedscope.experiments.experiment import CLICKS_PER_MINUTE

    shown = _experiment(client, "clicks")
    click = {"experiment": "clicks", "impression": shown["impression"], "position": 0}
    answers = [client.post(f"{B}/click", json=click) for _ in range(CLICKS_PER_MINUTE + 10)]
    assert [a.status_code for a in answers] == [200] * CLICKS_PER_MINUTE + [429] * 10
    assert [a.json()["duplicate"] for a in answers[:3]] == [False, True, True]
    assert "slow down" in answers[-1].json()["error"]
    assert client.post(f"{B}/click", json={**click, "position": True}).status_code == 422
    log = read_events(root / "books" / "experiments" / "clicks.events.jsonl").records
    assert sum(r["type"] == "click" for r in log) == 1
    report = client.get(f"{B}/experiments/clicks/report").json()
    assert report["clicks"]["a"] + report["clicks"]["b"] == report["log"]["clicks_logged"] == 1
    assert report["log"]["duplicate_clicks"] == 0 and "path" not in report["log"]
    client.post(f"{B}/experiments/clicks/stop", headers=AUTH)


def _serve(app: object, limits: object) -> tuple[uvicorn.Server, threading.Thread, int]:
    from embedscope.serve.server import config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(config(app, "127.0.0.1", port, limits, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, thread, port


def _until_closed(conn: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a 10 s safety net: the limits under
    test are 0.5 s; a connection the server keeps open fails the test instead of hanging it)."""
    data = b""
    conn.settimeout(10)
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open; got {data[:80]!r}") from None
        if not chunk:
            return data
        data += chunk


def test_slow_and_idle_connections_are_closed_and_connections_bounded(root: Path) -> None:
    """Item 7: `Content-Length: 100` with 9 bytes sent held a connection forever (1,000 such stayed
    open). A real uvicorn server with the limits `embedscope serve` uses, shortened for the test."""
    from embedscope.serve.server import Limits

    app = create_app(["books"], root=root, body_timeout=0.5, warm=False)
    server, thread, port = _serve(
        app, Limits(head_timeout=0.5, body_timeout=0.5, keep_alive=0.5, max_connections=8)
    )

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=10)

    try:
        with connect() as c:  # a body that never completes: 408, then closed
            c.sendall(
                b"POST /api/collections/books/search HTTP/1.1\r\nHost: t\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"query":'
            )
            answer = _until_closed(c)
            assert answer.startswith(b"HTTP/1.1 408") and b"request body not received within 0.5 s" in answer
        with connect() as c:  # nothing sent at all
            assert _until_closed(c) == b""
        with connect() as c:  # a request head that never ends
            c.sendall(b"GET /api/collections HTTP/1.1\r\nHost: t\r\n")
            assert _until_closed(c) == b""
        with connect() as c:  # a body the app does not read (GET), never completed
            c.sendall(b"GET /api/collections HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
            assert _until_closed(c).startswith(b"HTTP/1.1 200")
        with connect() as c:  # an idle keep-alive connection after a whole exchange
            assert _exchange(c, "/api/collections")[0] == 200
            assert _until_closed(c) == b""
        held = [connect() for _ in range(8)]  # as many connections as allowed, sending nothing
        try:
            time.sleep(0.1)
            with connect() as c:
                c.sendall(b"GET /api/collections HTTP/1.1\r\nHost: t\r\n\r\n")
                assert c.recv(12) == b"HTTP/1.1 503"
            for h in held:  # ... until their head timeout frees them
                assert _until_closed(h) == b""
        finally:
            for h in held:
                h.close()
        with connect() as c:
            assert _exchange(c, "/api/collections")[0] == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
