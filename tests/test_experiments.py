"""Online experiments on real rankings: SciFact queries searched with BM25 and TF-IDF over the
judged abstracts plus others, simulated users clicking by the qrels (cascade model), the durable
event log (threads, a torn last line, kill -9), and the experiment CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, chi2_contingency

from embedscope import Collection
from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.experiments import Experiments, bucket, configurations, report, search_ranker, team_draft
from embedscope.experiments.clickmodel import CLICK_MODELS
from embedscope.experiments.eventlog import EventLog, read_events
from embedscope.experiments.report import sign_test, two_proportion_test

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"


@pytest.fixture(scope="module")
def scifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Collection, dict, dict]:
    """The abstracts judged for SciFact's test queries plus 400 others, with BM25 and TF-IDF versions;
    returns (collection, test queries, qrels)."""
    from embedscope.sources import load_beir

    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT} (../shared/data is absent)")
    ds = load_beir(SCIFACT, "test")
    judged = {d for rels in ds.qrels.values() for d in rels}
    others = [d for d in ds.corpus if d not in judged][:400]
    records = [{"_id": d, **ds.corpus[d]} for d in [*judged, *others]]
    col = Collection.create("scifact-exp", root=tmp_path_factory.mktemp("exp"))
    col.ingest(records, id_field="_id", template="{title} {text}", metadata=["title"])
    col.embed("bm25")
    col.embed("tfidf")
    queries = {q: ds.queries[q] for q in ds.qrels}
    return col, queries, ds.qrels


def _ids(hits: list) -> list[str]:
    return [h.id for h in hits]


# --- team draft -----------------------------------------------------------------------------------
def test_team_draft_on_real_rankings(scifact: tuple[Collection, dict, dict]) -> None:
    col, queries, _ = scifact
    rank_a, rank_b = search_ranker(col.pipeline, "bm25", k=10), search_ranker(col.pipeline, "tfidf", k=10)
    rng = random.Random(7)
    first_from_a = 0
    qids = sorted(queries)[:60]
    for qid in qids:
        a, b = _ids(rank_a(queries[qid])), _ids(rank_b(queries[qid]))
        merged = team_draft(a, b, 10, rng)
        ids = merged.results
        assert len(ids) == len(set(ids)) == min(10, len(set(a) | set(b)))
        # each side's picks keep that side's order, and come from that side
        for side, ranking in (("a", a), ("b", b)):
            mine = [i for i, t in zip(ids, merged.teams, strict=True) if t == side]
            assert all(i in ranking for i in mine)
            assert [ranking.index(i) for i in mine] == sorted(ranking.index(i) for i in mine)
        # while both sides have results left, the teams never differ by more than one pick
        for n in range(1, len(ids) + 1):
            teams = merged.teams[:n]
            assert abs(teams.count("a") - teams.count("b")) <= 1
        first_from_a += merged.teams[0] == "a"
        # the first result is always one of the two rankings' top results
        assert ids[0] in (a[0], b[0])
    # the coin decides who picks first: about half the time each (binomial 60, p = 0.5)
    assert binomtest(first_from_a, len(qids), 0.5).pvalue > 0.001


def test_team_draft_of_identical_rankings_shows_that_ranking() -> None:
    ranking = [f"doc{i}" for i in range(10)]
    for seed in range(20):
        merged = team_draft(ranking, list(ranking), 10, random.Random(seed))
        assert merged.results == ranking  # the user sees exactly the one ranking


def test_team_draft_fills_from_the_longer_list() -> None:
    merged = team_draft(["x", "y"], ["y", "p", "q", "r"], 5, random.Random(0))
    assert sorted(merged.results) == ["p", "q", "r", "x", "y"]
    assert merged.teams[-1] == "b"


# --- A/B buckets ----------------------------------------------------------------------------------
def test_buckets_are_balanced_stable_and_independent_across_experiments() -> None:
    users = [f"user-{i}" for i in range(4000)]
    first = [bucket("exp1", u) for u in users]
    second = [bucket("exp2", u) for u in users]
    assert binomtest(first.count("a"), len(users), 0.5).pvalue > 0.001
    same = sum(x == y for x, y in zip(first, second, strict=True))
    assert binomtest(same, len(users), 0.5).pvalue > 0.001  # not the same split again
    # stable across processes (Python's own hash() is salted per process; this must not be)
    code = (
        "from embedscope.experiments import bucket; "
        "print(''.join(bucket('exp1', f'user-{i}') for i in range(200)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "".join(first[:200])
    with pytest.raises(EmbedscopeError, match="user or session id"):
        bucket("exp1", "")


# --- tests of significance --------------------------------------------------------------------------
def test_sign_test_equals_scipy_binomtest() -> None:
    for a, b in [(0, 0), (0, 1), (3, 9), (10, 10), (40, 61), (500, 455), (7, 0)]:
        expected = 1.0 if a + b == 0 else binomtest(b, a + b, 0.5).pvalue
        assert sign_test(a, b) == pytest.approx(expected, rel=1e-9)
    arr = sign_test(np.array([3, 40]), np.array([9, 61]))
    assert arr[1] == pytest.approx(binomtest(61, 101, 0.5).pvalue)


def test_two_proportion_z_test_equals_chi_square_without_correction() -> None:
    for ca, na, cb, nb in [(30, 100, 45, 100), (300, 1000, 280, 990), (5, 50, 5, 60)]:
        z, p = two_proportion_test(ca, na, cb, nb)
        chi2, p_chi, _, _ = chi2_contingency([[ca, na - ca], [cb, nb - cb]], correction=False)
        assert z**2 == pytest.approx(chi2) and p == pytest.approx(p_chi)
        assert (z > 0) == (cb / nb > ca / na)
    assert two_proportion_test(0, 10, 0, 10) == (0.0, 1.0)  # nobody clicked: rates cannot differ
    assert two_proportion_test(3, 10, 0, 0) == (0.0, 1.0)


# --- click model ------------------------------------------------------------------------------------
def test_cascade_click_models() -> None:
    rel = np.zeros((2000, 10), dtype=bool)
    rel[:, [1, 4]] = True
    rng = np.random.default_rng(0)
    perfect = CLICK_MODELS["perfect"].clicks(rel, rng)
    assert (perfect == rel).all()  # clicks every relevant result, nothing else, never stops
    nav = CLICK_MODELS["navigational"].clicks(rel, rng)
    # after a relevant click the navigational user mostly stops: position 4 is clicked far less
    # often than position 1 although both are relevant
    assert nav[:, 1].mean() > 0.9 and nav[:, 4].mean() < 0.2
    assert nav[:, 0].mean() < 0.1


# --- lifecycle and serving ------------------------------------------------------------------------
def test_experiment_lifecycle_and_bad_input(scifact: tuple[Collection, dict, dict], tmp_path: Path) -> None:
    col, queries, _ = scifact
    exps = Experiments(tmp_path / "exps")
    names = configurations(col)
    assert {"bm25", "tfidf"} <= set(names)
    with pytest.raises(EmbedscopeError, match="two different"):
        exps.start("bm25", "bm25", configurations=names)
    with pytest.raises(NotFoundError, match="no search configuration 'nope'"):
        exps.start("bm25", "nope", configurations=names)
    with pytest.raises(EmbedscopeError, match="unknown method"):
        exps.start("bm25", "tfidf", method="bandit", configurations=names)
    exp = exps.start("bm25", "tfidf", configurations=names)
    assert exp.name == "bm25-vs-tfidf" and exp.status == "running" and exps.running() == exp
    with pytest.raises(ConflictError, match="is running"):
        exps.start("tfidf", "bm25", configurations=names)
    rank_a, rank_b = search_ranker(col.pipeline, "bm25"), search_ranker(col.pipeline, "tfidf")
    q = queries[sorted(queries)[0]]
    imp = exps.present(exp, q, rank_a, rank_b, k=10, user="u1", rng=random.Random(1))
    assert imp.ids and set(imp.teams) <= {"a", "b"}
    assert imp.results[0].metadata.get("title") is not None  # the hits themselves, ready to display
    with pytest.raises(EmbedscopeError, match="outside"):
        exps.click(exp.name, imp.id, 10)
    with pytest.raises(ConflictError, match="not at position"):
        exps.click(exp.name, imp.id, 0, item="not-this-one")
    with pytest.raises(NotFoundError, match="no impression"):
        exps.click(exp.name, "0" * 32, 0)
    click = exps.click(exp.name, imp.id, 0, item=imp.ids[0])
    assert click["side"] == imp.teams[0] and click["query"] == q
    # a second process (a restarted server) finds the impression in the log
    again = Experiments(tmp_path / "exps")
    assert again.click(exp.name, imp.id, 1)["item"] == imp.ids[1]
    stopped = exps.stop()
    assert stopped.status == "stopped" and exps.running() is None
    with pytest.raises(ConflictError, match="stopped"):
        exps.click(exp.name, imp.id, 2)
    with pytest.raises(ConflictError, match="already stopped"):
        exps.stop(exp.name)
    with pytest.raises(NotFoundError, match="no experiment is running"):
        exps.stop()
    second = exps.start("bm25", "tfidf", method="ab", configurations=names)
    assert second.name == "bm25-vs-tfidf-2"
    with pytest.raises(EmbedscopeError, match="user or session id"):
        exps.present(second, q, rank_a, rank_b)
    with pytest.raises(ConflictError, match="already exists"):
        exps.stop()
        exps.start("bm25", "tfidf", name="bm25-vs-tfidf", configurations=names)
    assert [e.name for e in exps.list()] == ["bm25-vs-tfidf", "bm25-vs-tfidf-2"]
    out = report(exps, "bm25-vs-tfidf")
    assert out["impressions"] == 1 and out["clicks"]["a"] + out["clicks"]["b"] == 2
    log = exps.events_path(exp.name)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def _simulate(
    exps: Experiments, method: str, rank_good, rank_bad, queries: dict, qrels: dict, n: int, seed: int
) -> dict:
    """n impressions of simulated navigational users searching SciFact test queries."""
    rng = np.random.default_rng(seed)
    coin = random.Random(seed)
    exp = exps.start("good", "bad", method=method)
    model = CLICK_MODELS["navigational"]
    qids = sorted(queries)
    for i in range(n):
        qid = qids[rng.integers(len(qids))]
        imp = exps.present(exp, qid, rank_good, rank_bad, k=10, user=f"user-{i}", rng=coin)
        rel = np.array([[qrels[qid].get(d, 0) > 0 for d in imp.ids]])
        for pos in np.flatnonzero(model.clicks(rel, rng)[0]):
            exps.click(exp.name, imp.id, int(pos))
    exps.stop()
    return report(exps, exp.name, plot=exps.folder / f"{exp.name}.png")


@pytest.mark.slow
def test_interleaving_finds_the_better_ranking_and_no_difference_between_equals(
    scifact: tuple[Collection, dict, dict], tmp_path: Path
) -> None:
    """BM25's own top 10 against the same 10 results in reverse order: same documents, worse order.
    Interleaving must prefer the real order; A against A must show no winner."""
    col, queries, qrels = scifact
    run = {q: _ids(col.search(text, 10, version="bm25")) for q, text in queries.items()}

    def good(qid: str) -> list[str]:
        return run[qid]

    def reversed_(qid: str) -> list[str]:
        return run[qid][::-1]

    exps = Experiments(tmp_path / "exps", fsync=False)
    out = _simulate(exps, "interleave", good, reversed_, queries, qrels, 400, seed=3)
    assert out["winner"] == "a" and out["test"]["p"] < 0.01
    assert out["wins"]["a"] > out["wins"]["b"] and out["impressions"] == 400
    assert out["test"]["p"] == pytest.approx(
        binomtest(out["wins"]["b"], out["wins"]["a"] + out["wins"]["b"]).pvalue
    )
    png = Path(out["plot"])
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    same = _simulate(exps, "interleave", good, good, queries, qrels, 400, seed=4)
    assert same["winner"] is None and same["test"]["p"] > 0.05
    # identical lists give every click to whichever side picked that result: no side is favoured
    assert abs(same["wins"]["a"] - same["wins"]["b"]) < 0.15 * (same["wins"]["a"] + same["wins"]["b"])


@pytest.mark.slow
def test_ab_reports_click_through_per_side(scifact: tuple[Collection, dict, dict], tmp_path: Path) -> None:
    col, queries, qrels = scifact
    run = {q: _ids(col.search(text, 10, version="bm25")) for q, text in queries.items()}
    shuffled = {q: random.Random(q).sample(list(col.store.item_hashes()), 10) for q in queries}
    exps = Experiments(tmp_path / "exps", fsync=False)
    out = _simulate(exps, "ab", run.__getitem__, shuffled.__getitem__, queries, qrels, 600, seed=5)
    a, b = out["sides"]["a"], out["sides"]["b"]
    assert a["impressions"] + b["impressions"] == 600
    assert binomtest(a["impressions"], 600, 0.5).pvalue > 0.001  # the hash splits users evenly
    # BM25's list against 10 random abstracts: users click far more often on BM25's side
    assert a["ctr"] > b["ctr"] and out["winner"] == "a" and out["test"]["z"] < 0


# --- the event log --------------------------------------------------------------------------------
def test_event_log_threads_torn_line_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, fsync=False)

    def writer(t: int) -> None:
        for i in range(200):
            log.append({"type": "impression", "id": f"{t}-{i}", "query": "ünïcode \n and newlines"})

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    read = read_events(path)
    assert read.skipped == 0 and len({r["id"] for r in read.records}) == 1200
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # a crash (power cut) in the middle of a write leaves a torn last line
    with open(path, "ab") as fh:
        fh.write(b'{"type": "click", "impression": "0-1", "posi')
    log = EventLog(path)
    assert log.repaired
    log.append({"type": "click", "impression": "0-1", "position": 0})
    log.close()
    read = read_events(path)
    assert read.skipped == 1 and len(read.records) == 1201  # only the torn record is lost
    assert read.records[-1] == {"type": "click", "impression": "0-1", "position": 0}


def test_event_log_survives_kill_9(tmp_path: Path) -> None:
    """A writer killed with SIGKILL loses nothing that append() had returned for."""
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        from embedscope.experiments.eventlog import EventLog
        log = EventLog({str(path)!r}, fsync=False)
        i = 0
        while True:
            log.append({{"type": "impression", "id": i, "pad": "x" * 300}})
            if i % 50 == 0:
                print(i, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    deadline = time.monotonic() + 60
    while acknowledged < 2000 and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    read = read_events(path)
    ids = [r["id"] for r in read.records]
    assert acknowledged >= 2000 and read.skipped == 0
    assert ids == list(range(len(ids))) and len(ids) > acknowledged


def test_event_log_rotates_into_segments_read_in_order(tmp_path: Path) -> None:
    """Issue 16, item 11: the log was never rotated. It continues in a new segment every
    `max_bytes`, renaming nothing, and readers read every segment in order (a reopened log too)."""
    from embedscope.experiments.eventlog import segments

    path = tmp_path / "x.events.jsonl"
    log = EventLog(path, fsync=False, max_bytes=400)
    for i in range(30):
        log.append({"type": "impression", "id": i, "pad": "y" * 40})
    log.close()
    log = EventLog(path, fsync=False, max_bytes=400)  # a restart continues in the last segment
    log.append({"type": "impression", "id": 30})
    log.close()
    parts = segments(path)
    assert len(parts) >= 5 and parts[1].name == "x.events.1.jsonl"
    assert all(p.stat().st_size <= 400 + 100 for p in parts)
    assert [r["id"] for r in read_events(path).records] == list(range(31))


def test_clicks_are_deduplicated_across_a_restart(tmp_path: Path) -> None:
    """A click repeated after the server restarted (a fresh `Experiments` reading the log back) is
    still recognised as the duplicate it is; a click the disk refused can be retried."""
    exps = Experiments(tmp_path / "experiments", fsync=False)
    exp = exps.start("a", "b", name="dedupe")
    imp = exps.present(exp, "q", lambda q: ["x", "y", "z"], lambda q: ["y", "w"], k=3)
    assert not exps.click("dedupe", imp.id, 1)["duplicate"]
    exps.close()
    again = Experiments(tmp_path / "experiments", fsync=False)
    assert again.click("dedupe", imp.id, 1)["duplicate"]
    assert not again.click("dedupe", imp.id, 0)["duplicate"]
    clicks = [r for r in read_events(again.events_path("dedupe")).records if r["type"] == "click"]
    assert [c["position"] for c in clicks] == [1, 0]
    out = report(again, "dedupe")
    assert out["log"]["clicks_logged"] == 2 == out["clicks"]["a"] + out["clicks"]["b"]
    again.close()


# --- CLI ------------------------------------------------------------------------------------------
def _cli(args: list[str], home: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "embedscope.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def test_experiment_cli(books_frame, home: Path, tmp_path: Path) -> None:  # noqa: ANN001
    col = Collection.create("books")
    col.ingest(
        books_frame.head(150), id_field="isbn13", template="{title}. {description}", metadata=["title"]
    )
    col.embed("bm25")
    col.embed("tfidf")
    helptext = _cli(["experiment", "start", "--help"], home).stdout
    assert "interleave" in helptext and "stable hash" in helptext
    bad = _cli(["experiment", "start", "books", "--a", "bm25", "--b", "minilm"], home, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no search configuration 'minilm'")
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = _cli(["experiment", "report", "books"], home, check=False)
    assert bad.returncode == 2 and "no experiments yet" in bad.stderr
    started = json.loads(
        _cli(["experiment", "start", "books", "--a", "bm25", "--b", "tfidf", "--json"], home).stdout
    )
    assert started["status"] == "running" and started["method"] == "interleave"
    exps = Experiments.of(Collection.open("books"))
    exp = exps.get()
    rng = random.Random(0)
    for query in ("a war story", "love and loss in a small town", "dragons and magic"):
        imp = exps.present(
            exp, query, search_ranker(col.pipeline, "bm25"), search_ranker(col.pipeline, "tfidf"), rng=rng
        )
        exps.click(exp.name, imp.id, 0)
    exps.close()
    listed = _cli(["experiment", "list", "books"], home).stdout
    assert "bm25-vs-tfidf" in listed and "running" in listed
    png = tmp_path / "pref.png"
    out = json.loads(_cli(["experiment", "report", "books", "--json", "--plot", str(png)], home).stdout)
    assert out["impressions"] == 3 and out["wins"]["ties"] == 0 and png.exists()
    text = _cli(["experiment", "report", "books"], home).stdout
    assert "sign test" in text and "no significant difference yet" in text
    _cli(["experiment", "stop", "books"], home)
    again = _cli(["experiment", "stop", "books"], home, check=False)
    assert again.returncode == 2 and "no experiment is running" in again.stderr
