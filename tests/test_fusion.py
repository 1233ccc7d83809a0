"""Fusion and normalisation on small hand-made runs (their properties), and search recipes: validation,
storage through the Store settings, the legacy hybrid setting, and the `hybrid` CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.search.fusion import (
    FUSIONS,
    NORMALIZERS,
    Run,
    fuse,
    minmax,
    score_floor,
    theoretical_minmax,
    zscore,
)
from embedscope.search.recipe import Recipe, make_recipe

# BM25-like scores (floor 0) and cosine-like scores (floor -1), best first, partly overlapping
SPARSE = Run(["a", "b", "c", "e"], np.array([12.0, 8.0, 1.0, 0.5]), floor=0.0)
DENSE = Run(["b", "d", "a", "f"], np.array([0.9, 0.8, 0.1, 0.05]), floor=-1.0)


# --- normalisations ---------------------------------------------------------------------------------
def test_minmax_zscore_tmm_by_hand() -> None:
    s = np.array([0.9, 0.8, 0.5])
    np.testing.assert_allclose(minmax(s), [1.0, 0.75, 0.0])
    z = zscore(s)
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0) and z[0] > z[1] > z[2]
    # theoretical min-max: the floor, not the run's own minimum, maps to 0
    np.testing.assert_allclose(theoretical_minmax(s, -1.0), [1.0, 1.8 / 1.9, 1.5 / 1.9])
    np.testing.assert_allclose(theoretical_minmax(np.array([6.0, 3.0]), 0.0), [1.0, 0.5])
    np.testing.assert_allclose(theoretical_minmax(s, None), minmax(s))  # unbounded metric: min-max
    # degenerate runs: one distinct score
    flat = np.array([0.4, 0.4])
    assert list(minmax(flat)) == [1.0, 1.0] and list(zscore(flat)) == [0.0, 0.0]
    assert list(theoretical_minmax(flat, 0.4)) == [1.0, 1.0]


@pytest.mark.parametrize("name", list(NORMALIZERS))
def test_every_normalisation_keeps_the_order_of_a_run(name: str) -> None:
    rng = np.random.default_rng(3)
    s = np.sort(rng.uniform(-0.5, 1.0, 50))[::-1]
    out = NORMALIZERS[name](s, -1.0)
    assert np.all(np.diff(out) <= 1e-12)  # monotone: a normalisation never reorders one run


def test_score_floors() -> None:
    assert score_floor(sparse=True, metric="dot") == 0.0
    assert score_floor(sparse=False, metric="cosine") == -1.0
    assert score_floor(sparse=False, metric="dot") is None


# --- fusion methods ---------------------------------------------------------------------------------
def test_rrf_by_hand_and_ties_by_id() -> None:
    ids, scores = fuse([SPARSE, DENSE], [1.0, 1.0], "rrf", {"k": 60})
    # b: ranks 2 and 1; a: ranks 1 and 3; d: 2; c: 3; e and f: 4 each, a tie broken by id
    assert ids == ["b", "a", "d", "c", "e", "f"]
    np.testing.assert_allclose(scores, [1 / 62 + 1 / 61, 1 / 61 + 1 / 63, 1 / 62, 1 / 63, 1 / 64, 1 / 64])
    # weights scale each run's contribution
    ids, _ = fuse([SPARSE, DENSE], [0.9, 0.1], "rrf", {"k": 60})
    assert ids[:3] == ["a", "b", "c"]


def _all_fusions() -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = [("rrf", {"k": 60})]
    for norm, missing in itertools.product(NORMALIZERS, ["cutoff", "zero", "score"]):
        out.append(("convex", {"normalization": norm, "missing": missing}))
    return out


@pytest.mark.parametrize(("method", "params"), _all_fusions())
def test_fusion_does_not_depend_on_the_order_of_the_runs(method: str, params: dict) -> None:
    third = Run(["f", "a", "g"], np.array([3.0, 2.0, 1.0]), floor=0.0)
    runs, weights = [SPARSE, DENSE, third], [0.5, 0.3, 0.2]
    expected = fuse(runs, weights, method, params)
    for perm in itertools.permutations(range(3)):
        ids, scores = fuse([runs[i] for i in perm], [weights[i] for i in perm], method, params)
        assert ids == expected[0]
        np.testing.assert_array_equal(scores, expected[1])


@pytest.mark.parametrize(("method", "params"), _all_fusions())
def test_weight_one_reproduces_a_single_run(method: str, params: dict) -> None:
    for run, weights in ((SPARSE, [1.0, 0.0]), (DENSE, [0.0, 1.0])):
        ids, scores = fuse([SPARSE, DENSE], weights, method, params)
        assert ids == run.ids  # the run's own ranking, and nothing from the zero-weight run
        assert np.all(np.diff(scores) <= 0)


def test_convex_by_hand_and_missing_documents() -> None:
    ids, scores = fuse([SPARSE, DENSE], [0.5, 0.5], "convex", {"normalization": "minmax", "missing": "zero"})
    got = dict(zip(ids, scores, strict=True))
    assert got["a"] == pytest.approx(0.5 * 1.0 + 0.5 * (0.05 / 0.85))
    assert got["b"] == pytest.approx(0.5 * (7.5 / 11.5) + 0.5 * 1.0)
    assert got["d"] == pytest.approx(0.5 * (0.75 / 0.85))  # not in the sparse run: 0 there
    assert ids[0] == "b"
    # tmm + cutoff: a document missing from a run gets that run's last candidate's normalised score
    ids, scores = fuse([SPARSE, DENSE], [0.5, 0.5], "convex", {"normalization": "tmm"})
    got = dict(zip(ids, scores, strict=True))
    last_sparse = 0.5 / 12.0
    assert got["d"] == pytest.approx(0.5 * last_sparse + 0.5 * (1.8 / 1.9))
    # an empty run (e.g. no query term known to BM25) leaves the other run's ranking as it is
    empty = Run([], np.zeros(0), 0.0)
    assert fuse([empty, DENSE], [0.5, 0.5], "convex", {"normalization": "tmm"})[0] == DENSE.ids


def test_missing_score_uses_a_runs_true_scores_on_its_own_scale() -> None:
    """missing="score": a document one run did not return gets that run's true score of it (`others`),
    normalised with the run's own statistics; without one, the cutoff, as `missing="cutoff"`."""
    sparse = Run(SPARSE.ids, SPARSE.scores, SPARSE.floor, others={"d": 0.0, "f": 0.2})
    dense = Run(DENSE.ids, DENSE.scores, DENSE.floor, others={"c": -0.4})
    params = {"normalization": "zscore", "missing": "score"}
    got = dict(zip(*fuse([sparse, dense], [0.5, 0.5], "convex", params), strict=True))
    z_s = dict(zip(SPARSE.ids, zscore(SPARSE.scores), strict=True))
    z_d = dict(zip(DENSE.ids, zscore(DENSE.scores), strict=True))
    at = lambda run, x: float(zscore(run.scores, at=np.array([x]))[0])  # noqa: E731
    assert got["d"] == pytest.approx(0.5 * at(SPARSE, 0.0) + 0.5 * z_d["d"])
    assert got["c"] == pytest.approx(0.5 * z_s["c"] + 0.5 * at(DENSE, -0.4))
    assert got["e"] == pytest.approx(0.5 * z_s["e"] + 0.5 * z_d["f"])  # no true score: the cutoff
    # d's true sparse score (0, no shared term) is below the sparse cutoff: it falls against `cutoff`
    cut = dict(zip(*fuse([SPARSE, DENSE], [0.5, 0.5], "convex", {"missing": "cutoff"}), strict=True))
    assert got["d"] < cut["d"] and got["c"] < cut["c"]
    # CombMAX the same way: each run's true score where it has one
    best = dict(zip(*fuse([sparse, dense], [1.0, 1.0], "max", params), strict=True))
    assert best["d"] == pytest.approx(max(at(SPARSE, 0.0), z_d["d"]))
    assert best["e"] == pytest.approx(max(z_s["e"], z_d["f"]))


