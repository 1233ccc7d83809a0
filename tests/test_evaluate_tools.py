"""ANN recall sweep, intrinsic word tests and drift between versions, on real texts (SciFact
abstracts, gensim's Lee corpus) and on constructed vectors where the right answer is known."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from embedscope import Collection
from embedscope.errors import EmbedscopeError
from embedscope.evaluate.ann import ann_recall
from embedscope.evaluate.drift import drift
from embedscope.evaluate.words import data_file, word_tests, word_vectors

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"


@pytest.fixture(scope="module")
def abstracts(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """500 real SciFact abstracts with an LSA (dense, exact index) and a TF-IDF (sparse) version."""
    path = SCIFACT / "corpus.jsonl"
    if not path.exists():
        pytest.skip(f"SciFact not found at {path} (../shared/data is absent)")
    records = [json.loads(line) for _, line in zip(range(500), open(path), strict=False)]
    col = Collection.create("abstracts", root=tmp_path_factory.mktemp("tools"))
    col.ingest(records, id_field="_id", template="{title} {text}", metadata=[])
    col.embed("lsa", {"n_components": 64}, index="exact")
    col.embed("lsa", {"n_components": 64}, version="lsa_hnsw", index="hnsw")
    col.embed("lsa", {"n_components": 48}, version="lsa48", index="exact")
    col.embed("tfidf", index="exact")
    return col


# --- ANN ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ann_recall_sweep_on_stored_and_temporary_index(abstracts: Collection) -> None:
    res = ann_recall(abstracts, "lsa_hnsw", queries=200, efs=[256, 4, 16])
    assert res["index"]["stored"] and res["queries"] == 200
    points = res["points"]
    assert [p["expansion_search"] for p in points] == [4, 16, 256]
    # a wide beam on 500 points is (near) exact; a 4-wide beam cannot be better than a 256-wide one
    assert points[-1]["recall"] >= 0.99
    assert points[0]["recall"] <= points[-1]["recall"]
    assert all(p["latency_ms_p50"] > 0 for p in points)
    tmp = ann_recall(abstracts, "lsa", queries=50, efs=[64])
    assert not tmp["index"]["stored"] and tmp["index"]["build_seconds"] is not None
    with pytest.raises(EmbedscopeError, match="sparse"):
        ann_recall(abstracts, "tfidf")


# --- drift --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_drift_identical_versions_and_changed_ones(abstracts: Collection) -> None:
    same = drift(abstracts, "lsa", "lsa_hnsw")  # same encoder config, different index
    assert same["neighbour_jaccard"]["mean"] == pytest.approx(1.0)
    assert same["neighbour_rbo"]["mean"] == pytest.approx(1.0) and same["neighbour_rbo"]["p"] == 0.9
    assert same["vector"]["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert same["vector"]["centroid_l2_shift"] == pytest.approx(0.0, abs=1e-5)
    assert same["shared_items"] == 500

    changed = drift(abstracts, "lsa", "tfidf", k=5, sample=300)
    j = changed["neighbour_jaccard"]
    assert 0.0 < j["mean"] < 1.0 and j["p10"] <= j["p50"] <= j["p90"]
    assert changed["items_compared"] == 300 and changed["vector"] is None
    assert "dense versions of equal dimension" in changed["vector_note"]

    fewer = drift(abstracts, "lsa", "lsa48")  # 48 vs 64 components: nearby but not identical
    assert fewer["vector"] is None and 0.3 < fewer["neighbour_jaccard"]["mean"] < 1.0
    # RBO weighs the top neighbours most: the first neighbours of LSA-48 and LSA-64 agree more
    # than the whole top 10 does, so RBO exceeds Jaccard on average
    assert fewer["neighbour_jaccard"]["mean"] < fewer["neighbour_rbo"]["mean"] < 1.0
    with pytest.raises(EmbedscopeError, match="two different versions"):
        drift(abstracts, "lsa", "lsa")


# --- word tests ---------------------------------------------------------------------------------
def _analogy_lines(section: str) -> list[list[str]]:
    lines, inside = [], False
    for line in open(data_file("analogies")):
        if line.startswith(":"):
            inside = line[1:].strip() == section
        elif inside:
            lines.append(line.lower().split())
    return lines


def test_word_tests_on_vectors_built_to_solve_one_section() -> None:
    """capital-common-countries with country = capital + one shared offset: every question whose
    words are known is solved, and the counts match the file."""
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    lines = _analogy_lines("capital-common-countries")
    capitals = sorted({w for q in lines for w in (q[0], q[2])})
    country_of = {q[0]: q[1] for q in lines} | {q[2]: q[3] for q in lines}
    offset = rng.normal(size=64) * 3
    kv = KeyedVectors(vector_size=64)
    cap_vecs = rng.normal(size=(len(capitals), 64))
    kv.add_vectors(capitals, cap_vecs)
    kv.add_vectors([country_of[c] for c in capitals], cap_vecs + offset)
    res = word_tests(kv)
    an = res["analogies"]
    known = set(kv.key_to_index)
    all_lines = [ln.lower().split() for ln in open(data_file("analogies")) if not ln.startswith(":")]
    answerable = sum(1 for q in all_lines if set(q) <= known)  # also capital-world questions
    assert an["scored"] == answerable > len(lines) and an["accuracy"] == pytest.approx(1.0)
    assert an["sections"]["capital-common-countries"] == {"correct": len(lines), "scored": len(lines)}
    assert an["total"] == 19544  # the Google analogy set
    # none of the word-pair words is known: nothing is scored, and that is said, not a crash
    assert res["wordsim353"]["spearman"] is None and res["wordsim353"]["scored"] == 0


def test_word_tests_random_vectors_have_full_coverage_and_no_correlation() -> None:
    from gensim.models import KeyedVectors

    words = set()
    for line in open(data_file("wordsim353")):
        if not line.startswith("#") and line.strip():
            words.update(w.lower() for w in line.split("\t")[:2])
    kv = KeyedVectors(vector_size=32)
    kv.add_vectors(sorted(words), np.random.default_rng(1).normal(size=(len(words), 32)))
    res = word_tests(kv)["wordsim353"]
    assert res["scored"] == res["total"] == 353 and res["oov_pct"] == 0
    assert abs(res["spearman"]) < 0.15


@pytest.mark.slow
def test_word_tests_cli_on_trained_word2vec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from gensim.test.utils import datapath

    from embedscope.cli import main

    lee = Path(datapath("lee_background.cor")).read_text().splitlines()
    monkeypatch.setenv("EMBEDSCOPE_HOME", str(tmp_path))
    col = Collection.create("lee")
    col.ingest([{"id": str(i), "text": t} for i, t in enumerate(lee) if t.strip()])
    col.embed("word2vec", {"epochs": 20}, index="exact")
    col.embed("tfidf", index="exact")
    monkeypatch.setattr(sys, "argv", ["embedscope", "word-tests", "lee", "--version", "word2vec", "--json"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    res = json.loads(capsys.readouterr().out)
    assert 0 < res["analogies"]["scored"] < res["analogies"]["total"]
    assert 0 < res["wordsim353"]["scored"] < 353 and -1 <= res["wordsim353"]["spearman"] <= 1
    assert res["vocabulary"] == len(word_vectors(col.encoder("word2vec")))
    monkeypatch.setattr(sys, "argv", ["embedscope", "word-tests", "lee", "--version", "tfidf"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "has no word vectors" in capsys.readouterr().err


@pytest.mark.slow
def test_ann_recall_and_drift_cli(
    abstracts: Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from embedscope.cli import main

    monkeypatch.setenv("EMBEDSCOPE_HOME", str(Path(abstracts.store.path).parent))

    def cli(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["embedscope", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out = capsys.readouterr()
        return int(exc.value.code or 0), out.out, out.err

    code, out, _ = cli(
        "ann-recall", "abstracts", "-v", "lsa_hnsw", "-n", "50", "--ef", "8,64", "-o", str(tmp_path), "--json"
    )
    assert code == 0
    res = json.loads(out)
    assert [p["expansion_search"] for p in res["points"]] == [8, 64]
    assert json.loads((tmp_path / "ann-recall.json").read_text())["points"] == res["points"]
    assert (tmp_path / "ann-recall.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = cli("ann-recall", "abstracts", "-v", "lsa", "--ef", "8,x")
    assert code == 2 and "--ef must be comma-separated integers" in err
    code, out, _ = cli("drift", "abstracts", "lsa", "tfidf", "--json")
    assert code == 0 and 0 < json.loads(out)["versions"]["neighbour_jaccard"]["mean"] < 1
    code, _, err = cli("drift", "abstracts", "lsa", "nosuch")
    assert code == 2 and "error:" in err and "nosuch" in err
