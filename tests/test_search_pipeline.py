"""One search path: the Python API, the CLI (`search --json`, `compare --json`), the HTTP API
(`/search`, `/compare`, `/similar`) and the evaluation harness's retrieval give the same ids in the same
order for the same query and filter, for a dense version, a sparse one and hybrid recipes. And
repeated works (three editions of The Secret Garden) are collapsed, without shrinking the results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embedscope import Collection
from embedscope.cli import _load_commands
from embedscope.cli.app import app

_load_commands()
runner = CliRunner()
META = ["title", "authors", "categories", "published_year", "average_rating", "thumbnail"]
COZY = "a cozy mystery in a small english village"  # the example: The Secret Garden x3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame) -> Path:
    """300 real books plus every edition of The Secret Garden (rows 2571, 4438, 4441 of the CSV), with
    a BM25 and a MiniLM version, the implicit `hybrid` recipe and a stored convex recipe."""
    root = tmp_path_factory.mktemp("onepath")
    garden = books_frame[books_frame["title"].str.startswith("The Secret Garden", na=False)]
    frame = pd.concat([books_frame.head(300), garden]).drop_duplicates("isbn13")
    col = Collection.create("books", root)
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=META)
    col.embed("bm25", index="exact")
    col.embed("minilm", {"max_seq_length": 128}, activate=True)
    col.create_recipe(
        "convex", ["bm25", "minilm"], fusion="convex", weights=[0.3, 0.7], params={"normalization": "tmm"}
    )
    col.close()
    return root


@pytest.fixture(scope="module")
def col(root: Path) -> Collection:
    return Collection.open("books", root)


@pytest.fixture(scope="module")
def client(root: Path) -> TestClient:
    from embedscope.serve import create_app

    return TestClient(create_app(["books"], root=root))


def _cli(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> object:
    monkeypatch.setenv("EMBEDSCOPE_HOME", str(root))
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("using", ["minilm", "bm25", "hybrid", "convex"])
@pytest.mark.parametrize("where", [None, "published_year >= 2000 and categories contains 'Fiction'"])
def test_every_caller_gets_the_same_ranking(
    using: str,
    where: str | None,
    root: Path,
    col: Collection,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from embedscope.compare import compare
    from embedscope.evaluate.ir import retrieve

    q, k = "a detective solves a murder in a small village", 8
    api = [h.id for h in col.search(q, k, where=where, version=using)]
    assert len(api) == k
    if where:
        assert all(h.metadata["published_year"] >= 2000 for h in col.search(q, k, where=where, version=using))
    filt = ["--where", where] if where else []
    cli = [
        h["id"]
        for h in _cli(
            root, monkeypatch, "search", "books", q, "-k", str(k), "--version", using, "--json", *filt
        )
    ]
    http = client.get(
        "/api/collections/books/search", params={"query": q, "k": k, "version": using, "where": where}
    )
    assert http.status_code == 200, http.text
    http_compare = client.post(
        "/api/collections/books/compare", json={"query": q, "k": k, "versions": [using], "where": where}
    ).json()
    cli_compare = _cli(
        root, monkeypatch, "compare", "books", q, "-k", str(k), "--versions", using, "--json", *filt
    )
    py_compare = compare(col, q, [using], k=k, where=where).columns[0].result
    assert (
        api
        == cli
        == [h["id"] for h in http.json()["hits"]]
        == [h["id"] for h in http_compare["runs"][0]["hits"]]
        == [h["id"] for h in cli_compare["runs"][0]["hits"]]
        == [h.id for h in py_compare.hits]
    )
    # one JSON shape for a comparison (compare.py `Comparison.to_json`): the CLI's is the server's
    assert set(cli_compare) == set(http_compare)
    assert set(cli_compare["runs"][0]) == set(http_compare["runs"][0])
    hit_keys = {tuple(sorted(h)) for c in (cli_compare, http_compare) for h in c["runs"][0]["hits"]}
    assert len(hit_keys) <= 1
    if where is None:  # the evaluation harness searches without filters
        run, _, _ = retrieve(col, using, {"q1": q}, k, None)
        assert list(run["q1"]) == api


@pytest.mark.slow
def test_more_like_this_over_a_recipe_matches_http(col: Collection, client: TestClient) -> None:
    first = col.items()[0].id
    hits = [h.id for h in col.similar(first, k=6, version="hybrid")]
    resp = client.get("/api/collections/books/similar", params={"id": first, "k": 6, "version": "hybrid"})
    assert resp.status_code == 200 and [h["id"] for h in resp.json()["hits"]] == hits
    assert first not in hits and len(hits) == 6


def _work(h: object) -> tuple[str, frozenset[str]]:
    """Title and author names as a person would compare them (written independently of rerank.py)."""
    meta = h.metadata  # type: ignore[attr-defined]
    return str(meta["title"]).strip().lower(), frozenset(
        a.strip().lower() for a in str(meta["authors"]).split(";")
    )


def _repeats(hits: list) -> int:
    seen: list[tuple[str, frozenset[str]]] = []
    repeats = 0
    for h in hits:
        title, authors = _work(h)
        if any(t == title and a & authors for t, a in seen):
            repeats += 1
        seen.append((title, authors))
    return repeats


@pytest.mark.slow
@pytest.mark.parametrize("using", ["minilm", "hybrid"])
def test_repeated_works_are_collapsed_without_losing_results(
    using: str, col: Collection, client: TestClient
) -> None:
    raw = col.search(COZY, k=5, version=using, collapse=False)
    gardens = [h for h in raw if h.metadata["title"] == "The Secret Garden"]
    if using == "minilm":  # the example, reproduced on real data before collapsing
        assert len(gardens) >= 2, [h.metadata["title"] for h in raw]
    hits = col.search(COZY, k=5, version=using)
    titles = [h.metadata["title"] for h in hits]
    assert len(hits) == 5 and titles.count("The Secret Garden") <= 1, titles
    if gardens:  # the best-ranked edition is the one kept
        assert gardens[0].id in [h.id for h in hits]
    # deeper lists hold each work once and still fill k (the search over-fetches and looks deeper)
    many = col.search(COZY, k=60, version=using)
    assert len(many) == 60 and _repeats(many) == 0
    assert _repeats(col.search(COZY, k=60, version=using, collapse=False)) > 0
    body = client.get(
        "/api/collections/books/search", params={"query": COZY, "k": 5, "version": using}
    ).json()
    assert [h["id"] for h in body["hits"]] == [h.id for h in hits]
    # the page draws what the API shows: one look for every hit
    assert body["hits"][0]["subtitle"] and body["hits"][0]["year"] and body["hits"][0]["tags"]


@pytest.mark.slow
def test_a_recipe_activated_is_the_default_search(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`activate books hybrid` makes the recipe what a search without a version answers with (API,
    CLI, HTTP); the active version stays the stored one; activating a version, or deleting the
    recipe, goes back to the version."""
    import shutil

    from embedscope.errors import NotFoundError
    from embedscope.serve import create_app

    copy = tmp_path / "home"
    shutil.copytree(root, copy)
    col = Collection.open("books", copy)
    q = "a detective solves a murder in a small village"
    dense = [h.id for h in col.search(q, 8, version="minilm")]
    fused = [h.id for h in col.search(q, 8, version="convex")]
    assert dense != fused  # else the test could not tell them apart
    assert [h.id for h in col.search(q, 8)] == dense

    some = col.items()[5].id
    similar = [h.id for h in col.similar(some, k=5)]
    vector = np.asarray(col.load_version("minilm").data.vectors[:1])
    nearest = [h.id for h in col.search_vectors(vector, k=5)[0]]

    col.activate("convex")
    assert col.default_search == "convex" and col.active_version == "minilm"
    assert [h.id for h in col.search(q, 8)] == fused
    # more-like-this and query vectors stay on the active version's vectors
    assert [h.id for h in col.similar(some, k=5)] == similar
    assert col.pipeline.similar(some, 5).using == "minilm"
    assert [h.id for h in col.search_vectors(vector, k=5)[0]] == nearest
    assert col.info()["default_search"] == "convex"
    cli = _cli(copy, monkeypatch, "search", "books", q, "-k", "8", "--json")
    assert [h["id"] for h in cli] == fused
    http = TestClient(create_app(["books"], root=copy)).get(
        "/api/collections/books/search", params={"query": q, "k": 8}
    )
    assert http.status_code == 200 and [h["id"] for h in http.json()["hits"]] == fused

    col.activate("minilm")
    assert col.default_search == "minilm" and [h.id for h in col.search(q, 8)] == dense
    col.activate("convex")
    col.delete_recipe("convex")
    assert col.default_search == "minilm"
    with pytest.raises(NotFoundError, match="no version or recipe 'nope'"):
        col.activate("nope")


