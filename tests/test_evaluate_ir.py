"""BEIR evaluation: loading and its bad-input errors, trec_eval metrics, caching, TREC files, paired
comparison, the CLI, and the reproduction of published SciFact numbers (slow)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.evaluate.ir import (
    compare_runs,
    evaluate_beir,
    read_qrels,
    read_trec_run,
    score_run,
    write_outputs,
)
from embedscope.sources import load_beir

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"

DOCS = [
    ("d1", "Aspirin", "Aspirin reduces the risk of heart attack in adults."),
    ("d2", "Vitamin D", "Vitamin D deficiency is linked to weak bones and fractures."),
    ("d3", "Smoking", "Smoking causes lung cancer and other respiratory diseases."),
    ("d4", "Exercise", "Regular exercise lowers blood pressure in older people."),
    ("d5", "Sleep", "Short sleep is associated with obesity in children."),
    ("d6", "Coffee", "Coffee drinking shows no link with mortality in large cohorts."),
]
QUERIES = [
    ("q1", "does aspirin reduce heart attack risk"),
    ("q2", "smoking and lung cancer"),
    ("q3", "sleep duration and childhood obesity"),
    ("q4", "an unjudged query about coffee"),
]
QRELS = [("q1", "d1", 1), ("q2", "d3", 1), ("q3", "d5", 1)]


def write_beir(
    folder: Path,
    docs: list[tuple[str, str, str]] = DOCS,
    queries: list[tuple[str, str]] = QUERIES,
    qrels: list[tuple[str, str, int]] = QRELS,
) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for did, title, text in docs:
            fh.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for qid, text in queries:
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q, d, s in qrels:
            fh.write(f"{q}\t{d}\t{s}\n")
    return folder


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int, str, str]:
    from embedscope.cli import main
    from embedscope.cli.app import console, err_console

    monkeypatch.setattr(sys, "argv", ["embedscope", *args])
    for con in (console, err_console):  # wide enough that table headers are not elided
        monkeypatch.setattr(con, "_width", 200)
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


# --- loading and bad input ----------------------------------------------------------------------
def test_load_beir_counts_unknown_references_and_unjudged_queries(tmp_path: Path) -> None:
    qrels = QRELS + [("q1", "nope", 1), ("q1", "nope2", 1), ("ghost", "d2", 1)]
    ds = load_beir(write_beir(tmp_path, qrels=qrels))
    assert set(ds.qrels) == {"q1", "q2", "q3"}
    assert ds.qrels["q1"] == {"d1": 1}  # the unknown documents are dropped, counted below
    text = " | ".join(ds.warnings)
    assert "2 judgement(s) reference documents not in the corpus" in text
    assert "1 judgement(s) reference queries not in queries.jsonl" in text
    assert "1 of 4 queries have no judgements" in text


def test_load_beir_errors(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "a")
    (folder / "qrels" / "test.tsv").write_text("")
    with pytest.raises(EmbedscopeError, match="no judgements .the file is empty"):
        load_beir(folder)

    folder = write_beir(tmp_path / "b", qrels=[("q1", "zzz", 1)])
    with pytest.raises(EmbedscopeError, match="no usable judgements .all 1 reference unknown"):
        load_beir(folder)

    folder = write_beir(tmp_path / "c")
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    lines[3] = '{"_id": "d4", "title": "broken'
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(EmbedscopeError, match="corpus.jsonl: line 4 is not valid JSON"):
        load_beir(folder)

    folder = write_beir(tmp_path / "d")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(NotFoundError, match="missing queries.jsonl"):
        load_beir(folder)
    with pytest.raises(NotFoundError, match=r"missing qrels/dev.tsv \(qrels splits present: test\)"):
        load_beir(write_beir(tmp_path / "e"), split="dev")
    with pytest.raises(NotFoundError, match="folder not found"):
        load_beir(tmp_path / "nowhere")

    folder = write_beir(tmp_path / "f")
    (folder / "queries.jsonl").write_text('{"text": "no id"}\n')
    with pytest.raises(EmbedscopeError, match="queries.jsonl: record 1 has no '_id'"):
        load_beir(folder)

    folder = write_beir(tmp_path / "g")
    (folder / "qrels" / "test.tsv").write_text("q1\td1\n")
    with pytest.raises(EmbedscopeError, match="line 1 has 2 columns"):
        load_beir(folder)


# --- metrics ------------------------------------------------------------------------------------
def test_score_run_matches_the_formulas() -> None:
    qrels = {"a": {"x": 1, "y": 1}, "b": {"z": 1}, "c": {"w": 1}}
    run = {"a": {"n1": 3.0, "x": 2.0, "n2": 1.0}, "b": {"z": 1.0}}  # c unanswered -> 0
    m = score_run(qrels, run)
    ndcg_a = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["nDCG@10"] == pytest.approx((ndcg_a + 1.0 + 0.0) / 3)
    assert m["Recall@100"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert m["MRR@10"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert m["MAP@100"] == pytest.approx((0.5 / 2 + 1.0 + 0.0) / 3)


def test_compare_runs_paired_tests() -> None:
    qrels = {f"q{i}": {f"rel{i}": 1} for i in range(30)}
    good = {q: {f"rel{i}": 2.0, "junk": 1.0 + i % 3} for i, q in enumerate(qrels)}  # rank 1 or 2
    bad = {q: {"junk": 2.0, "junk2": 1.5, f"rel{i}": 1.0} for i, q in enumerate(qrels)}
    res = compare_runs(qrels, bad, good, resamples=2000)
    ndcg = next(r for r in res["metrics"] if r["metric"] == "nDCG@10")
    assert ndcg["diff"] > 0.2 and ndcg["wins"] + ndcg["ties"] == 30 and ndcg["wins"] >= 10
    assert ndcg["p_t"] < 1e-6 and ndcg["p_rand"] < 0.01
    same = compare_runs(qrels, good, good, resamples=500)
    assert all(r["diff"] == 0 and r["p_t"] == 1.0 and r["p_rand"] == 1.0 for r in same["metrics"])
    with pytest.raises(EmbedscopeError, match="no judged query is answered by run B"):
        compare_runs(qrels, good, {"other": {"d": 1.0}})


def test_trec_files_round_trip_and_errors(tmp_path: Path) -> None:
    from embedscope.evaluate.ir import write_trec_run

    run = {"q1": {"a": 0.5, "b": 0.9}, "q2": {"c": 1.0}}
    write_trec_run(tmp_path / "r.trec", run, "t")
    first = (tmp_path / "r.trec").read_text().splitlines()[0].split()
    assert first == ["q1", "Q0", "b", "1", "0.900000", "t"]
    assert read_trec_run(tmp_path / "r.trec") == run
    (tmp_path / "bad.trec").write_text("q1 Q0 a 1 0.5 t\nq1 Q0 b 2 oops t\n")
    with pytest.raises(EmbedscopeError, match="line 2: score 'oops'"):
        read_trec_run(tmp_path / "bad.trec")
    (tmp_path / "q.txt").write_text("q1 0 a 1\nq1 0 b\n")
    with pytest.raises(EmbedscopeError, match="line 2 has 3 columns|relevance"):
        read_qrels(tmp_path / "q.txt")
    with pytest.raises(NotFoundError):
        read_trec_run(tmp_path / "missing.trec")


# --- the harness on a tiny data set -------------------------------------------------------------
def test_evaluate_small_dataset_caches_and_writes_outputs(tmp_path: Path, home: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    report = evaluate_beir(folder, "bm25,tfidf", k=5)
    assert report.queries == 3 and report.documents == 6
    bm25 = report.result("bm25")
    # each judged query shares rare words with exactly its relevant document
    assert bm25.metrics["nDCG@10"] == pytest.approx(1.0)
    assert bm25.encoded == 6 and not bm25.cached and bm25.fit_seconds is not None
    assert all(len(docs) <= 5 for docs in bm25.run.values())
    paths = write_outputs(report, tmp_path / "out")
    data = json.loads(Path(paths["metrics"]).read_text())
    assert [r["encoder"] for r in data["results"]] == ["bm25", "tfidf"]
    assert Path(paths["chart"]).read_bytes()[:4] == b"\x89PNG"
    reread = read_trec_run(Path(paths["runs"]) / "bm25.trec")
    assert score_run(load_beir(folder).qrels, reread) == pytest.approx(bm25.metrics)

    again = evaluate_beir(folder, "bm25,tfidf", k=5)
    for r in again.results:
        assert r.cached and r.encoded == 0
        assert r.metrics == pytest.approx(report.result(r.encoder).metrics)
        assert r.fit_seconds == report.result(r.encoder).fit_seconds  # timings of the cached fit

    # a changed corpus: learners are refitted on it and re-encode everything
    write_beir(folder, docs=DOCS + [("d7", "Tea", "Green tea and liver health.")])
    third = evaluate_beir(folder, "bm25", k=5)
    assert third.result("bm25").encoded == 7 and third.documents == 7


def test_evaluate_rejects_unknown_encoder_before_work(tmp_path: Path, home: Path) -> None:
    with pytest.raises(NotFoundError, match="unknown encoder.*nosuch"):
        evaluate_beir(write_beir(tmp_path / "x"), "bm25,nosuch")
    assert not home.exists() or not any(home.iterdir())


def test_cli_evaluate_and_compare(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = write_beir(tmp_path / "tiny", qrels=QRELS + [("q2", "ghost", 1)])
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        ["evaluate", str(folder), "-e", "bm25,tfidf", "-o", str(out)], monkeypatch, capsys
    )
    assert code == 0, stderr
    assert "nDCG@10" in stdout and "bm25" in stdout and "encoded 12 documents" in stdout
    assert "1 judgement(s) reference documents not in the corpus" in stderr
    code, stdout, _ = run_cli(
        ["evaluate", str(folder), "-e", "bm25,tfidf", "-o", str(out)], monkeypatch, capsys
    )
    assert "cached: 0 documents encoded" in stdout

    qrels = folder / "qrels" / "test.tsv"
    args = [
        "compare-runs",
        str(out / "runs" / "tfidf.trec"),
        str(out / "runs" / "bm25.trec"),
        "--qrels",
        str(qrels),
    ]
    code, stdout, _ = run_cli([*args, "--json", "--resamples", "200"], monkeypatch, capsys)
    assert code == 0
    res = json.loads(stdout)
    assert res["queries"] == 3 and {r["metric"] for r in res["metrics"]} >= {"nDCG@10", "MAP@100"}

    code, _, stderr = run_cli(
        ["compare-runs", str(tmp_path / "none.trec"), str(out / "runs" / "bm25.trec"), "--qrels", str(qrels)],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "error:" in stderr and "run file not found" in stderr
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    code, _, stderr = run_cli(["evaluate", str(folder), "-e", "bm25"], monkeypatch, capsys)
    assert code == 2 and "no judgements" in stderr and "Traceback" not in stderr


def test_evaluate_compares_hybrid_with_the_best_single_encoder_per_query(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # a decoy that repeats q3's words ranks above q3's document for some encoders, not for all
    docs = DOCS + [("d8", "Childhood", "Childhood sleep, sleep, sleep and duration of sleep in general.")]
    folder = write_beir(tmp_path / "tiny", docs=docs)
    report = evaluate_beir(folder, "tfidf,bm25,hybrid", k=5)
    singles = [r.encoder for r in report.results if r.encoder != "hybrid"]
    assert singles == ["tfidf", "bm25", "minilm"]  # hybrid's parts are evaluated too
    best = max(singles, key=lambda e: report.result(e).metrics["nDCG@10"])
    [cmp] = report.comparisons
    assert cmp["fused"] == "hybrid" and cmp["baseline"] == best and cmp["queries"] == 3
    ndcg = next(r for r in cmp["metrics"] if r["metric"] == "nDCG@10")
    assert ndcg["a"] == pytest.approx(report.result(best).metrics["nDCG@10"])
    assert ndcg["b"] == pytest.approx(report.result("hybrid").metrics["nDCG@10"])
    assert ndcg["wins"] + ndcg["ties"] + ndcg["losses"] == 3 and 0 < ndcg["p_rand"] <= 1
    assert evaluate_beir(folder, "tfidf,bm25", k=5).comparisons == []  # nothing fused: nothing to compare

    code, stdout, stderr = run_cli(
        ["evaluate", str(folder), "-e", "tfidf,bm25,hybrid", "-o", str(tmp_path / "out")], monkeypatch, capsys
    )
    assert code == 0, stderr
    assert f"A = {best} (best single encoder) vs B = hybrid" in stdout and "win/tie/loss" in stdout
    code, stdout, _ = run_cli(
        ["evaluate", str(folder), "-e", "tfidf,bm25,hybrid", "-o", str(tmp_path / "out"), "--json"],
        monkeypatch,
        capsys,
    )
    assert json.loads(stdout)["comparisons"][0]["baseline"] == best


# --- reproduction of published numbers (real data) ----------------------------------------------
def _need_scifact() -> None:
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT} (../shared/data is absent)")


@pytest.mark.slow
def test_scifact_bm25_reproduces_published_ndcg(home: Path) -> None:
    _need_scifact()
    report = evaluate_beir(SCIFACT, "bm25")
    m = report.result("bm25").metrics
    assert report.queries == 300
    # the default (Porter stemming) against Anserini's BM25 "flat" regression, which stems with
    # Porter too (Lucene's English analyser): nDCG@10 0.6789, Recall@100 0.9253
    assert abs(m["nDCG@10"] - 0.679) <= 0.01
    assert abs(m["Recall@100"] - 0.925) <= 0.01
    # without stemming: the BEIR paper's Elasticsearch BM25 (and the data README's bm25s 0.662)
    plain = evaluate_beir(SCIFACT, "bm25", params={"bm25": {"stemmer": None}}).results[0].metrics
    assert abs(plain["nDCG@10"] - 0.665) <= 0.01
    assert abs(plain["Recall@100"] - 0.876) <= 0.01
    assert m["nDCG@10"] > plain["nDCG@10"] and m["Recall@100"] > plain["Recall@100"]


def _scifact_cache() -> Path:
    """MiniLM over SciFact costs minutes on a CPU: keep the collection between test runs (outside
    the repository) so only the first run pays. EMBEDSCOPE_TEST_CACHE moves it."""
    default = Path.home() / ".cache" / "embedscope" / "test-collections"
    return Path(os.environ.get("EMBEDSCOPE_TEST_CACHE", default))


@pytest.mark.slow
def test_scifact_minilm_and_hybrid_reproduce(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_scifact()
    report = evaluate_beir(SCIFACT, "bm25,minilm,hybrid", root=_scifact_cache())
    minilm = report.result("minilm").metrics["nDCG@10"]
    assert abs(minilm - 0.645) <= 0.01  # MTEB all-MiniLM-L6-v2 SciFact
    assert abs(report.result("minilm").metrics["Recall@100"] - 0.925) <= 0.015
    hybrid = report.result("hybrid").metrics["nDCG@10"]
    assert hybrid > max(minilm, report.result("bm25").metrics["nDCG@10"])
    # per query against the best single encoder: more wins than losses, and not by chance
    [cmp] = report.comparisons
    best = max(("bm25", "minilm"), key=lambda e: report.result(e).metrics["nDCG@10"])
    assert cmp["baseline"] == best and cmp["queries"] == 300
    ndcg = next(r for r in cmp["metrics"] if r["metric"] == "nDCG@10")
    assert ndcg["wins"] > ndcg["losses"] and ndcg["p_rand"] < 0.05 and ndcg["p_t"] < 0.05


def test_encoder_params_get_their_own_cached_version(tmp_path: Path, home: Path) -> None:
    from embedscope.collection import Collection
    from embedscope.evaluate.ir import parse_encoder_params

    folder = write_beir(tmp_path / "tiny")
    params = parse_encoder_params(["bm25.k1=1.2", "bm25.stopwords=null"])
    assert params == {"bm25": {"k1": 1.2, "stopwords": None}}
    report = evaluate_beir(folder, "bm25", params=params)
    assert report.result("bm25").params == params["bm25"]
    versions = {v.name: v for v in Collection.open("beir-tiny").versions()}
    (name,) = versions
    assert name.startswith("bm25-") and versions[name].encoder["params"]["k1"] == 1.2
    with pytest.raises(EmbedscopeError, match="no parameter 'nope'"):
        evaluate_beir(folder, "bm25", params={"bm25": {"nope": 1}})
    with pytest.raises(EmbedscopeError, match="not evaluated: tfidf"):
        evaluate_beir(folder, "bm25", params={"tfidf": {"min_df": 1}})
    with pytest.raises(EmbedscopeError, match="encoder.key=value"):
        parse_encoder_params(["k1=1.2"])


@pytest.mark.slow
def test_hybrid_static_fuses_bm25_with_the_static_encoder_minilm_taught(tmp_path: Path, home: Path) -> None:
    from embedscope.collection import Collection

    folder = write_beir(tmp_path / "tiny")
    report = evaluate_beir(folder, "minilm,hybrid-static", k=5)
    assert [r.encoder for r in report.results] == ["minilm", "hybrid-static", "bm25", "static"]
    col = Collection.open("beir-tiny")
    static = next(v.name for v in col.versions() if v.encoder["name"] == "static")
    assert col.recipes()["hybrid-static"].parts == ("bm25", static)
    # minilm was evaluated first: the static encoder learned from its stored vectors, encoding none
    training = col.encoder(static).training
    assert training is not None
    assert (training["teacher_vectors_reused"], training["teacher_encoded"]) == (len(col), 0)
    [cmp] = report.comparisons  # against the best single encoder, as hybrid is
    assert cmp["fused"] == "hybrid-static" and cmp["queries"] == 3


@pytest.mark.slow
def test_hybrid_is_the_collections_recipe_and_its_settings_can_be_given(tmp_path: Path, home: Path) -> None:
    from embedscope.collection import Collection

    folder = write_beir(tmp_path / "tiny")
    settings = {"fusion": "convex", "params": {"normalization": "tmm"}, "weights": [0.4, 0.6], "depth": 50}
    report = evaluate_beir(folder, "hybrid", k=5, hybrid=settings)
    assert [r.encoder for r in report.results] == ["hybrid", "bm25", "minilm"]
    recipe = Collection.open("beir-tiny").recipes()["hybrid"]
    assert (recipe.parts, recipe.fusion, recipe.part_weights, recipe.depth) == (
        ("bm25", "minilm"),
        "convex",
        (0.4, 0.6),
        50,
    )
    # every judged query shares words with its relevant document: the fusion keeps it first
    assert report.result("hybrid").metrics["nDCG@10"] == pytest.approx(1.0)