def test_fusion_errors_are_clear() -> None:
    with pytest.raises(EmbedscopeError, match="unknown fusion 'sum'"):
        fuse([SPARSE], [1.0], "sum", {})
    with pytest.raises(EmbedscopeError, match=r"unknown fusion parameter\(s\) alpha"):
        fuse([SPARSE], [1.0], "rrf", {"alpha": 0.5})
    with pytest.raises(EmbedscopeError, match="k=0: must be a positive integer"):
        fuse([SPARSE], [1.0], "rrf", {"k": 0})
    with pytest.raises(EmbedscopeError, match="normalization='l2': must be one of minmax, zscore, tmm"):
        fuse([SPARSE], [1.0], "convex", {"normalization": "l2"})
    with pytest.raises(EmbedscopeError, match="2 weights for 1 runs"):
        fuse([SPARSE], [0.5, 0.5], "rrf", {})
    assert set(FUSIONS) == {"rrf", "convex", "max"}


def test_combmax_takes_each_documents_best_normalised_score() -> None:
    """CombMAX: a document's best weighted normalised score over the runs; one missing from a run has at
    least that run's cutoff (as `convex` assumes)."""
    ids, scores = fuse([SPARSE, DENSE], [1.0, 1.0], "max", {"normalization": "minmax"})
    s = dict(zip(SPARSE.ids, minmax(SPARSE.scores), strict=True))
    d = dict(zip(DENSE.ids, minmax(DENSE.scores), strict=True))
    want = {doc: max(s.get(doc, 0.0), d.get(doc, 0.0)) for doc in set(s) | set(d)}
    assert dict(zip(ids, scores, strict=True)) == pytest.approx(want)
    assert ids[:2] == ["a", "b"]  # both 1.0 after min-max, ties by id
    # z-score: the cutoff of the other run is a floor
    ids, scores = fuse([SPARSE, DENSE], [1.0, 1.0], "max", {})
    floor = max(zscore(SPARSE.scores)[-1], zscore(DENSE.scores)[-1])
    assert scores.min() >= floor - 1e-12 and set(ids) == {"a", "b", "c", "d", "e", "f"}