def test_relevance_is_a_stated_scale_and_nonsense_is_no_good_match(
    col: Collection, client: TestClient
) -> None:
    """Issue 17: "xyzzy plugh" returned 10 confident hits. Every text search by a measured dense model
    (alone or as a recipe's part) gives each hit relevance = (cosine - 0.2) / 0.5 clipped to 0..1,
    the same through the API and HTTP; a list whose best hit is below 0.5 is "no good match"; the
    ranking is the search's own (relevance never reorders); BM25 alone and more-like-this have none."""
    from embedscope.search import relevance

    nonsense = col.pipeline.search("xyzzy plugh", 10, using="hybrid")
    assert len(nonsense.hits) == 10 and nonsense.good_match is False
    assert all(h.relevance is not None and h.relevance < relevance.GOOD for h in nonsense.hits)
    real = col.pipeline.search(COZY, 10, using="hybrid")
    assert real.good_match is True
    # a MiniLM version alone: relevance is its own cosine (the hit's score) on the stated scale, so it
    # falls as the rank does
    dense = col.pipeline.search(COZY, 10, using="minilm")
    assert [h.relevance for h in dense.hits] == [relevance.of_cosine(h.score, (0.2, 0.7)) for h in dense.hits]
    # a recipe: the same cosine for the same item, whichever part ranked it; the order is the fusion's
    by_id = {h.id: h.relevance for h in col.pipeline.search(COZY, 300, using="minilm").hits}
    assert all(h.relevance == pytest.approx(by_id[h.id], abs=2e-3) for h in real.hits if h.id in by_id)
    assert [h.id for h in real.hits] == [h.id for h in col.search(COZY, 10, version="hybrid")]
    sparse = col.pipeline.search(COZY, 5, using="bm25")
    assert sparse.good_match is None and all(h.relevance is None for h in sparse.hits)
    assert all(h.relevance is None for h in col.similar(dense.hits[0].id, k=5))
    body = client.get(
        "/api/collections/books/search", params={"query": "xyzzy plugh", "version": "hybrid"}
    ).json()
    assert body["good_match"] is False and {h["match"] for h in body["hits"]} <= {"weak", "poor"}
    assert [h["relevance"] for h in body["hits"]] == [h.relevance for h in nonsense.hits]
    body = client.get("/api/collections/books/search", params={"query": COZY, "version": "hybrid"}).json()
    assert body["good_match"] is True and body["hits"][0]["match"] in {"strong", "good", "weak", "poor"}


def test_relevance_is_the_whole_query_cosine_under_query_stages(col: Collection) -> None:
    """A split query's dense run holds the fused z-scores of its pieces and a Rocchio run the cosines
    of the expanded query: neither is on relevance's scale. Under those stages a hit's relevance is
    still the whole query's cosine with the item, as the MiniLM version alone gives it."""
    query = "A cozy mystery in a small english village. The detective is an old lady. Tea and gossip."
    everything = col.pipeline.search(query, len(col), using="minilm", collapse=False).hits
    by_id = {h.id: h.relevance for h in everything}
    for name, stages in [("pieces", {"split": {"min_words": 5}}), ("feedback", {"rocchio": {}})]:
        col.create_recipe(name, ["bm25", "minilm"], stages=stages)
        try:
            staged = col.pipeline.search(query, 10, using=name, collapse=False).hits
        finally:
            col.delete_recipe(name)
        assert len(staged) == 10 and all(h.id in by_id for h in staged)
        assert [h.relevance for h in staged] == pytest.approx([by_id[h.id] for h in staged], abs=2e-3), name
