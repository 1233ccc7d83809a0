"""EASE and ItemKNN (item x item behavioural versions), the random 80/20 protocol, and the version
`recommend` picks by default: hand-computed references on tiny matrices, then real MovieLens 100K."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embedscope import Collection
from embedscope.errors import EmbedscopeError
from embedscope.evaluate import recs as ev
from embedscope.evaluate import recs_random
from embedscope.recommend import Interactions, Recommender, embed_behaviour, load_interactions
from embedscope.recommend.behavioural import (
    L2_GRID,
    choose_by_validation,
    ease_weights,
    itemknn_weights,
)
from embedscope.recommend.choice import PREFERENCE, choose_version, record_best
from embedscope.recommend.interactions import normalise
from embedscope.recommend.validation import split_random, topk_metrics
from embedscope.sources_movielens import read_movielens_items, read_movielens_ratings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k"
needs_movielens = pytest.mark.skipif(
    not (DATA / "u.data").exists(), reason=f"MovieLens 100K not found at {DATA} (../shared/data is absent)"
)

# 5 users x 4 items, each user a different mix (no two columns proportional)
TINY = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 1, 0],
        [0, 1, 1, 1],
        [1, 1, 1, 0],
        [0, 0, 1, 1],
    ],
    dtype=np.float64,
)


# --- the formulas, by hand --------------------------------------------------------------------------
def test_ease_is_the_closed_form_of_steck_2019() -> None:
    lam = 2.0
    b = ease_weights(sp.csr_matrix(TINY), lam)
    # the formula, element by element: P = (XᵀX + λI)⁻¹, B_ij = -P_ij / P_jj off the diagonal, B_jj = 0
    p = np.linalg.inv(TINY.T @ TINY + lam * np.eye(4))
    ref = np.array([[0.0 if i == j else -p[i, j] / p[j, j] for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(b, ref, rtol=1e-10, atol=1e-12)
    # and what the formula solves: min ||X - XB||² + λ||B||² with diag(B) = 0. Its optimality
    # condition says the gradient (XᵀX + λI)B - XᵀX is zero off the diagonal (the constraint's
    # multipliers live on it), and each column is the ridge regression of item j on the others
    grad = (TINY.T @ TINY + lam * np.eye(4)) @ b - TINY.T @ TINY
    np.testing.assert_allclose(grad - np.diag(np.diag(grad)), 0.0, atol=1e-10)
    others = [1, 2, 3]
    a = TINY[:, others]
    ridge = np.linalg.solve(a.T @ a + lam * np.eye(3), a.T @ TINY[:, 0])
    np.testing.assert_allclose(b[others, 0], ridge, rtol=1e-10)
    assert np.all(np.diag(b) == 0)


@pytest.mark.parametrize(("k", "shrink"), [(3, 0.0), (2, 0.0), (1, 1.5)])
def test_itemknn_is_shrunk_cosine_with_k_neighbours_per_item(k: int, shrink: float) -> None:
    got = itemknn_weights(sp.csr_matrix(TINY), k, shrink).toarray()
    n = TINY.shape[1]
    ref = np.zeros((n, n))
    for j in range(n):
        sims = {}
        for i in range(n):
            if i != j:
                xi, xj = TINY[:, i], TINY[:, j]
                sims[i] = xi @ xj / (np.sqrt(xi @ xi) * np.sqrt(xj @ xj) + shrink)
        for i in sorted(sims, key=lambda i: -sims[i])[:k]:  # item j keeps its k most similar items
            ref[i, j] = sims[i]
    # ties at the k-th place may keep either item: compare the kept values per column, then the rest
    for j in range(n):
        assert sorted(got[:, j]) == pytest.approx(sorted(ref[:, j]), abs=1e-6)
    assert np.count_nonzero(got, axis=0).max() <= k and np.all(np.diag(got) == 0)
    if k == n - 1 and shrink == 0:
        np.testing.assert_allclose(got, ref, atol=1e-6)  # no pruning: the plain cosine matrix


def test_topk_metrics_by_hand() -> None:
    # 2 users x 6 items; user 0 trained on item 5, test items {1, 3}; user 1 test item {0}
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 1.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    train = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]], dtype=float))
    test = sp.csr_matrix(np.array([[0, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=float))
    m = topk_metrics(scores, train, test, k=3)
    # user 0 ranking (item 5 excluded): 0, 1, 2 | 3, 4 -> one hit at rank 2; user 1: 5,4,3 -> none
    d = 1 / np.log2(np.arange(2, 5))
    assert m["NDCG@3"] == pytest.approx((d[1] / (d[0] + d[1])) / 2)
    assert m["Recall@3"] == pytest.approx((1 / 2) / 2)
    assert m["Precision@3"] == pytest.approx((1 / 3) / 2)
    assert m["HR@3"] == pytest.approx(0.5)
    assert m["MRR"] == pytest.approx((1 / 2 + 1 / 6) / 2)  # user 1's item 0 ranks last of 6
    assert m["MAP@3"] == pytest.approx(((1 / 2) / 2) / 2)


def test_encoder_parameters_are_checked() -> None:
    from embedscope.encoders.registry import create_encoder

    for params, match in [
        ({"l2": -1}, "l2 must be 'auto'"),
        ({"l2": "big"}, "l2 must be 'auto'"),
        ({"cv": "time"}, "cv must be 'last' or 'random'"),
        ({"vector_size": 0}, "vector_size must be >= 1"),
    ]:
        with pytest.raises(EmbedscopeError, match=match):
            create_encoder("ease", params)
    for params, match in [
        ({"k": 0}, "k must be 'auto'"),
        ({"k": 2.5}, "k must be 'auto'"),
        ({"shrink": -1}, "shrink must be a number >= 0"),
    ]:
        with pytest.raises(EmbedscopeError, match=match):
            create_encoder("itemknn", params)


# --- on MovieLens -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    if not (DATA / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {DATA}")
    return normalise(read_movielens_ratings(DATA))


@needs_movielens
def test_random_split_is_reproducible_with_a_seed(ratings: pd.DataFrame) -> None:
    a_train, a_test = split_random(ratings, seed=7)
    b_train, b_test = split_random(ratings.sample(frac=1.0, random_state=3), seed=7)  # input order ignored
    assert len(a_train) == 80_000 and len(a_test) == 20_000
    key = ["user", "item"]
    assert a_test[key].equals(b_test[key]) and a_train[key].equals(b_train[key])
    assert a_train.merge(a_test, on=key).empty  # disjoint, and together everything
    assert len(pd.concat([a_train, a_test]).drop_duplicates(key)) == len(ratings)
    c_train, c_test = split_random(ratings, seed=8)
    assert not c_test[key].equals(a_test[key])
    catalogue = sorted(ratings["item"].unique())
    s1 = ev.random_split(ratings, catalogue, seed=7)
    s2 = ev.random_split(ratings, catalogue, seed=7)
    assert s1.users == s2.users and (s1.test_matrix != s2.test_matrix).nnz == 0
    assert s1.test_matrix.sum() == 20_000 and s1.train_matrix.multiply(s1.test_matrix).nnz == 0


@needs_movielens
def test_validation_sees_only_the_interactions_it_is_given(ratings: pd.DataFrame) -> None:
    train, _test = split_random(ratings, seed=0)
    train = train[train["item"].astype(int) <= 400]  # a slice keeps the fits quick
    items = list(pd.unique(train["item"]))
    seen: list[int] = []

    def fit(x: sp.csr_matrix, lam: float) -> np.ndarray:
        seen.append(int(x.nnz))
        return ease_weights(x, lam)

    best, rows = choose_by_validation(Interactions(train), items, fit, L2_GRID, 500.0, cv="random")
    assert best in L2_GRID and {r["value"] for r in rows} >= {best}
    # every fit learnt from 80% of the given training part, never from anything else
    assert set(seen) <= {round(len(train) * 0.8)} and len(seen) == 2 * len(rows)
    # a walk, not the whole grid: the best value beats both its neighbours that were tried
    scores = {r["value"]: r["NDCG@10"] for r in rows}
    i = L2_GRID.index(best)
    assert all(scores[best] >= scores[g] for g in L2_GRID[max(0, i - 1) : i + 2] if g in scores)


@needs_movielens
@pytest.mark.slow
def test_ease_beats_itemknn_and_popularity_on_the_random_protocol(ratings: pd.DataFrame) -> None:
    """One seed of the published protocol (all 100,000 ratings): EASE with λ chosen inside the
    training part reaches the published MF/SLIM level, ItemKNN the published ItemKNN level."""
    catalogue = sorted(ratings["item"].unique())
    report = recs_random.evaluate_random_split(
        ratings, catalogue, seeds=[0], methods=("popularity", "itemknn", "ease")
    )
    by = {r["method"]: r["mean"] for r in report.results}
    assert 0.20 < by["popularity"]["NDCG@10"] < 0.24  # the published MostPop: 0.220
    assert by["itemknn"]["NDCG@10"] > 0.37  # published ItemKNN 0.399
    assert by["ease"]["NDCG@10"] > 0.43 and by["ease"]["NDCG@10"] > by["itemknn"]["NDCG@10"]
    assert by["ease"]["l2"] in L2_GRID


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, ratings: pd.DataFrame) -> Collection:
    """All movies, the first 30,000 ratings (by time), a text version (LSA, active), ALS and EASE."""
    col = Collection.create("mlsmall", root=tmp_path_factory.mktemp("mlsmall"))
    col.ingest(read_movielens_items(DATA), id_field="id", text="text", metadata=["title", "year", "genres"])
    first = ratings.sort_values(["timestamp", "seq"]).head(30_000)
    load_interactions(col, first[["user", "item", "rating", "timestamp"]])
    col.embed("lsa", {"n_components": 32}, activate=True)
    embed_behaviour(col, "als")
    embed_behaviour(col, "ease", {"l2": 300.0})
    embed_behaviour(col, "itemknn", {"k": 50, "shrink": 5.0})
    return col


@needs_movielens
@pytest.mark.parametrize("method", ["ease", "itemknn"])
def test_predict_scoring_is_the_model_formula(small: Collection, method: str) -> None:
    v = small.load_version(method)
    w = v.encoder.weights
    w = w.toarray() if sp.issparse(w) else np.asarray(w)
    assert w.shape == (v.info.count, v.info.count)
    hist = Interactions.of(small).history("804")["item"].tolist()
    rows = [v.row_of[i] for i in hist]
    expected = w[rows].mean(axis=0)  # the mean profile: uniform weights over the history
    expected[rows] = -np.inf
    res = Recommender(small, method).recommend("804", k=10, profile="mean", dedupe=False, explain=True)
    assert [r.id for r in res.items] == [v.data.ids[j] for j in np.argsort(-expected, kind="stable")[:10]]
    assert [r.score for r in res.items] == pytest.approx(np.sort(expected)[::-1][:10], rel=1e-4)
    top = res.items[0]
    shares = w[rows, v.row_of[top.id]] / w[rows, v.row_of[top.id]].sum()
    assert top.because[0]["id"] == hist[int(np.argmax(shares))]  # the history item adding most
    assert top.because[0]["similarity"] == pytest.approx(shares.max(), abs=1e-3)
    cosine = Recommender(small, method).recommend("804", k=10, scoring="cosine", explain=False)
    assert not set(hist) & {r.id for r in cosine.items}
    reopened = Collection.open("mlsmall", root=Path(small.store.path).parent)
    w2 = reopened.load_version(method).encoder.weights
    assert np.array_equal(w2.toarray() if sp.issparse(w2) else w2, w)


# --- the version recommend uses by default -----------------------------------------------------------
@needs_movielens
def test_default_is_a_behavioural_version_not_the_active_text_one(small: Collection) -> None:
    assert small.active_version == "lsa"
    small.store.set_setting("recommend_default", None)
    res = Recommender(small).recommend("804", k=5, explain=False)
    assert res.version == "ease" == PREFERENCE[0]  # before: the active (text) version
    assert "not measured on this collection" in res.version_reason and "evaluate-recs" in res.version_reason
    named = Recommender(small, "lsa").recommend("804", k=5, explain=False)
    assert named.version == "lsa" and named.version_reason == "named by the caller"


@needs_movielens
def test_default_follows_the_recorded_measurement_while_it_holds(small: Collection) -> None:
    als = small.store.get_version("als")
    best = {
        "version": "als",
        "method": "als",
        "profile": "recency",
        "scoring": "cosine",
        "row": "als-items/recency",
        "metric": "NDCG@10",
        "value": 0.0925,
        "popularity": 0.0439,
        "encoder": als.encoder,
        "protocol": "leave-last-out by time, full ranking",
    }
    try:
        record_best(small, best)
        choice = choose_version(small)
        assert (choice.version, choice.profile, choice.measured) == ("als", "recency", True)
        res = Recommender(small).recommend("804", k=5, explain=False)
        assert (res.version, res.profile) == ("als", "recency")
        assert "measured best by evaluate-recs" in res.version_reason and "0.0925" in res.version_reason
        assert Recommender(small).recommend("804", k=5, profile="mean", explain=False).profile == "mean"
        # the measured version retrained with other parameters: the measurement no longer holds
        record_best(
            small, {**best, "encoder": {"name": "als", "params": {**als.encoder["params"], "alpha": 9}}}
        )
        stale = choose_version(small)
        assert stale.version == "ease" and not stale.measured and "out of date" in stale.reason
    finally:
        small.store.set_setting("recommend_default", None)


@needs_movielens
def test_cold_items_go_to_the_text_version(small: Collection) -> None:
    rated = set(Interactions.of(small).frame["item"])
    cold = sorted((i.id for i in small.items() if i.id not in rated), key=int)[:4]
    assert len(cold) == 4, "movies rated only after the first 30,000 ratings"
    res = Recommender(small).recommend(items=cold, k=5)
    assert res.version == "lsa" and not res.fallback and len(res.items) == 5
    assert "cold start" in res.message and "'lsa'" in res.message and "cold start" in res.version_reason
    # a version named by the caller is kept: no vector there means the popular fallback, as before
    named = Recommender(small, "ease").recommend(items=cold, k=5)
    assert named.fallback and named.version == "ease"
    # a mixed session uses the behavioural version and says which items it left out
    mixed = Recommender(small).recommend(items=[*cold, "50"], k=5, explain=False)
    assert mixed.version == "ease" and f"{len(cold)} of {len(cold) + 1} history item(s)" in mixed.message


def test_a_collection_without_behavioural_versions_keeps_the_active_one(tmp_path: Path) -> None:
    col = Collection.create("plain", root=tmp_path)
    col.ingest(
        pd.DataFrame(
            {
                "id": [str(i) for i in range(30)],
                "text": [f"item number {i} about x{i % 5}" for i in range(30)],
            }
        ),
        id_field="id",
        text="text",
    )
    col.embed("lsa", {"n_components": 4}, activate=True)
    choice = choose_version(col)
    assert choice.version is None and "active version" in choice.reason
    res = Recommender(col).recommend(items=["1", "2"], k=3, explain=False)
    assert res.version == "lsa" and "active version" in res.version_reason