# --- recipes ----------------------------------------------------------------------------------------
def test_make_recipe_validates_and_normalises() -> None:
    r = make_recipe(
        "hy", ["bm25", "minilm"], fusion="convex", weights=[1, 3], params={"normalization": "tmm"}
    )
    assert r.part_weights == (0.25, 0.75) and r.params == {"normalization": "tmm", "missing": "cutoff"}
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    # nothing named: the default (convex, z-score, equal weights; docs/evaluation.md)
    plain = make_recipe("h", ["a", "b"])
    assert plain.fusion == "convex" and plain.part_weights == (0.5, 0.5)
    assert plain.params == {"normalization": "zscore", "missing": "cutoff"}
    assert make_recipe("h", ["a", "b"], fusion="rrf").params == {"k": 60}
    bad = [
        ({"parts": ["bm25"]}, "at least two versions"),
        ({"parts": ["bm25", "bm25"]}, "appears twice"),
        ({"weights": [1.0]}, "1 weight"),
        ({"weights": [-1.0, 2.0]}, ">= 0"),
        ({"weights": [0.0, 0.0]}, "not all 0"),
        ({"depth": 0}, "depth"),
        ({"fusion": "sum"}, "unknown fusion"),
        ({"fusion": "rrf", "params": {"normalization": "tmm"}}, "unknown fusion parameter"),  # rrf: none
        ({"name": "bad name"}, "invalid recipe name"),
    ]
    for change, says in bad:
        kwargs = {"name": "hy", "parts": ["bm25", "minilm"], **change}
        with pytest.raises(EmbedscopeError, match=says):
            make_recipe(kwargs.pop("name"), kwargs.pop("parts"), **kwargs)


@pytest.fixture
def sparse_pair(home: Path, books_frame: pd.DataFrame):  # noqa: ANN201
    """40 real books with two sparse versions: quick, no model (recipes do not care what the parts are)."""
    from embedscope import Collection

    col = Collection.create("pair")
    col.ingest(books_frame.head(40), id_field="isbn13", template="{title}. {description}", metadata=["title"])
    col.embed("bm25", index="exact")
    col.embed("tfidf", index="exact")
    return col


def test_recipes_are_stored_through_the_store_and_searched_by_name(sparse_pair) -> None:  # noqa: ANN001
    from embedscope import Collection

    col = sparse_pair
    assert col.recipes() == {}  # two sparse versions: no implicit hybrid (it needs a dense one)
    col.create_recipe("mix", ["bm25", "tfidf"], fusion="convex", weights=[0.7, 0.3])
    again = Collection.open("pair")  # a fresh reader sees it: it lives in the store's settings
    assert again.recipes()["mix"].part_weights == pytest.approx((0.7, 0.3))
    assert again.store.get_setting("recipes")["mix"]["fusion"] == "convex"
    hits = again.search("a murder in a quiet village", k=5, version="mix")
    assert 0 < len(hits) <= 5
    info = again.info()
    assert [r["name"] for r in info["recipes"]] == ["mix"] and info["recipes"][0]["stored"]
    with pytest.raises(NotFoundError, match="not a version"):
        col.create_recipe("x", ["bm25", "minilm"])
    with pytest.raises(EmbedscopeError, match="is a version"):
        col.create_recipe("bm25", ["bm25", "tfidf"])
    with pytest.raises(NotFoundError, match="no version or recipe 'nope'"):
        col.search("x", version="nope")
    col.delete_recipe("mix")
    assert col.recipes() == {}
    with pytest.raises(NotFoundError, match="no stored recipe"):
        col.delete_recipe("mix")


