"""Drift over time on real texts: a query log of vibe-like queries (first sentences of real book
descriptions) whose topic changes on the third day, items whose mix changes, rank-biased overlap,
and the `drift` command."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import EmbedscopeError
from embedscope.evaluate.drift import drift_report, rbo
from embedscope.evaluate.shift import item_drift, mmd_test, query_drift, windows
from embedscope.querylog import QueryLog, read_searches


def _vibe(description: str, words: int = 14) -> str:
    """A query a person might type: the start of a real description's first sentence."""
    first = str(description).split(". ")[0]
    return " ".join(first.split()[:words])


@pytest.fixture(scope="module")
def topics(books_frame: pd.DataFrame) -> dict[str, list[str]]:
    fiction = books_frame[books_frame["categories"] == "Fiction"].sample(frac=1.0, random_state=0)
    history = books_frame[books_frame["categories"].isin(["History", "Biography & Autobiography"])]
    history = history.sample(frac=1.0, random_state=0)
    return {
        "fiction": [_vibe(d) for d in fiction["description"][:160]],
        "history": [_vibe(d) for d in history["description"][:80]],
    }


def _write_log(folder: Path, days: list[list[str]], collection: str) -> None:
    """The server's own writer, one UTC day per list, plus lines drift must ignore."""
    log = QueryLog(folder)
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    for d, queries in enumerate(days):
        for i, q in enumerate(queries):
            ts = (start + timedelta(days=d, minutes=3 * i)).isoformat(timespec="milliseconds")
            endpoint = "/api/collections/{name}/search"
            log.write(
                {
                    "ts": ts,
                    "method": "GET",
                    "endpoint": endpoint,
                    "status": 200,
                    "collection": collection,
                    "query": q,
                }
            )
        log.write(
            {
                "ts": ts,
                "endpoint": "/api/collections/{name}/similar",
                "status": 200,
                "collection": collection,
                "item": "x",
            }
        )
        log.write(
            {
                "ts": ts,
                "endpoint": "/api/collections/{name}/search",
                "status": 400,
                "collection": collection,
                "query": "bad",
            }
        )
        log.write(
            {
                "ts": ts,
                "endpoint": "/api/collections/{name}/search",
                "status": 200,
                "collection": "other",
                "query": "x",
            }
        )
    log.close()
    with open(folder / "queries.jsonl", "a") as fh:
        fh.write('{"ts": "2026-03-0')  # a line cut short by a crash


# --- rank-biased overlap ---------------------------------------------------------------------------
def test_rbo_properties_and_equal_length_formula() -> None:
    ranking = [f"d{i}" for i in range(10)]
    assert rbo(ranking, ranking) == pytest.approx(1.0)
    assert rbo(ranking[:4], ranking) == pytest.approx(1.0)  # a prefix agrees as far as it goes
    assert rbo(ranking[:5], [f"x{i}" for i in range(5)]) == 0.0
    top_swapped = [ranking[1], ranking[0], *ranking[2:]]
    bottom_swapped = [*ranking[:8], ranking[9], ranking[8]]
    # top-weighted: disagreeing at the top costs more than at the bottom (Jaccard sees neither)
    assert rbo(top_swapped, ranking) < rbo(bottom_swapped, ranking) < 1.0
    rng = random.Random(0)
    for _ in range(20):
        a, b = rng.sample(range(25), 10), rng.sample(range(25), 10)
        # Webber et al. eq. 30 for two lists of equal depth k, summed directly
        p, k = 0.9, 10
        direct = sum(len(set(a[:d]) & set(b[:d])) / d * p**d for d in range(1, k + 1)) * (1 - p) / p
        direct += len(set(a) & set(b)) / k * p**k
        assert rbo(a, b) == pytest.approx(direct)
        assert rbo(a, b) == pytest.approx(rbo(b, a))
    short, long_ = rng.sample(range(25), 4), rng.sample(range(25), 10)
    assert 0.0 <= rbo(short, long_) <= 1.0 and rbo(short, long_) == pytest.approx(rbo(long_, short))
    with pytest.raises(EmbedscopeError):
        rbo(ranking, ranking, p=1.0)


# --- the query log -------------------------------------------------------------------------------
def test_read_searches_keeps_successful_searches_of_one_collection(tmp_path: Path) -> None:
    _write_log(tmp_path, [["first query", "second"], ["third"]], "books")
    searches, skipped = read_searches(tmp_path, "books")
    assert [s["query"] for s in searches] == ["first query", "second", "third"]
    assert skipped == 1  # the torn line
    assert [w.label for w in windows(searches, "day")] == ["2026-03-01", "2026-03-02"]
    assert [len(w.texts) for w in windows(searches, 2)] == [2, 1]
    # rotated files are read oldest first (queries.jsonl.2, .1, then queries.jsonl)
    os.rename(tmp_path / "queries.jsonl", tmp_path / "queries.jsonl.1")
    _write_log(tmp_path, [["later"]], "books")
    # sorted by time; equal times keep file order, the rotated (older) file first
    assert [s["query"] for s in read_searches(tmp_path, "books")[0]] == [
        "first query",
        "later",
        "second",
        "third",
    ]
    assert len(read_searches(tmp_path / "queries.jsonl.1")[0]) == 5  # one file, all collections
    with pytest.raises(EmbedscopeError, match="not found"):
        read_searches(tmp_path / "nope")


