"""HTTP API on a small real collection (60 books from the shared data): results match the Python API,
filters, encoder/version choice, hybrid fusion, compare, recommend, auth on writes, validation,
query log, metrics and the query cache."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from embedscope import Collection
from embedscope.serve import create_app

BOOKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "books" / "books.csv"
META = ["title", "authors", "categories", "published_year", "average_rating", "thumbnail"]
TOKEN = "test-token-0123456789abcdef"
B = "/api/collections/books"
pytestmark = pytest.mark.skipif(not BOOKS.exists(), reason=f"shared books data not found at {BOOKS}")


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 real books: a BM25 version and a MiniLM version (short max_seq_length keeps it quick), in
    the embedded store and (test ids `[postgres]`) in PostgreSQL."""
    root = tmp_path_factory.mktemp("serve")
    frame = pd.read_csv(BOOKS).head(60)
    store = None
    if request.param == "postgres":
        store = request.getfixturevalue("pg_server").create_database(f"embedscope_serve_{os.getpid()}")
    col = Collection.create("books", root, store=store)
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=META)
    col.embed("bm25", index="exact")
    col.embed("minilm", {"max_seq_length": 48}, activate=True)
    col.close()
    return root


@pytest.fixture(scope="module")
def col(root: Path) -> Collection:
    return Collection.open("books", root)


