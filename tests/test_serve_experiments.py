"""Online experiments and the map over HTTP, on 60 real books (BM25 and TF-IDF): the experiments
router (token-guarded start/stop, list, report), the interleaved or A/B list that /search serves
while an experiment runs (and only to the searches the rule admits), the click endpoint, a report
after simulated clicks, and the projection endpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from embedscope import Collection
from embedscope.experiments import bucket
from embedscope.experiments.eventlog import read_events
from embedscope.serve import create_app

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
B = "/api/collections/books"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("serve-exp")
    col = Collection.create("books", root)
    col.ingest(
        books_frame.head(60),
        id_field="isbn13",
        template="{title}. {description}",
        metadata=["title", "authors", "categories", "published_year"],
    )
    col.embed("bm25", index="exact", activate=True)
    col.embed("tfidf", index="exact")
    col.close()
    return root


@pytest.fixture(scope="module")
def col(root: Path) -> Collection:
    return Collection.open("books", root)


@pytest.fixture()
def client(root: Path) -> TestClient:
    with TestClient(create_app(["books"], root=root, token=TOKEN)) as c:
        yield c
        for exp in c.get(f"{B}/experiments").json():  # leave no experiment running for the next test
            if exp["status"] == "running":
                c.post(f"{B}/experiments/{exp['name']}/stop", headers=AUTH)


@pytest.fixture(scope="module")
def queries(books_frame: pd.DataFrame) -> list[str]:
    """Real queries: the first words of descriptions of books that are not in the collection."""
    texts = books_frame["description"].dropna().iloc[100:250]
    return [" ".join(str(t).split()[:6]) for t in texts]


def _plain(col: Collection, query: str, k: int, version: str) -> list[str]:
    """What /search?version= answers ([] where the version knows none of the query's words)."""
    [result] = col.pipeline.search_many([query], k, using=version, strict=False)
    return [h.id for h in result.hits]


def _ids(body: dict) -> list[str]:
    return [h["id"] for h in body["hits"]]


def _events(root: Path, experiment: str) -> list[dict]:
    return read_events(root / "books" / "experiments" / f"{experiment}.events.jsonl").records


def test_start_stop_list_need_the_token_and_one_runs_at_a_time(client: TestClient) -> None:
    start = {"a": "bm25", "b": "tfidf", "name": "tokens"}
    assert client.post(f"{B}/experiments", json=start).status_code == 401
    assert (
        client.post(f"{B}/experiments", json=start, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert client.post(f"{B}/experiments", json={**start, "b": "minilm"}, headers=AUTH).status_code == 404
    assert client.post(f"{B}/experiments", json={**start, "b": "bm25"}, headers=AUTH).status_code == 400
    bad_method = client.post(f"{B}/experiments", json={**start, "method": "bandit"}, headers=AUTH)
    assert bad_method.status_code == 422 and "method" in bad_method.json()["error"]
    started = client.post(f"{B}/experiments", json=start, headers=AUTH)
    assert started.status_code == 201 and started.json()["status"] == "running"
    again = client.post(f"{B}/experiments", json={**start, "name": "second"}, headers=AUTH)
    assert again.status_code == 409 and "'tokens' is running" in again.json()["error"]
    listed = {e["name"]: e["status"] for e in client.get(f"{B}/experiments").json()}
    assert listed["tokens"] == "running"
    assert client.post(f"{B}/experiments/tokens/stop").status_code == 401
    stopped = client.post(f"{B}/experiments/tokens/stop", headers=AUTH)
    assert stopped.status_code == 200 and stopped.json()["stopped_at"]
    assert client.post(f"{B}/experiments/tokens/stop", headers=AUTH).status_code == 409
    assert client.post(f"{B}/experiments/nope/stop", headers=AUTH).status_code == 404
    assert client.get(f"{B}/experiments/nope/report").status_code == 404
    assert client.get(f"{B}/experiments/bad%20name/report").status_code == 400


def test_interleaved_list_is_served_logged_and_clickable(
    client: TestClient, col: Collection, root: Path, queries: list[str]
) -> None:
    name = "interleaved"
    client.post(f"{B}/experiments", json={"a": "bm25", "b": "tfidf", "name": name}, headers=AUTH)
    query = queries[0]
    plain = {v: _plain(col, query, 10, v) for v in ("bm25", "tfidf")}
    resp = client.get(f"{B}/search", params={"query": query, "k": 10, "session": "reader-1"})
    body = resp.json()
    shown = body["experiment"]
    assert resp.status_code == 200 and shown["name"] == name and shown["method"] == "interleave"
    assert body["version"] == "bm25|tfidf" and shown["side"] is None
    # the logged impression is what was served, and it is a team draft of the two sides' lists:
    # each position holds the best result of its side's list not shown above it
    impression = next(r for r in _events(root, name) if r.get("id") == shown["impression"])
    assert impression["ids"] == _ids(body) and impression["query"] == query
    assert impression["user"] == "reader-1"
    teams = impression["teams"]
    for pos, (item, side) in enumerate(zip(_ids(body), teams, strict=True)):
        above = set(_ids(body)[:pos])
        assert item == next(i for i in plain["bm25" if side == "a" else "tfidf"] if i not in above)
        # and the sides take turns: a side ahead picks again only when the other has nothing left
        mine, other = teams[:pos].count(side), pos - teams[:pos].count(side)
        if mine > other:
            assert set(plain["tfidf" if side == "a" else "bm25"]) <= above

    # the rule: a search that names a version or an encoder, or carries no session, is not in it
    pinned = client.get(
        f"{B}/search", params={"query": query, "k": 10, "session": "reader-1", "version": "bm25"}
    )
    assert pinned.json()["experiment"] is None and _ids(pinned.json()) == plain["bm25"]
    by_encoder = client.get(
        f"{B}/search", params={"query": query, "k": 10, "session": "r", "encoder": "tfidf"}
    )
    assert by_encoder.json()["experiment"] is None and _ids(by_encoder.json()) == plain["tfidf"]
    anonymous = client.get(f"{B}/search", params={"query": query, "k": 10})
    assert anonymous.json()["experiment"] is None and _ids(anonymous.json()) == plain["bm25"]
    assert client.get(f"{B}/compare", params={"query": query}).status_code == 200
    assert len([r for r in _events(root, name) if r["type"] == "impression"]) == 1

    # a click: logged with its position, side, item, query and session
    pos = teams.index("b")
    click = {"experiment": name, "impression": shown["impression"], "position": pos, "item": _ids(body)[pos]}
    logged = client.post(f"{B}/click", json=click)
    assert logged.status_code == 200 and logged.json()["item"] == _ids(body)[pos]
    record = [r for r in _events(root, name) if r["type"] == "click"][-1]
    assert record["position"] == pos and record["side"] == "b" and record["item"] == _ids(body)[pos]
    assert record["query"] == query and record["user"] == "reader-1" and record["ts"]
    # bad clicks are 4xx, and logged nowhere
    for wrong, status in [
        ({**click, "impression": "0" * 32}, 404),
        ({**click, "experiment": "nope"}, 404),
        ({**click, "experiment": "bad name"}, 400),
        ({**click, "position": len(teams)}, 400),
        ({**click, "position": -1}, 422),
        ({**click, "item": _ids(body)[(pos + 1) % len(teams)]}, 409),
        ({k: v for k, v in click.items() if k != "impression"}, 422),
        ({**click, "extra": 1}, 422),
    ]:
        resp = client.post(f"{B}/click", json=wrong)
        assert resp.status_code == status and resp.json()["error"], (wrong, resp.text)
    assert len([r for r in _events(root, name) if r["type"] == "click"]) == 1

    # stopped: plain results again, and clicks on its lists are refused
    client.post(f"{B}/experiments/{name}/stop", headers=AUTH)
    after = client.get(f"{B}/search", params={"query": query, "k": 10, "session": "reader-1"}).json()
    assert after["experiment"] is None and _ids(after) == plain["bm25"]
    assert client.post(f"{B}/click", json=click).status_code == 409


def test_ab_serves_each_session_its_bucket(client: TestClient, col: Collection, queries: list[str]) -> None:
    name = "split"
    started = client.post(
        f"{B}/experiments", json={"a": "bm25", "b": "tfidf", "name": name, "method": "ab"}, headers=AUTH
    )
    assert started.status_code == 201
    sides = {}
    for i, query in enumerate(queries[:8]):
        session = f"session-{i % 4}"
        body = client.get(f"{B}/search", params={"query": query, "k": 5, "session": session}).json()
        side = body["experiment"]["side"]
        assert side == bucket(name, session) and sides.setdefault(session, side) == side  # stable
        version = "bm25" if side == "a" else "tfidf"
        assert body["version"] == version and _ids(body) == [
            h.id for h in col.search(query, 5, version=version)
        ]


def test_report_after_simulated_clicks_shows_the_winner(
    client: TestClient, col: Collection, queries: list[str]
) -> None:
    """Simulated users who want what BM25 ranks at the top (they click any shown result that is in
    BM25's top 3 for their query): over HTTP, interleaving must credit BM25 and call it the winner."""
    name = "clicks"
    client.post(f"{B}/experiments", json={"a": "tfidf", "b": "bm25", "name": name}, headers=AUTH)
    for i, query in enumerate(queries):
        wanted = set(_plain(col, query, 3, "bm25"))
        body = client.get(f"{B}/search", params={"query": query, "k": 10, "session": f"user-{i}"}).json()
        for pos, item in enumerate(_ids(body)):
            if item in wanted:
                click = {"experiment": name, "impression": body["experiment"]["impression"], "position": pos}
                assert client.post(f"{B}/click", json=click).status_code == 200
    report = client.get(f"{B}/experiments/{name}/report").json()
    assert report["impressions"] == len(queries)
    assert report["wins"]["b"] > report["wins"]["a"]
    assert report["winner"] == "b" and report["test"]["p"] < 0.05, report
    assert "B (bm25) wins" in report["verdict"] and "path" not in report["log"]
    png = client.get(f"{B}/experiments/{name}/report.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")


def test_projection_endpoint(client: TestClient, col: Collection) -> None:
    first = client.get(f"{B}/projection", params={"color_by": "categories"})
    body = first.json()
    assert first.status_code == 200, first.text
    assert body["method"] == "pca" and body["version"] == "bm25" and body["available"] == ["pca"]
    assert len(body["ids"]) == len(body["x"]) == len(body["titles"]) == len(body["colors"]) == 60
    assert set(body["ids"]) == {i.id for i in col.items()}
    assert body["titles"][body["ids"].index(body["ids"][0])] == col.get(body["ids"][0]).metadata["title"]
    again = client.get(f"{B}/projection", params={"color_by": "categories"}).json()
    assert again["cached"] is True and again["x"] == body["x"]
    tfidf = client.get(f"{B}/projection", params={"version": "tfidf", "method": "pca"}).json()
    assert tfidf["version"] == "tfidf" and tfidf["x"] != body["x"] and tfidf["colors"] is None
    umap = client.get(f"{B}/projection", params={"method": "umap"})
    assert umap.status_code == 404 and "embedscope project books --method umap" in umap.json()["error"]
    for params, status in [
        ({"version": "nope"}, 404),
        ({"color_by": "nope"}, 400),
        ({"method": "mds"}, 422),
        ({"sample": 2}, 422),
    ]:
        resp = client.get(f"{B}/projection", params=params)
        assert resp.status_code == status and resp.json()["error"], (params, resp.text)
