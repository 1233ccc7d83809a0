"""Recommendations on the real MovieLens 100K data: loading and cleaning interactions, the
leave-last-out split, behavioural embeddings vs popularity, filtering, re-ranking, explanations,
and every bad input a user can give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.evaluate import recs as ev
from embedscope.recommend import Interactions, Recommender, embed_behaviour, load_interactions
from embedscope.recommend.behavioural import train_als, train_item2vec
from embedscope.search import rerank
from embedscope.search.base import Hit
from embedscope.sources_movielens import read_movielens_items, read_movielens_ratings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k"
pytestmark = pytest.mark.skipif(
    not (DATA / "u.data").exists(), reason=f"MovieLens 100K not found at {DATA} (../shared/data is absent)"
)


@pytest.fixture(scope="module")
def movies() -> pd.DataFrame:
    return read_movielens_items(DATA)


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return read_movielens_ratings(DATA)


@pytest.fixture(scope="module")
def ml(tmp_path_factory: pytest.TempPathFactory, movies: pd.DataFrame) -> Collection:
    """All 1,682 movies, all 100,000 ratings, an ALS version (active) and a quick item2vec version."""
    col = Collection.create("movielens", root=tmp_path_factory.mktemp("ml"))
    col.ingest(movies, id_field="id", text="text", metadata=["title", "year", "genres"])
    load_interactions(col, DATA / "u.data", fmt="movielens")
    embed_behaviour(col, "als", activate=True)
    embed_behaviour(col, "item2vec", {"epochs": 2, "workers": 2})
    return col


# --- reading and loading -----------------------------------------------------------------------------
def test_movielens_readers_match_the_published_data(movies: pd.DataFrame, ratings: pd.DataFrame) -> None:
    assert len(movies) == 1682 and movies["id"].is_unique
    toy = movies.set_index("id").loc["1"]
    assert toy["text"] == "Toy Story (1995). Animation, Children's, Comedy" and toy["year"] == 1995
    # latin-1 titles decode to real accents, not mojibake
    assert any("é" in t for t in movies["title"])
    assert len(ratings) == 100_000 and ratings["user"].nunique() == 943
    counts = ratings["rating"].value_counts().to_dict()
    assert counts == {1: 6110, 2: 11370, 3: 27145, 4: 34174, 5: 21201}  # the README's published counts


def test_load_stores_durably_and_reports(ml: Collection) -> None:
    path = Path(ml.store.path) / "interactions.parquet"
    stored = pd.read_parquet(path)
    assert len(stored) == 100_000 and stored["user"].nunique() == 943
    assert not list(Path(ml.store.path).glob(".interactions-*"))  # no temp file left behind
    again = Collection.open("movielens", root=Path(ml.store.path).parent)
    assert Interactions.of(again).history("196")["item"].tolist()[:1] != []


def test_unknown_items_and_duplicates_are_counted(
    tmp_path: Path, movies: pd.DataFrame, ratings: pd.DataFrame
) -> None:
    col = Collection.create("small", root=tmp_path)
    col.ingest(movies, id_field="id", text="text", metadata=["title", "year", "genres"])
    real = ratings.head(500).copy()
    dup = real.iloc[[0]].assign(rating=1, timestamp=real["timestamp"].iloc[0] + 10)  # a later re-rating
    unknown = pd.DataFrame(
        {"user": ["196", "7"], "item": ["99999", "abc"], "rating": [4, 5], "timestamp": [1, 2]}
    )
    frame = pd.concat([real, dup, unknown], ignore_index=True)
    csv = tmp_path / "inter.csv"
    frame.to_csv(csv, index=False)
    report = load_interactions(col, csv)
    assert report.rows == 503 and report.unknown_items == 2 and report.duplicates == 1
    assert report.stored == 500 and set(report.unknown_examples) == {"99999", "abc"}
    assert any("dropped" in line for line in report.lines())
    stored = Interactions.of(col).frame
    first = stored[
        (stored["user"] == str(real["user"].iloc[0])) & (stored["item"] == str(real["item"].iloc[0]))
    ]
    assert first["rating"].tolist() == [1.0]  # the latest one was kept
    kept = load_interactions(col, csv, keep_unknown=True)
    assert kept.stored == 502 and "kept" in " ".join(kept.lines())


def test_bad_interaction_files_give_one_line_errors(tmp_path: Path, movies: pd.DataFrame) -> None:
    col = Collection.create("bad", root=tmp_path)
    col.ingest(movies.head(20), id_field="id", text="text")
    csv = tmp_path / "x.csv"
    pd.DataFrame({"u": ["1"], "i": ["1"]}).to_csv(csv, index=False)
    with pytest.raises(EmbedscopeError, match="user field 'user' not found"):
        load_interactions(col, csv)
    with pytest.raises(EmbedscopeError, match="none of the 1 interactions reference items"):
        load_interactions(col, pd.DataFrame({"user": ["1"], "item": ["nope"]}))
    with pytest.raises(EmbedscopeError, match="is not a number"):
        load_interactions(col, pd.DataFrame({"user": ["1"], "item": ["1"], "rating": ["great"]}))
    with pytest.raises(NotFoundError, match="has no interactions"):
        Recommender(col).recommend("1")


# --- evaluation protocol ------------------------------------------------------------------------------
@pytest.mark.slow
def test_leave_last_out_has_no_leakage(ml: Collection) -> None:
    frame = Interactions.of(ml).frame
    split = ev.leave_last_out(frame, list(ml.store.item_hashes()))
    assert len(split.users) == 943 and len(split.train) == 100_000 - 943
    train = split.train.frame
    last_train_time = train.groupby("user")["timestamp"].max()
    test = pd.DataFrame({"user": split.users, "item": [split.items[c] for c in split.test_cols]})
    test = test.merge(frame, on=["user", "item"])
    # the held-out item is the latest interaction and never appears in the user's training rows
    assert (test.set_index("user")["timestamp"] >= last_train_time.loc[test["user"]].to_numpy()).all()
    assert train.merge(test[["user", "item"]], on=["user", "item"]).empty
    assert split.train_matrix[np.arange(943), split.test_cols].sum() == 0
    # items that occur only as someone's held-out item get no behavioural vector from the training part
    only_test = set(test["item"]) - set(train["item"])
    assert only_test, "MovieLens has items rated only once, as someone's last rating"
    assert not only_test & set(train_item2vec(split.train, {"epochs": 1, "workers": 2})[0])
    assert not only_test & set(train_als(split.train)[0])
    negs = ev.sample_negatives(split, 100, seed=42)
    assert (split.seen_matrix[np.arange(943)[:, None], negs].toarray() == 0).all()
    assert (negs == ev.sample_negatives(split, 100, seed=42)).all()


@pytest.mark.slow
def test_behavioural_embeddings_beat_popularity(ml: Collection) -> None:
    report = ev.evaluate_recommenders(
        ml,
        profiles=("mean", "recency"),
        tfidf=False,
        content_versions=[],
        ease_params={"l2": 500.0},  # fixed: the choice by validation has its own tests
        itemknn_params={"k": 100},
    )
    by = {r.method: r for r in report.results}
    pop = by["popularity"].full["HR@10"]
    assert 0.02 < pop < 0.5  # popularity is a real baseline, not zero
    assert by["als"].full["HR@10"] >= 1.2 * pop
    assert by["item2vec-predict/recency"].full["HR@10"] >= 1.2 * pop
    assert all(c["passed"] for c in report.checks)
    # the sampled protocol is easier than the full ranking for every method
    assert all(r.sampled["HR@10"] > r.full["HR@10"] for r in report.results)
    # coverage: personalised lists reach far more of the catalogue than the popularity list
    assert by["als"].full["coverage@10"] > 3 * by["popularity"].full["coverage@10"]


# --- recommending -------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["mean", "recency", "multi"])
def test_seen_items_never_recommended(ml: Collection, profile: str) -> None:
    rec = Recommender(ml)
    inter = Interactions.of(ml)
    for user in ["196", "1", "405", "655"]:  # 655 and 405 have the longest histories
        seen = set(inter.history(user)["item"])
        res = rec.recommend(user, k=100, profile=profile)
        assert len(res.items) == 100 and not seen & {r.id for r in res.items}


def test_filters_are_respected(ml: Collection) -> None:
    rec = Recommender(ml)
    res = rec.recommend("196", k=15, where="genres contains 'Horror' and year >= 1990", explain=False)
    assert res.items and all(
        "Horror" in r.metadata["genres"] and r.metadata["year"] >= 1990 for r in res.items
    )
    frame, _ = ml.metadata_frame()
    n_match = int((frame["genres"].str.contains("Horror") & (frame["year"] >= 1990)).sum())
    assert len(res.items) == min(15, n_match)
    with pytest.raises(EmbedscopeError, match="unknown field"):
        rec.recommend("196", where="director == 'x'")


def test_mmr_changes_the_list_and_increases_diversity(ml: Collection) -> None:
    rec = Recommender(ml)
    v = ml.load_version()
    plain = rec.recommend("196", k=10, dedupe=False, explain=False)
    diverse = rec.recommend("196", k=10, dedupe=False, mmr_lambda=0.3, explain=False)

    def div(res: object) -> float:
        return rerank.intra_list_diversity(np.asarray(v.data.vectors[[v.row_of[r.id] for r in res.items]]))

    assert [r.id for r in plain.items] != [r.id for r in diverse.items]
    assert div(diverse) > div(plain)
    same = rec.recommend("196", k=10, dedupe=False, mmr_lambda=1.0, explain=False)
    assert [r.id for r in same.items] == [r.id for r in plain.items]


def test_dedupe_removes_same_title(ml: Collection, movies: pd.DataFrame) -> None:
    norm = movies["title"].map(rerank.normalise_title)
    dups = movies.assign(norm=norm)[norm.duplicated(keep=False)].sort_values(["norm", "id"])
    assert len(dups) >= 2, "MovieLens 100K lists some movies twice under two ids"
    a, b = dups["id"].tolist()[:2]
    assert norm[movies["id"] == a].item() == norm[movies["id"] == b].item()
    by_id = movies.set_index("id")
    hits = [
        Hit(i, 1.0 - n / 10, by_id.loc[i, "text"], {"title": by_id.loc[i, "title"]})
        for n, i in enumerate([a, "1", b])
    ]
    kept, removed = rerank.dedupe(hits)
    assert [h.id for h in kept] == [a, "1"] and [h.id for h in removed] == [b]
    assert rerank.normalise_title("Shawshank Redemption, The (1994)") == rerank.normalise_title(
        "The Shawshank Redemption"
    )
    # in the recommender: a long list from a session holds each title once, and the duplicates were seen
    res = Recommender(ml).recommend(items=["1"], k=1500, explain=False)
    titles = [rerank.normalise_title(r.metadata["title"]) for r in res.items]
    assert len(titles) == len(set(titles)) and res.removed_duplicates
    raw = Recommender(ml).recommend(items=["1"], k=1500, explain=False, dedupe=False)
    raw_titles = [rerank.normalise_title(r.metadata["title"]) for r in raw.items]
    assert len(raw_titles) > len(set(raw_titles))


def test_popularity_blend_and_wilson(ml: Collection) -> None:
    assert rerank.wilson_lower_bound(0, 0) == 0.0
    # more ratings with the same share -> a higher lower bound
    assert rerank.wilson_lower_bound(9, 10) < rerank.wilson_lower_bound(90, 100) < 0.9
    rec = Recommender(ml)
    base = rec.recommend("196", k=10, explain=False)
    counts = Interactions.of(ml).counts()
    blended = rec.recommend("196", k=10, popularity_weight=0.8, explain=False)
    assert np.mean([counts[r.id] for r in blended.items]) > np.mean([counts[r.id] for r in base.items])
    wilson = rec.recommend("196", k=10, popularity_weight=0.5, quality="wilson", explain=False)
    assert [r.id for r in wilson.items] != [r.id for r in base.items]
    with pytest.raises(EmbedscopeError, match="quality field 'stars' not found"):
        rec.recommend("196", popularity_weight=0.5, quality="stars")


@pytest.mark.parametrize("profile", ["mean", "multi"])
def test_explain_points_to_real_history_items(ml: Collection, profile: str) -> None:
    v = ml.load_version()
    history = Interactions.of(ml).history("196")["item"].tolist()
    res = Recommender(ml).recommend("196", k=5, profile=profile, explain=True)
    hv = np.asarray(v.data.vectors[[v.row_of[i] for i in history]])
    for r in res.items:
        assert r.because and all(b["id"] in history for b in r.because)
        sims = hv @ np.asarray(v.data.vectors[v.row_of[r.id]])
        if profile == "mean":  # the nearest history item overall
            assert r.because[0]["id"] == history[int(np.argmax(sims))]
        else:  # the nearest history item of the interest that produced it
            assert r.interest is not None and r.interest < len(res.interests)
        assert abs(r.because[0]["similarity"] - float(sims[history.index(r.because[0]["id"])])) < 1e-3


def test_item2vec_version_predict_and_cosine(ml: Collection) -> None:
    rec = Recommender(ml, "item2vec")
    seen = set(Interactions.of(ml).history("196")["item"])
    pred = rec.recommend("196", k=20, profile="recency", explain=False)
    cos = rec.recommend("196", k=20, profile="recency", scoring="cosine", explain=False)
    assert not seen & {r.id for r in pred.items} and not seen & {r.id for r in cos.items}
    assert [r.id for r in pred.items] != [r.id for r in cos.items]
    with pytest.raises(EmbedscopeError, match="needs an item2vec version"):
        Recommender(ml, "als").recommend("196", scoring="predict")


def test_behavioural_versions_work_like_any_other(ml: Collection) -> None:
    info = {v.name: v for v in ml.versions()}
    assert info["als"].encoder["name"] == "als" and info["als"].count <= 1682
    hits = ml.similar("50", k=5, version="als")  # Star Wars
    assert len(hits) == 5 and "50" not in {h.id for h in hits}
    reopened = Collection.open("movielens", root=Path(ml.store.path).parent)
    enc = reopened.encoder("item2vec")
    assert enc.context is not None and enc.context.shape[0] == info["item2vec"].count
    with pytest.raises(EmbedscopeError, match="cannot encode text; use similar/recommend"):
        enc.encode(["star wars"])
    with pytest.raises(EmbedscopeError, match="cannot encode text"):
        reopened.search("space opera", version="als")


# --- bad input ------------------------------------------------------------------------------------------
def test_unknown_user_is_a_clear_error(ml: Collection) -> None:
    with pytest.raises(NotFoundError, match="unknown user 'nobody'"):
        Recommender(ml).recommend("nobody")


def test_empty_history_falls_back_to_popular(
    tmp_path: Path, movies: pd.DataFrame, ratings: pd.DataFrame
) -> None:
    col = Collection.create("cold", root=tmp_path)
    col.ingest(movies, id_field="id", text="text", metadata=["title", "year", "genres"])
    ghost = pd.DataFrame({"user": ["ghost"], "item": ["not-a-movie"], "rating": [5], "timestamp": [1]})
    load_interactions(col, pd.concat([ratings, ghost], ignore_index=True), keep_unknown=True)
    embed_behaviour(col, "als", activate=True)
    res = Recommender(col).recommend("ghost", k=5)
    assert res.fallback and "most popular" in res.message and "ghost" in res.message
    top = Interactions.of(col).counts().index[:5].tolist()
    assert [r.id for r in res.items] == top
    drama = Recommender(col).recommend("ghost", k=5, where="genres contains 'Drama'")
    assert drama.fallback and all("Drama" in r.metadata["genres"] for r in drama.items)
    empty_session = Recommender(col).recommend(items=[], k=3)
    assert empty_session.fallback and "no history" in empty_session.message
    with pytest.raises(NotFoundError, match="not in collection"):
        Recommender(col).recommend(items=["1", "zzz"])


@pytest.mark.slow
def test_cli_end_to_end(tmp_path: Path, movies: pd.DataFrame, ratings: pd.DataFrame) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "embedscope.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    items_csv = tmp_path / "movies.csv"
    movies.to_csv(items_csv, index=False)
    assert (
        run(
            "ingest",
            str(items_csv),
            "-c",
            "ml",
            "--id-field",
            "id",
            "--text",
            "text",
            "--metadata",
            "title,year,genres",
        ).returncode
        == 0
    )
    out = run("interactions", "load", "ml", str(DATA / "u.data"), "--format", "movielens")
    assert out.returncode == 0 and "stored 100,000" in out.stdout
    assert run("embed-behaviour", "ml", "als", "--activate").returncode == 0
    rec = run("recommend", "ml", "--user", "196", "-k", "5", "--explain", "--json")
    body = json.loads(rec.stdout)
    assert len(body["items"]) == 5 and all(r["because"] for r in body["items"])
    assert body["version"] == "als" and "not measured" in body["version_reason"]
    ease = run("embed-behaviour", "ml", "ease", "-p", "l2=500")
    assert ease.returncode == 0 and "version ease (ease, dim 64)" in ease.stdout, ease.stderr
    picked = run("recommend", "ml", "--user", "196", "-k", "3")
    assert picked.returncode == 0 and "version ease: behavioural version, not measured" in picked.stderr
    table = run("recommend", "ml", "--user", "196", "-k", "3", "--explain", "--profile", "multi")
    assert table.returncode == 0 and "because you liked" in table.stdout
    odd = tmp_path / "odd.csv"
    pd.DataFrame(
        {
            "uid": ["a", "a", "a", "b"],
            "movie": ["1", "1", "nope", "50"],
            "when": ["2020-01-01", "2021-01-01", "2020-05-05", "2020-01-02"],
        }
    ).to_csv(odd, index=False)
    loaded = run(
        "interactions",
        "load",
        "ml",
        str(odd),
        "--user-field",
        "uid",
        "--item-field",
        "movie",
        "--time-field",
        "when",
        "--append",
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "1 interaction(s) reference items not in the collection (dropped)" in loaded.stdout
    assert "1 duplicate (user, item) interaction(s) collapsed" in loaded.stdout
    report = tmp_path / "recs.json"
    ev_out = run("evaluate-recs", "ml", "--profiles", "recency", "--no-tfidf", "--json", str(report))
    assert ev_out.returncode == 0, ev_out.stderr
    saved = json.loads(report.read_text())
    assert {"popularity", "als", "item2vec-predict/recency", "ease/recency"} <= {
        r["method"] for r in saved["results"]
    }
    assert saved["checks"] and all(c["passed"] for c in saved["checks"]) and "PASS" in ev_out.stdout
    best = saved["best"]
    assert best["version"] in {"als", "ease"} and "recorded" in ev_out.stdout
    measured = json.loads(run("recommend", "ml", "--user", "196", "-k", "3", "--json").stdout)
    assert (measured["version"], measured["profile"]) == (best["version"], best["profile"])
    assert "measured best by evaluate-recs" in measured["version_reason"]
    bad = run("recommend", "ml", "--user", "nobody")
    assert bad.returncode == 2 and "error:" in bad.stderr and "unknown user 'nobody'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_text_version_recommendations_on_a_small_minilm_subset(tmp_path: Path, movies: pd.DataFrame) -> None:
    """Content (MiniLM) vectors go through the same path: 120 movies only, to keep the test quick."""
    col = Collection.create("tiny", root=tmp_path)
    subset = movies[(movies["id"].astype(int) <= 120) | movies["id"].isin(["172", "181"])]
    col.ingest(subset, id_field="id", text="text", metadata=["title", "year", "genres"])
    col.embed("minilm", activate=True)
    session = ["50", "172", "181"]  # Star Wars, The Empire Strikes Back, Return of the Jedi
    res = Recommender(col).recommend(items=session, k=5, explain=True)
    assert not set(session) & {r.id for r in res.items}
    assert all(r.because and r.because[0]["id"] in session for r in res.items)
    # sci-fi/adventure neighbours rank first for a Star Wars session
    assert any(g in res.items[0].metadata["genres"] for g in ("Sci-Fi", "Adventure", "Action"))
    comedy = Recommender(col).recommend(items=session, k=5, where="genres contains 'Comedy'")
    assert comedy.items and all("Comedy" in r.metadata["genres"] for r in comedy.items)