@pytest.fixture(scope="module")
def client(root: Path, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    logs = tmp_path_factory.mktemp("logs")
    app = create_app(["books"], root=root, token=TOKEN, log_dir=logs)
    app.state.log_dir = logs
    return TestClient(app)


def ids(resp) -> list[str]:  # noqa: ANN001
    assert resp.status_code == 200, resp.text
    return [h["id"] for h in resp.json()["hits"]]


def test_search_matches_python_api_and_reports_stages(client: TestClient, col: Collection) -> None:
    q = "a detective solves a murder in an english village"
    resp = client.get(f"{B}/search", params={"query": q, "k": 5})
    assert ids(resp) == [h.id for h in col.search(q, k=5)]
    body = resp.json()
    assert body["version"] == "minilm" and body["encoder"] == "minilm"
    assert set(body["stages"]) == {"encode_ms", "search_ms", "rank_ms"}
    hit = body["hits"][0]
    assert hit["title"] == hit["metadata"]["title"]  # display title guessed from metadata
    assert not hit["snippet"].startswith(hit["title"])  # the template's title prefix is not repeated
    # POST with a JSON body is the same search
    assert ids(client.post(f"{B}/search", json={"query": q, "k": 5})) == ids(resp)


def test_filters_version_and_encoder_choice(client: TestClient, col: Collection) -> None:
    q = "mystery"
    where = "published_year >= 2001 and categories contains 'Detective'"
    resp = client.get(f"{B}/search", params={"query": q, "k": 20, "where": where})
    got = resp.json()["hits"]
    assert got, "the filter should leave some Agatha Christie books"
    assert all(
        h["metadata"]["published_year"] >= 2001 and "Detective" in h["metadata"]["categories"] for h in got
    )
    assert ids(resp) == [h.id for h in col.search(q, k=20, where=where)]
    by_version = client.get(f"{B}/search", params={"query": q, "k": 5, "version": "bm25"})
    by_encoder = client.get(f"{B}/search", params={"query": q, "k": 5, "encoder": "bm25"})
    assert ids(by_version) == ids(by_encoder) == [h.id for h in col.search(q, k=5, version="bm25")]
    assert by_encoder.json()["version"] == "bm25"


def test_hybrid_is_the_default_fusion_of_both_versions(client: TestClient, col: Collection) -> None:
    from embedscope.search.fusion import Run, convex

    q = "war and ships at sea"
    runs = []
    for v in ("bm25", "minilm"):
        hits = col.search(q, k=100, version=v, collapse=False)
        runs.append(Run([h.id for h in hits], np.array([h.score for h in hits])))
    # the default recipe: z-score-normalised scores, equal weights, 100 candidates per part
    expected = convex(runs, [0.5, 0.5], normalization="zscore")[0][:8]
    resp = client.get(f"{B}/search", params={"query": q, "k": 8, "encoder": "hybrid"})
    assert ids(resp) == expected == [h.id for h in col.search(q, k=8, version="hybrid", collapse=False)]
    assert resp.json()["version"] == "hybrid" and resp.json()["encoder"] == "hybrid(bm25+minilm)"


def test_similar_item_and_info(client: TestClient, col: Collection) -> None:
    first = col.items()[0].id
    resp = client.get(f"{B}/similar", params={"id": first, "k": 4})
    assert ids(resp) == [h.id for h in col.similar(first, k=4)]
    assert first not in ids(resp)
    item = client.get(f"{B}/items/{first}").json()
    assert item["id"] == first and item["title"] == "Gilead"
    assert client.get(f"{B}/items/nope").status_code == 404
    info = client.get("/api/collections/books").json()
    assert info["items"] == 60 and info["active_version"] == "minilm"
    assert {v["name"] for v in info["versions"]} == {"bm25", "minilm"}
    assert info["display"]["title"] == "title" and info["display"]["subtitle"] == "authors"
    year = next(f for f in info["display"]["filters"] if f["field"] == "published_year")
    assert year["kind"] == "range" and year["min"] == 1982 and year["max"] == 2007


def test_compare_runs_every_version(client: TestClient, col: Collection) -> None:
    q = "hobbits and a ring"
    body = client.post(f"{B}/compare", json={"query": q, "k": 5}).json()
    runs = {r["version"]: r for r in body["runs"]}
    assert set(runs) == {"bm25", "minilm", "hybrid"}
    assert [h["id"] for h in runs["bm25"]["hits"]] == [h.id for h in col.search(q, k=5, version="bm25")]
    assert all(r["took_ms"] >= 0 and r["error"] is None for r in runs.values())
    a, b = ({h["id"] for h in runs[v]["hits"]} for v in ("bm25", "minilm"))
    assert body["overlap"]["bm25|minilm"] == pytest.approx(len(a & b) / len(a | b), abs=1e-4)
    one = client.get(f"{B}/compare", params={"query": q, "versions": ["bm25"]}).json()
    assert [r["version"] for r in one["runs"]] == ["bm25"]


def test_recommend_from_liked_items(client: TestClient, col: Collection) -> None:
    liked = [i.id for i in col.items() if "Christie" in str(i.metadata.get("authors"))][:3]
    resp = client.post(f"{B}/recommend", json={"items": liked, "k": 5})
    if resp.status_code == 501:
        pytest.skip(resp.json()["error"])
    got = ids(resp)
    assert len(got) == 5 and not set(got) & set(liked)
    authors = [h["metadata"]["authors"] for h in resp.json()["hits"]]
    assert any("Christie" in str(a) for a in authors), authors  # a Christie fan gets some Christie
    both = client.post(f"{B}/recommend", json={"items": liked, "user": "u1"})
    assert both.status_code == 400 and "exactly one" in both.json()["error"]


def test_writes_need_a_configured_token(root: Path) -> None:
    readonly = TestClient(create_app(["books"], root=root, warm=False))
    resp = readonly.post(f"{B}/items", json={"records": [{"isbn13": "1", "title": "x"}]})
    assert resp.status_code == 403 and "token" in resp.json()["error"]
    assert readonly.get(f"{B}/search", params={"query": "ships"}).status_code == 200


def test_a_slow_recommendation_does_not_hold_up_searches(
    client: TestClient, col: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/recommend held the collection's reader lock for its whole call, so every search waited
    behind a slow recommendation; now no lock is held around it (the store guards its own reads)."""
    if importlib.util.find_spec("embedscope.recommend") is None:
        pytest.skip("recommendations are not built in")
    from embedscope.recommend import Recommender

    inside, release = threading.Event(), threading.Event()
    real = Recommender.recommend

    def slow(self: Recommender, *args: object, **kwargs: object) -> object:
        inside.set()
        release.wait(60)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Recommender, "recommend", slow)
    liked = col.ids()[:2]
    with ThreadPoolExecutor(2) as pool:
        recommended = pool.submit(client.post, f"{B}/recommend", json={"items": liked, "k": 3})
        try:
            assert inside.wait(60)
            searched = pool.submit(client.get, f"{B}/search", params={"query": "a murder", "k": 3})
            assert len(ids(searched.result(timeout=30))) == 3  # answered while the recommendation waits
        finally:
            release.set()
        assert recommended.result(timeout=60).status_code == 200


def test_write_auth_and_roundtrip(client: TestClient) -> None:
    url = f"{B}/items"
    record = {
        "isbn13": "9999999999999",
        "title": "The Clockwork Lighthouse",
        "description": "A lighthouse keeper builds a mechanical whale to rescue sailors from a storm.",
        "authors": "Test Author",
        "categories": "Fiction",
        "published_year": 2021,
    }
    assert client.post(url, json={"records": [record]}).status_code == 401
    bad = client.post(url, json={"records": [record]}, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ok = client.post(url, json={"records": [record]}, headers=auth)
    assert ok.status_code == 200 and ok.json()["counts"]["added"] == 1
    # PUT changes the given fields and keeps the others
    assert client.put(f"{url}/9999999999999", json={"published_year": 2022}, headers=auth).status_code == 200
    item = client.get(f"{url}/9999999999999").json()
    assert item["metadata"]["published_year"] == 2022 and item["metadata"]["authors"] == "Test Author"
    assert client.delete(f"{url}/9999999999999", headers=auth).status_code == 200
    assert client.get(f"{url}/9999999999999").status_code == 404
    assert client.delete(f"{url}/9999999999999", headers=auth).status_code == 404


@pytest.mark.slow
def test_embed_job_makes_new_items_searchable(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    record = {
        "isbn13": "9999999999998",
        "title": "Submarine Bakers",
        "description": "Two bakers open a bakery on a submarine and feed the crew sourdough.",
    }
    assert client.post(f"{B}/items", json={"records": [record]}, headers=auth).status_code == 200
    job = client.post(f"{B}/versions/minilm/embed", json={}, headers=auth)
    assert job.status_code == 202, job.text
    deadline = time.time() + 60
    while (state := client.get(f"/api/jobs/{job.json()['id']}").json())["status"] in ("queued", "running"):
        assert time.time() < deadline, state
        time.sleep(0.1)
    assert state["status"] == "done" and state["result"]["encoded"] >= 1, state
    assert state["result"]["reused"] >= 59  # incremental: only the new item was encoded
    hits = ids(client.get(f"{B}/search", params={"query": "bread baked on a submarine"}))
    assert hits[0] == "9999999999998"
    bad = client.post(f"{B}/versions/new/embed", json={"encoder": "nope"}, headers=auth)
    assert bad.status_code == 404 and "unknown encoder" in bad.json()["error"]
    client.delete(f"{B}/items/9999999999998", headers=auth)


S = f"{B}/search"
BAD_INPUTS = [
    ("get", S, {"params": {"query": ""}}, 422, "query"),
    ("get", S, {"params": {"query": "   "}}, 422, "query"),
    ("get", S, {"params": {"query": "x", "k": 0}}, 422, "k"),
    ("get", S, {"params": {"query": "x", "k": 1001}}, 422, "k"),
    ("get", S, {"params": {"query": "x", "k": "ten"}}, 422, "k"),
    ("get", S, {"params": {"query": "x", "wehre": "a"}}, 422, "wehre"),
    ("get", S, {"params": {"query": "x", "where": "((("}}, 400, "malformed"),
    ("get", S, {"params": {"query": "x", "where": "pages > 3"}}, 400, "unknown field"),
    ("get", S, {"params": {"query": "x", "where": "__import__('os')"}}, 400, "filter"),
    ("get", S, {"params": {"query": "x", "where": "pages > 3", "encoder": "hybrid"}}, 400, "unknown field"),
    ("get", S, {"params": {"query": "x", "version": "v9"}}, 404, "v9"),
    ("get", S, {"params": {"query": "x", "encoder": "lda"}}, 404, "lda"),
    ("get", S, {"params": {"query": "x", "encoder": "bm25", "version": "bm25"}}, 400, "either"),
    ("get", S, {"params": {"query": "the of and", "version": "bm25"}}, 400, "terms"),
    ("get", "/api/collections/nope/search", {"params": {"query": "x"}}, 404, "nope"),
    ("get", f"{B}/similar", {"params": {"id": "nope"}}, 404, "nope"),
    ("post", S, {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ("post", S, {"json": ["a", "list"]}, 422, ""),
    ("post", S, {"json": {"query": "x" * 1_100_000}}, 413, "too large"),
    ("post", f"{B}/compare", {"json": {"query": "x", "versions": ["v9"]}}, 404, "v9"),
    ("post", f"{B}/recommend", {"json": {"items": ["nope"]}}, 404, "nope"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "says"), BAD_INPUTS)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, method: str, path: str, kwargs: dict, status: int, says: str
) -> None:
    resp = getattr(client, method)(path, **kwargs)
    if resp.status_code == 501:  # recommendations not built in
        return
    assert resp.status_code == status, resp.text
    assert says.lower() in resp.json()["error"].lower()


def _junk(rng: random.Random) -> object:
    return rng.choice(
        [
            "",
            " ",
            "x" * 3000,
            "' or 1=1 --",
            "../../etc/passwd",
            "\u0000",
            "💥",
            -1,
            0,
            10**12,
            3.5,
            None,
            True,
            [],
            {},
            ["a"],
            {"a": 1},
            "published_year >= 'x'",
            "title contains",
            "1e309",
        ]
    )


def test_junk_at_every_endpoint_never_500(client: TestClient) -> None:
    """Spec-driven fuzzing: every operation in the OpenAPI document, junk in every parameter and body."""
    rng = random.Random(7)
    spec = client.get("/openapi.json").json()
    calls = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for _ in range(12):
                url = path
                for p in [p for p in op.get("parameters", []) if p["in"] == "path"]:
                    value = rng.choice(["books", "nope", "minilm", "%20", "x" * 200])
                    url = url.replace("{" + p["name"] + "}", value)
                params = {p["name"]: _junk(rng) for p in op.get("parameters", []) if p["in"] == "query"}
                params = {k: v for k, v in params.items() if isinstance(v, str | int | float)}
                body = None
                if "requestBody" in op:
                    body = rng.choice(
                        [
                            _junk(rng),
                            {"query": _junk(rng), "k": _junk(rng), "where": _junk(rng)},
                            {"records": [{"isbn13": _junk(rng)}]},
                            {"ids": _junk(rng)},
                        ]
                    )
                headers = {"Authorization": f"Bearer {TOKEN}"} if rng.random() < 0.5 else {}
                if body is not None:
                    headers["content-type"] = "application/json"
                resp = client.request(
                    method.upper(),
                    url,
                    params=params,
                    headers=headers,
                    content=None if body is None else json.dumps(body),
                )
                calls += 1
                assert resp.status_code < 500 or resp.status_code == 501, (
                    method,
                    url,
                    params,
                    body,
                    resp.text,
                )
                if resp.status_code >= 400:
                    assert resp.json()["error"], resp.text
    assert calls > 100


def test_cache_metrics_and_query_log(client: TestClient) -> None:
    q = "a sailing ship captain in the napoleonic wars"
    first = client.get(f"{B}/search", params={"query": q}).json()
    second = client.get(f"{B}/search", params={"query": q}).json()
    assert first["cached"] is False and second["cached"] is True
    assert second["stages"]["encode_ms"] < first["stages"]["encode_ms"]
    assert [h["id"] for h in first["hits"]] == [h["id"] for h in second["hits"]]
    text = client.get("/metrics").text
    stage = 'embedscope_stage_seconds_bucket{collection="books",le="0.005",stage="encode",version="minilm"}'
    count = 'embedscope_requests_total{endpoint="/api/collections/{name}/search",method="GET",status="200"}'
    assert stage in text and count in text
    cache_line = next(line for line in text.splitlines() if line.startswith("embedscope_query_cache_hits "))
    hits = float(cache_line.split()[-1])
    assert hits >= 1
    # the query log: one JSON line per API request, with the ids returned, and never the token
    client.post(f"{B}/items", json={"records": []}, headers={"Authorization": f"Bearer {TOKEN}"})
    log_path = client.app.state.log_dir / "queries.jsonl"
    raw = log_path.read_text()
    assert TOKEN not in raw and "authorization" not in raw.lower()
    lines = [json.loads(line) for line in raw.splitlines()]
    mine = [r for r in lines if r.get("query") == q]
    assert len(mine) == 2 and mine[0]["ids"] == [h["id"] for h in first["hits"]] and mine[1]["cached"] is True
    assert all({"ts", "endpoint", "status", "ms"} <= set(r) for r in lines)


def test_page_docs_and_health(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "worldbuilding" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: everything is served from here
    assert client.get("/static/app.js").status_code == 200
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"SearchRequest", "SearchResponse", "CollectionInfo"} <= set(schemas)
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["writes_enabled"] is True
    assert health["collections"][0]["versions"] == ["bm25", "minilm"]


def test_docs_page_loads_no_asset_from_another_host(client: TestClient) -> None:
    """/docs works offline: Swagger UI's script, style and icon come from this server (FastAPI's
    default page loads them from a CDN and stays blank with no network), and each one is served."""
    import re

    docs = client.get("/docs")
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", docs.text)
    urls += re.findall(r"""url:\s*["']([^"']+)["']""", docs.text)  # the spec and the oauth2 redirect
    assert len(urls) >= 4, docs.text
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"/docs loads {url} from another host"
        assert client.get(url).status_code == 200, url
    assert client.get("/redoc").status_code == 404  # ReDoc's page loads its script from a CDN too


def test_concurrent_queries_are_encoded_together_and_match(col: Collection) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from embedscope.serve.batching import QueryBatcher

    enc = col.encoder("minilm")
    sizes: list[int] = []
    gate = threading.Event()

    def slow_first(texts):  # noqa: ANN001, ANN202 - hold the first batch so the others queue up
        gate.wait(5)
        return enc.encode_queries(texts)

    batcher = QueryBatcher(slow_first, observe=sizes.append)
    queries = [f"{w} adventure at sea" for w in ("funny", "dark", "cozy", "epic", "quiet", "tense")]
    with ThreadPoolExecutor(len(queries)) as pool:
        futures = [pool.submit(batcher.encode, q) for q in queries]
        time.sleep(0.3)
        gate.set()
        got = [f.result() for f in futures]
    batcher.close()
    assert sum(sizes) == len(queries) and max(sizes) > 1  # some queries shared one encoder call
    alone = enc.encode_queries(queries)
    for row, q in zip(got, alone, strict=True):
        assert row.shape == (1, alone.shape[1])
        assert float(row[0] @ q) > 0.999  # padding in a batch does not change the embedding