def test_missing_score_in_the_search_path_scores_the_stored_vectors(
    store_home: Path, books_frame: pd.DataFrame
) -> None:
    """Through the pipeline, a recipe with missing="score" fuses each part's true score of the other
    part's candidates: with 5 candidates per part, every hit's fused score is 0.5 x the z-score (over
    the part's own 5) of its score in each part, read from that part searched alone over all 40
    books (BM25: sparse rows; LSA: dense rows in an HNSW graph, or pgvector's in PostgreSQL)."""
    from embedscope import Collection

    col = Collection.create("true")
    col.ingest(books_frame.head(40), id_field="isbn13", template="{title}. {description}", metadata=["title"])
    col.embed("bm25", index="exact")
    col.embed("lsa", {"n_components": 8}, version="lsa")
    col.create_recipe("true", ["bm25", "lsa"], fusion="convex", depth=5, params={"missing": "score"})
    query = "a story about a boy and his dog"
    full = {
        v: {h.id: h.score for h in col.search(query, k=40, version=v, collapse=False)}
        for v in ("bm25", "lsa")
    }
    hits = col.search(query, k=5, version="true", collapse=False)  # k <= depth: 5 candidates per part
    for h in hits:
        want = 0.0
        for part in full.values():
            top = np.array(sorted(part.values(), reverse=True)[:5])
            true = part.get(h.id, 0.0)  # BM25 leaves out books sharing no term with the query: score 0
            want += 0.5 * float(zscore(top, at=np.array([true]))[0])
        assert h.score == pytest.approx(want, abs=1e-5), h.id
    tops = [set(sorted(part, key=part.__getitem__, reverse=True)[:5]) for part in full.values()]
    assert any(h.id not in top for h in hits for top in tops)  # a hit scored outside a part's list


def test_legacy_hybrid_setting_is_read_as_a_recipe(sparse_pair) -> None:  # noqa: ANN001
    sparse_pair.store.set_setting(
        "hybrid", {"sparse": "bm25", "dense": "tfidf", "fusion": "weighted", "rrf_k": 60, "alpha": 0.8}
    )
    r = sparse_pair.recipes()["hybrid"]
    assert (
        r.parts == ("bm25", "tfidf") and r.fusion == "convex" and r.part_weights == pytest.approx((0.8, 0.2))
    )
    sparse_pair.delete_recipe("hybrid")
    assert "hybrid" not in sparse_pair.recipes()


def test_hybrid_cli_create_list_delete(sparse_pair, run_cli) -> None:  # noqa: ANN001
    cli = run_cli
    made = cli("hybrid", "create", "pair", "--parts", "bm25,tfidf", "--fusion", "convex", "--weight", "0.25",
               "--normalization", "tmm", "--name", "mix")  # fmt: skip
    assert made.returncode == 0, made.stderr
    listed = json.loads(cli("hybrid", "list", "pair", "--json").stdout)
    assert listed == [
        {
            "name": "mix",
            "parts": ["bm25", "tfidf"],
            "fusion": "convex",
            "params": {"normalization": "tmm", "missing": "cutoff"},
            "weights": [0.25, 0.75],
            "depth": 100,
            "stages": {},
            "stored": True,
        }
    ]
    searched = cli("search", "pair", "war and love", "--version", "mix", "-k", "3", "--json")
    assert searched.returncode == 0 and len(json.loads(searched.stdout)) == 3
    bad = cli("hybrid", "create", "pair", "--parts", "bm25,nope")
    assert (
        bad.returncode == 2
        and "error:" in bad.stderr
        and "nope" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    bad = cli(
        "hybrid", "create", "pair", "--fusion", "rrf", "--normalization", "tmm", "--parts", "bm25,tfidf"
    )
    assert bad.returncode == 2 and "convex only" in bad.stderr
    # issue 17: a second create of a stored name (the default --name is `hybrid`) does not overwrite it
    again = cli("hybrid", "create", "pair", "--parts", "bm25,tfidf", "--fusion", "rrf", "--name", "mix")
    assert (
        again.returncode == 2 and "already has a recipe 'mix'" in again.stderr and "--replace" in again.stderr
    )
    assert json.loads(cli("hybrid", "list", "pair", "--json").stdout)[0]["fusion"] == "convex"
    same = cli("hybrid", "create", "pair", "--parts", "bm25,tfidf", "--fusion", "convex", "--weight", "0.25",
               "--normalization", "tmm", "--name", "mix")  # fmt: skip
    assert same.returncode == 0, same.stderr  # the same definition again changes nothing: no error
    replaced = cli("hybrid", "create", "pair", "--parts", "bm25,tfidf", "--fusion", "rrf", "--name", "mix",
                   "--replace")  # fmt: skip
    assert (
        replaced.returncode == 0
        and json.loads(cli("hybrid", "list", "pair", "--json").stdout)[0]["fusion"] == "rrf"
    )
    assert cli("hybrid", "delete", "pair", "--name", "mix").returncode == 0
    assert json.loads(cli("hybrid", "list", "pair", "--json").stdout) == []