# --- query drift ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_query_drift_separates_a_topic_change_from_more_of_the_same(
    books_300: Collection, topics: dict[str, list[str]], tmp_path: Path
) -> None:
    fiction, history = topics["fiction"], topics["history"]
    _write_log(tmp_path, [fiction[:80], fiction[80:160], history[:80]], books_300.name)
    out = query_drift(books_300, tmp_path, window="day")
    first, same, changed = out["windows"]
    assert [w["queries"] for w in out["windows"]] == [80, 80, 80]
    assert "mmd2" not in first
    # day 2 asks for other novels: same distribution; day 3 asks for history and lives
    assert same["p"] > 0.05
    assert changed["p"] < 0.01 and changed["mmd2"] > same["mmd2"]
    assert changed["centroid_shift"] > same["centroid_shift"]
    assert {m["text"] for m in changed["movers"]} <= set(history)
    by_count = query_drift(books_300, tmp_path, window=80)
    assert [w["p"] for w in by_count["windows"][1:]] == [same["p"], changed["p"]]
    with pytest.raises(EmbedscopeError, match="two windows"):
        query_drift(books_300, tmp_path, window=1000)


def test_mmd_on_real_sentence_vectors_is_calibrated(
    books_300: Collection, topics: dict[str, list[str]]
) -> None:
    """Two halves of one pool of real query vectors: permutation p-values are not small too often."""
    enc = books_300.load_version().encoder
    vectors = enc.encode_queries(topics["fiction"])
    rng = random.Random(1)
    ps = []
    for seed in range(10):
        order = rng.sample(range(len(vectors)), len(vectors))
        half = len(order) // 2
        ps.append(mmd_test(vectors[order[:half]], vectors[order[half:]], permutations=200, seed=seed)["p"])
    assert sum(p < 0.05 for p in ps) <= 2  # ~0.5 expected under the null
    # the statistic is the unbiased MMD^2 (Gretton et al. 2012, eq. 3), summed out directly
    x, y = vectors[:12], vectors[12:30]
    x, y = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    z = np.vstack([x, y])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    sigma2 = np.median(d2[np.triu_indices(len(z), 1)]) / 2
    k = np.exp(-d2 / (2 * sigma2))
    m, n = len(x), len(y)
    kxx = sum(k[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k[m + i, m + j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k[i, m + j] for i in range(m) for j in range(n)) / (m * n)
    assert mmd_test(x, y, permutations=10)["mmd2"] == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-6)
    with pytest.raises(EmbedscopeError, match="at least 2"):
        mmd_test(vectors[:1], vectors)


# --- item drift ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_item_drift_since_a_version_was_embedded(books_frame: pd.DataFrame, home: Path) -> None:
    fiction = books_frame[books_frame["categories"] == "Fiction"].sample(240, random_state=2)
    history = books_frame[books_frame["categories"] == "History"].sample(120, random_state=2)
    col = Collection.create("drifting")
    kw = {"id_field": "isbn13", "template": "{title}. {description}", "metadata": ["title", "categories"]}
    col.ingest(fiction.head(120), **kw)
    col.embed("minilm")
    unchanged = item_drift(col)
    assert unchanged["added"] == unchanged["changed"] == unchanged["deleted"] == 0
    assert "no data drift" in unchanged["note"]
    col.ingest(fiction.tail(120), **kw)  # more novels: the mix is the same
    more = item_drift(col)
    assert more["added"] == 120 and more["encoded"] == 120 and more["p"] > 0.05
    # the shop keeps half its novels and fills the shelves with history
    kept = fiction.head(120).head(60)
    col.ingest(pd.concat([kept, history]), replace=True, **kw)
    shifted = item_drift(col, permutations=500)
    # against what the version embedded (120 novels): 60 of them gone, 120 history books new
    assert (shifted["added"], shifted["deleted"], shifted["items_now"]) == (120, 60, 180)
    assert shifted["p"] < 0.01 and shifted["mmd2"] > more["mmd2"]
    assert shifted["centroid_shift"] > more["centroid_shift"]
    history_titles = set(history["title"])
    assert sum(m["text"] in history_titles for m in shifted["movers"]) >= 4
    report = drift_report(col, items=True)
    assert set(report) == {"collection", "items"}
    with pytest.raises(EmbedscopeError, match="say what to compare"):
        drift_report(col)


# --- CLI -----------------------------------------------------------------------------------------
def _cli(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "embedscope.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.slow
def test_drift_command(
    books_frame: pd.DataFrame, topics: dict[str, list[str]], home: Path, tmp_path: Path
) -> None:
    col = Collection.create("books")
    col.ingest(
        books_frame.head(100), id_field="isbn13", template="{title}. {description}", metadata=["title"]
    )
    col.embed("minilm")
    col.embed("bm25")
    logs = tmp_path / "logs"
    _write_log(logs, [topics["fiction"][:40], topics["history"][:40]], "books")
    png = tmp_path / "drift.png"
    out = _cli(
        ["drift", "books", "--queries", "--log", str(logs), "--json", "--plot", str(png)], home, tmp_path
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["queries"]["windows"][1]["p"] < 0.01
    assert png.stat().st_size > 5000 and data["plot"] == str(png)
    text = _cli(
        ["drift", "books", "minilm", "bm25", "--queries", "--log", str(logs), "--items"], home, tmp_path
    )
    assert text.returncode == 0, text.stderr
    assert "neighbour RBO" in text.stdout and "query drift" in text.stdout and "no data drift" in text.stdout
    for args, message in [
        (["drift", "books"], "say what to compare"),
        (["drift", "books", "minilm"], "needs two versions"),
        (["drift", "books", "--queries"], "needs --log"),
        (["drift", "books", "--queries", "--log", str(logs), "--window", "1"], "--window must be"),
        (["drift", "books", "--items", "--version", "bm25"], "is sparse"),
    ]:
        bad = _cli(args, home, tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1
