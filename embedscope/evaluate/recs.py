"""Offline evaluation of recommenders on real interactions, under two protocols.

Leave-last-out by time (`evaluate_recommenders`, the default of `embedscope evaluate-recs`): each
user's last interaction by timestamp (ties: input order) is the test item; everything before it is
training data. Behavioural embeddings and popularity are learnt on the training part only (no
leakage). Two rankings are scored per user:

- full: the test item ranked against ALL catalogue items the user has not interacted with in
  training (the honest protocol, Krichene & Rendle, KDD 2020 "On sampled metrics");
- sampled: the test item ranked against 100 items the user never interacted with, drawn with a
  fixed seed (He et al., WWW 2017, NCF protocol), comparable to that literature, but inflated.

Metrics: HR@10, NDCG@10, Recall@20 (one held-out item: the share of users whose item is in the top
20), catalogue coverage@10 (share of the catalogue appearing in someone's top 10; full ranking).

Random 80/20 (`recs_random.evaluate_random_split`, `--protocol random`): a seeded random 20% of all
interactions is the test part, every user with a test item is ranked over the full catalogue minus
her training items, and NDCG@10 / Recall@10 / Precision@10 / HR@10 / MRR / MAP@10 are averaged
over users (embedscope.recommend.validation.topk_metrics), the protocol of the published MovieLens
100K tables (Recommenders.jl: MostPop 0.220, ItemKNN 0.399, MF 0.440, SLIM 0.436 NDCG@10).

Each method is a scorer: training split -> (users x items) score matrix, higher is better, -inf
for "cannot score" (e.g. an item that no training interaction mentions). EASE's λ and ItemKNN's k
are chosen by validation inside the training part (their encoders' "auto"), never on the test part.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.encoders.base import is_sparse, l2_normalize
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject
from embedscope.recommend import profiles as prof
from embedscope.recommend.behavioural import (
    METHODS,
    ItemItemModel,
    create_behavioural,
    fit_als,
    fit_item_item,
)
from embedscope.recommend.interactions import Interactions, read_interactions
from embedscope.recommend.validation import binary_matrix, split_last, split_random

if TYPE_CHECKING:
    from embedscope.collection import Collection

ProgressFn = Callable[[str], None]


@dataclass
class Split:
    """A train/test split over a fixed catalogue. `train` is an Interactions of the training part;
    rows of the matrices are `users` (those with a test item), columns the catalogue `items`.
    Leave-last-out also has `test_cols[u]` (user u's one held-out item) and `seen_matrix`."""

    users: list[str]
    items: list[str]
    train: Interactions
    train_matrix: sp.csr_matrix  # users x items, 1 where the user interacted in training
    test_matrix: sp.csr_matrix  # users x items, 1 for each held-out interaction
    test_cols: np.ndarray | None = None  # (n_users,) column of each user's test item (leave-last-out)
    seen_matrix: sp.csr_matrix | None = None  # users x items, train + test (for sampling negatives)


def leave_last_out(frame: pd.DataFrame, catalogue: Sequence[str], *, min_history: int = 2) -> Split:
    """Hold out each user's latest interaction; users with fewer than `min_history` interactions and
    interactions with items outside the catalogue are left out (counted in the error if none remain)."""
    train, test = split_last(frame, catalogue, min_history=min_history)
    users = test["user"].tolist()
    col_of = {i: n for n, i in enumerate(catalogue)}
    train_m = binary_matrix(train, users, list(catalogue))
    test_cols = test["item"].map(col_of).to_numpy(dtype=np.int64)
    test_m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (np.arange(len(users)), test_cols)), shape=train_m.shape
    )
    seen = ((train_m + test_m) > 0).astype(np.float32).tocsr()
    return Split(users, list(catalogue), Interactions(train), train_m, test_m, test_cols, seen)


def random_split(
    frame: pd.DataFrame, catalogue: Sequence[str], *, test_ratio: float = 0.2, seed: int = 0
) -> Split:
    """A seeded random `test_ratio` of all interactions held out (the same seed, the same split);
    rows are the users with at least one test interaction."""
    train, test = split_random(frame, catalogue, test_ratio=test_ratio, seed=seed)
    users = list(pd.unique(test["user"]))
    items = list(catalogue)
    return Split(
        users,
        items,
        Interactions(train),
        binary_matrix(train, users, items),
        binary_matrix(test, users, items),
    )


# --- scorers ------------------------------------------------------------------------------------
def score_popularity(split: Split) -> np.ndarray:
    counts = np.asarray(split.train_matrix.sum(axis=0)).ravel().astype(np.float64)
    return np.broadcast_to(counts, split.train_matrix.shape).copy()


def item_matrix(
    split: Split, ids: Sequence[str], vectors: np.ndarray, *, normalise: bool = True
) -> np.ndarray:
    """Vectors in catalogue order (L2-normalised unless told not to); zero rows for items without one."""
    out = np.zeros((len(split.items), vectors.shape[1]), dtype=np.float32)
    col_of = {i: n for n, i in enumerate(split.items)}
    rows = [(col_of[i], n) for n, i in enumerate(ids) if i in col_of]
    if rows:
        c, r = map(list, zip(*rows, strict=True))
        sub = np.asarray(vectors, dtype=np.float32)[r]
        out[c] = l2_normalize(sub) if normalise else sub
    return out


def _recency_matrix(split: Split, half_life: float, unit: str = "items") -> sp.csr_matrix:
    """users x items training weights 0.5 ** (age / half_life), age from the user's latest interaction
    in interactions (unit="items") or days; the same weights as profiles.recency_weights."""
    f = split.train.frame
    col_of = {i: n for n, i in enumerate(split.items)}
    row_of = {u: n for n, u in enumerate(split.users)}
    f = f[f["user"].isin(row_of)]
    t = f["timestamp"].to_numpy(dtype=np.float64)
    if unit == "items" or np.isnan(t).any():
        age = f.groupby("user", sort=False).cumcount(ascending=False).to_numpy(dtype=np.float64)
    else:
        age = (f.groupby("user", sort=False)["timestamp"].transform("max").to_numpy() - t) / prof.DAY
    w = np.power(0.5, age / half_life)
    return sp.csr_matrix(
        (w, (f["user"].map(row_of).to_numpy(), f["item"].map(col_of).to_numpy())),
        shape=split.train_matrix.shape,
    )


def score_profile(
    split: Split,
    item_vecs: np.ndarray,
    profile: str = "mean",
    *,
    half_life: float = 5.0,
    half_life_unit: str = "items",
    max_interests: int = 3,
    min_interest_size: int = 5,
    context: np.ndarray | None = None,
) -> np.ndarray:
    """Scores from a user profile over item vectors (catalogue order, normalised, zero = missing).
    With `context` (item2vec output vectors, catalogue order) items are scored by profile . context
    ("predict") instead of cosine; the multi profile is cosine only."""
    has_vec = np.any(item_vecs != 0, axis=1)
    if profile in ("mean", "recency"):
        weights = (
            split.train_matrix if profile == "mean" else _recency_matrix(split, half_life, half_life_unit)
        )
        users = l2_normalize(np.asarray(weights @ item_vecs))
        target = item_vecs if context is None else context
        scores = (users @ target.T).astype(np.float64)
    elif profile == "multi":
        scores = np.empty(split.train_matrix.shape, dtype=np.float64)
        m = split.train_matrix
        # everything from the item-item similarity matrix: centroid . x = sum(S[members, x]) / |sum of
        # member vectors|, and |sum|^2 = sum(S[members, members]); one product instead of one per user
        sim = (item_vecs @ item_vecs.T).astype(np.float64)
        for u in range(m.shape[0]):
            cols = m.indices[m.indptr[u] : m.indptr[u + 1]]
            live = cols[has_vec[cols]]
            if len(live) == 0:
                scores[u] = 0.0
                continue
            groups = prof.interest_groups(
                sim[np.ix_(live, live)], max_interests=max_interests, min_size=min_interest_size
            )
            s = np.stack(
                [
                    sim[live[g]].sum(axis=0) / np.sqrt(max(sim[np.ix_(live[g], live[g])].sum(), 1e-12))
                    for g in groups
                ]
            )
            s[:, ~has_vec] = -np.inf
            s[:, cols] = -np.inf  # seen items must not take round-robin slots
            scores[u] = prof.round_robin_rank(s)
    else:
        raise EmbedscopeError(f"unknown profile '{profile}'; valid: {', '.join(prof.PROFILES)}")
    scores[:, ~has_vec] = -np.inf
    scores[~np.any(scores > -np.inf, axis=1)] = 0.0  # a user with no usable history: all ties
    return scores


def score_als_users(split: Split, params: JSONObject | None = None) -> np.ndarray:
    """Classic MF scoring: user factors . item factors, both learnt by ALS on the training split."""

    users, items, model = fit_als(split.train, params)
    uf = np.zeros((len(split.users), model.user_factors.shape[1]), dtype=np.float32)
    row_of = {u: n for n, u in enumerate(users)}
    for n, u in enumerate(split.users):
        if u in row_of:
            uf[n] = model.user_factors[row_of[u]]
    ivec = np.zeros((len(split.items), uf.shape[1]), dtype=np.float32)
    col_of = {i: n for n, i in enumerate(items)}
    known = np.array([i in col_of for i in split.items])
    ivec[known] = np.asarray(model.item_factors)[[col_of[i] for i in split.items if i in col_of]]
    scores = (uf @ ivec.T).astype(np.float64)
    scores[:, ~known] = -np.inf
    return scores


def fit_item_item_on(split: Split, method: str, params: JSONObject | None = None) -> ItemItemModel:
    """EASE / ItemKNN fitted on the split's training part (λ or k chosen inside it when "auto")."""

    return fit_item_item(method, split.train, params)


def score_item_item(split: Split, model: ItemItemModel, weights: sp.spmatrix | None = None) -> np.ndarray:
    """Scores of an item x item model: each user's training row (`weights`: binary by default, or
    recency weights) times W; items the model never saw in training cannot be scored (-inf)."""
    col_of = {i: n for n, i in enumerate(split.items)}
    cols = np.array([col_of[i] for i in model.items], dtype=np.int64)
    rows = (split.train_matrix if weights is None else weights)[:, cols]
    product = rows @ model.weights
    scores = np.full(split.train_matrix.shape, -np.inf)
    scores[:, cols] = product.toarray() if is_sparse(product) else np.asarray(product)
    return scores


def rrf_scores(*score_mats: np.ndarray, k: int = 60) -> np.ndarray:
    """Reciprocal rank fusion of full score matrices (Cormack et al., 2009), vectorised over users
    (embedscope.search.fusion.rrf does the same for short ranked lists)."""
    out = np.zeros(score_mats[0].shape, dtype=np.float64)
    for s in score_mats:
        order = np.argsort(-s, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(s.shape[1])[None, :].repeat(s.shape[0], 0), axis=1)
        out += 1.0 / (k + 1 + ranks)
    return out


def zscore_fusion(score_mats: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of per-user z-scored score rows (unscorable entries stay at the bottom).

    Chosen over equal-weight RRF for the hybrid because a weak signal (title + genre text on
    MovieLens) drags a strong one down under RRF (HR@10 0.100 vs ALS alone 0.141), while a small
    weight lets it break ties (docs/recommend.md)."""
    out = np.zeros(score_mats[0].shape, dtype=np.float64)
    for s, w in zip(score_mats, weights, strict=True):
        finite = np.where(np.isfinite(s), s, np.nan)
        mean = np.nanmean(finite, axis=1, keepdims=True)
        std = np.nanstd(finite, axis=1, keepdims=True) + 1e-12
        out += w * np.nan_to_num((finite - mean) / std, nan=-10.0)
    return out


# --- metrics ------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    method: str
    full: dict[str, float]
    sampled: dict[str, float]
    seconds: float
    notes: str = ""
    #: how `recommend` reproduces this row: {"version", "method", "profile", "scoring"}; None when it
    #: cannot (popularity, user x item factors, fusions) or no stored version has these parameters
    use: JSONObject | None = None

    def to_dict(self) -> JSONObject:
        return asdict(self)


def _rank_of(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target column; ties count against the target (pessimistic, so a
    method that cannot tell items apart gets no credit from the order they happen to be stored in)."""
    tgt = scores[np.arange(len(scores)), target][:, None]
    return (scores > tgt).sum(axis=1) + (scores == tgt).sum(axis=1) - 1


def _metrics(rank: np.ndarray, k: int, k_recall: int) -> dict[str, float]:
    hit = rank < k
    return {
        f"HR@{k}": float(hit.mean()),
        f"NDCG@{k}": float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean()),
        f"Recall@{k_recall}": float((rank < k_recall).mean()),
        "MRR": float((1.0 / (rank + 1.0)).mean()),
    }


def sample_negatives(split: Split, n: int = 100, seed: int = 42) -> np.ndarray:
    """(users, n) columns of items each user never interacted with (train or test), fixed seed."""
    rng = np.random.default_rng(seed)
    if split.seen_matrix is None:
        raise EmbedscopeError("sampled negatives need a leave-last-out split (it records what each user saw)")
    seen_matrix = split.seen_matrix
    n_items = len(split.items)
    out = np.empty((len(split.users), n), dtype=np.int64)
    for u in range(len(split.users)):
        seen = seen_matrix.indices[seen_matrix.indptr[u] : seen_matrix.indptr[u + 1]]
        pool = np.setdiff1d(np.arange(n_items), seen, assume_unique=False)
        if len(pool) < n:
            raise EmbedscopeError(
                f"user {split.users[u]} has only {len(pool)} unseen items; need {n} negatives"
            )
        out[u] = rng.choice(pool, size=n, replace=False)
    return out


def evaluate_scores(
    split: Split, scores: np.ndarray, negatives: np.ndarray, *, k: int = 10, k_recall: int = 20
) -> tuple[dict[str, float], dict[str, float]]:
    """(full-ranking metrics + coverage, sampled-protocol metrics) for one score matrix."""
    if split.test_cols is None:
        raise EmbedscopeError("this protocol needs a leave-last-out split (one held-out item per user)")
    full = np.array(scores, dtype=np.float64, copy=True)
    tr = split.train_matrix.tocoo()
    full[tr.row, tr.col] = -np.inf  # training items are never recommended
    # an unscorable item (-inf) must still rank below every scorable one, and a test item that is
    # unscorable ranks behind all of them: replace -inf by a value below the row minimum
    finite_min = np.where(np.isfinite(full), full, np.inf).min(axis=1, keepdims=True)
    finite_min = np.where(np.isfinite(finite_min), finite_min, 0.0)
    unscorable = ~np.isfinite(full)
    full = np.where(unscorable, finite_min - 1.0, full)
    full[tr.row, tr.col] = finite_min[tr.row, 0] - 2.0  # seen items below unscorable ones
    rank = _rank_of(full, split.test_cols)
    out_full = _metrics(rank, k, k_recall)
    top = np.argpartition(-full, k, axis=1)[:, :k]
    out_full[f"coverage@{k}"] = float(len(np.unique(top)) / len(split.items))
    cand = np.concatenate([split.test_cols[:, None], negatives], axis=1)
    sub = np.take_along_axis(full, cand, axis=1)
    out_sampled = _metrics(_rank_of(sub, np.zeros(len(sub), dtype=np.int64)), k, k_recall)
    return out_full, out_sampled


# --- the whole benchmark --------------------------------------------------------------------------
@dataclass
class RecsReport:
    collection: str
    users: int
    items: int
    train_interactions: int
    k: int
    negatives: int
    seed: int
    results: list[MethodResult] = field(default_factory=list)
    checks: list[JSONObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the row `recommend` should follow by default (best full-ranking NDCG@k among the rows that a
    #: stored version reproduces), in the form embedscope.recommend.choice records
    best: JSONObject | None = None

    def to_dict(self) -> JSONObject:
        return asdict(self)


def stored_behavioural(collection: Collection) -> JSONObject:
    """method -> the stored behavioural version of that method (the one named like the method,
    else the latest trained): its parameters are the ones evaluated, so a row maps to a version."""

    out: JSONObject = {}
    for v in sorted(collection.versions(), key=lambda v: v.updated_at):
        method = v.encoder.get("name")
        if method in METHODS and (method not in out or out[method].name != method):
            out[method] = v
    return out


def _params_and_version(
    method: str, explicit: JSONObject | None, stored: JSONObject
) -> tuple[JSONObject, str | None]:
    """The parameters to evaluate `method` with (explicit ones, else the stored version's, else the
    defaults) and the stored version those parameters are exactly the ones of (or None)."""

    info = stored.get(method)
    params = create_behavioural(
        method, explicit if explicit is not None else (info.encoder.get("params") if info else None)
    ).params
    same = info is not None and create_behavioural(method, info.encoder.get("params")).params == params
    return params, (info.name if info is not None and same else None)


def evaluate_recommenders(
    collection: Collection,
    *,
    k: int = 10,
    content_versions: Sequence[str] | None = None,
    profiles: Sequence[str] = ("mean", "recency", "multi"),
    tfidf: bool = True,
    behavioural: bool = True,
    half_life: float = 5.0,
    hybrid_weight: float = 0.3,
    negatives: int = 100,
    seed: int = 42,
    item2vec_params: JSONObject | None = None,
    als_params: JSONObject | None = None,
    ease_params: JSONObject | None = None,
    itemknn_params: JSONObject | None = None,
    progress: ProgressFn | None = None,
    frame: pd.DataFrame | None = None,
) -> RecsReport:
    """Run every method on a leave-last-out split of the collection's interactions.

    `content_versions`: dense text versions to evaluate (default: all non-behavioural dense ones).
    Behavioural methods are trained with the parameters of the collection's stored version of that
    method when there is one (so the best row names a version `recommend` can use), else with the
    given `*_params` or the defaults."""

    say = progress or (lambda _msg: None)
    frame = read_interactions(collection) if frame is None else frame
    catalogue = collection.ids()
    split = leave_last_out(frame, catalogue)
    negs = sample_negatives(split, negatives, seed)
    report = RecsReport(
        collection.name, len(split.users), len(split.items), len(split.train), k, negatives, seed
    )
    results: dict[str, np.ndarray] = {}

    def run(
        name: str, fn: Callable[[], np.ndarray], notes: str = "", use: JSONObject | None = None
    ) -> np.ndarray:
        say(name)
        t0 = time.perf_counter()
        scores = fn()
        full, sampled = evaluate_scores(split, scores, negs, k=k, k_recall=2 * k)
        seconds = round(time.perf_counter() - t0, 2)
        report.results.append(MethodResult(name, full, sampled, seconds, notes, use))
        results[name] = scores
        return scores

    run("popularity", lambda: score_popularity(split), "interaction counts in training")
    texts = {i.id: i.text for i in collection.items()}
    item_texts = [texts[i] for i in split.items]
    if tfidf:
        from embedscope.encoders.registry import create_encoder, encoder_names

        if "tfidf" in encoder_names():
            enc = create_encoder("tfidf")
            mat = enc.fit(item_texts).encode(item_texts)
            dense = mat.toarray() if is_sparse(mat) else np.asarray(mat)
            vecs = l2_normalize(dense.astype(np.float32))
            for p in profiles:
                run(
                    f"tfidf/{p}",
                    partial(score_profile, split, vecs, p, half_life=half_life),
                    "content: tf-idf of title + genres",
                )
        else:
            report.notes.append("tfidf encoder not registered: skipped")
    if content_versions is None:
        content_versions = [
            v.name for v in collection.versions() if not v.sparse and v.encoder.get("name") not in METHODS
        ]
    content_best: tuple[float, str] | None = None
    for name in content_versions:
        ids, vectors = collection.vectors(name)
        if is_sparse(vectors):
            report.notes.append(f"version {name} is sparse: skipped")
            continue
        vecs = item_matrix(split, ids, np.asarray(vectors))
        encoder_name = collection.version_info(name).encoder["name"]
        for p in profiles:
            s = run(
                f"{name}/{p}",
                partial(score_profile, split, vecs, p, half_life=half_life),
                f"content: version '{name}' ({encoder_name})",
                {"version": name, "method": encoder_name, "profile": p, "scoring": "cosine"},
            )
            hr = report.results[-1].full[f"HR@{k}"]
            if content_best is None or hr > content_best[0]:
                content_best = (hr, f"{name}/{p}")
            del s
    if behavioural:
        from embedscope.recommend.behavioural import train_als, train_item2vec_model
        from embedscope.search.rerank import count_signal

        stored = stored_behavioural(collection)
        explicit = {
            "item2vec": item2vec_params,
            "als": als_params,
            "ease": ease_params,
            "itemknn": itemknn_params,
        }
        params, version = {}, {}
        for m in METHODS:
            params[m], version[m] = _params_and_version(m, explicit[m], stored)

        def use(method: str, profile: str, scoring: str) -> JSONObject | None:
            if version[method] is None:
                return None
            return {"version": version[method], "method": method, "profile": profile, "scoring": scoring}

        ids, vecs, ctx = train_item2vec_model(split.train, params["item2vec"])
        iv, cv = item_matrix(split, ids, vecs), item_matrix(split, ids, ctx, normalise=False)
        for p in profiles:
            run(
                f"item2vec/{p}",
                partial(score_profile, split, iv, p, half_life=half_life),
                "behavioural: skip-gram over training histories; cosine to the profile",
                use("item2vec", p, "cosine"),
            )
        for p in [p for p in profiles if p != "multi"]:
            run(
                f"item2vec-predict/{p}",
                partial(score_profile, split, iv, p, half_life=half_life, context=cv),
                "behavioural: profile . skip-gram context vectors (the model's co-occurrence score)",
                use("item2vec", p, "predict"),
            )
        pop_counts = np.asarray(split.train_matrix.sum(axis=0)).ravel()
        by_column = count_signal({str(n): float(c) for n, c in enumerate(pop_counts)})  # once, not per item
        pop_sig = np.array([by_column.get(str(n), 0.0) for n in range(len(pop_counts))])
        if "recency" in profiles:
            run(
                "item2vec/recency + popularity 0.5",
                lambda: 0.5 * results["item2vec/recency"] + 0.5 * pop_sig[None, :],
                "ranking stage: ranking.blend(weight=0.5) with log-count popularity",
            )
        ids, vecs = train_als(split.train, params["als"])
        av = item_matrix(split, ids, vecs)
        for p in profiles:
            run(
                f"als-items/{p}",
                partial(score_profile, split, av, p, half_life=half_life),
                "behavioural: profile over normalised ALS item factors; cosine",
                use("als", p, "cosine"),
            )
        run("als", lambda: score_als_users(split, params["als"]), "behavioural: ALS user x item factors")
        for method, what in (("ease", "λ"), ("itemknn", "k")):
            say(f"{method}: fitting on the training part")
            model = fit_item_item_on(split, method, params[method])
            key = "l2" if method == "ease" else "k"
            chosen = f"{what} = {model.chosen[key]:g}" + (
                " (validation: each user's last training item)" if params[method][key] == "auto" else ""
            )
            chosen += (
                f"; fit {model.chosen['fit_seconds']:g} s + validation "
                f"{model.chosen['validation_seconds']:g} s"
            )
            for p in [p for p in profiles if p != "multi"]:
                weights = None if p == "mean" else _recency_matrix(split, half_life)
                run(
                    f"{method}/{p}",
                    partial(score_item_item, split, model, weights),
                    f"behavioural: {p} profile weights over the training items x {method}'s item x item "
                    f"matrix; {chosen}",
                    use(method, p, "predict"),
                )
        if content_best is not None:
            w = hybrid_weight
            run(
                f"hybrid: {content_best[1]} {w:g} + als {1 - w:g}",
                lambda: zscore_fusion([results[content_best[1]], results["als"]], [w, 1 - w]),
                "weighted fusion of z-scored rows: the best content run and ALS",
            )
            run(
                f"hybrid: {content_best[1]} + als, RRF",
                lambda: rrf_scores(results[content_best[1]], results["als"]),
                "reciprocal rank fusion (k=60), equal weights",
            )
        pop = next(r for r in report.results if r.method == "popularity").full[f"HR@{k}"]
        for family in METHODS:
            # the embeddings on their own: rows blended with popularity do not count
            rows = [
                r
                for r in report.results
                if r.method.split("/")[0].split("-")[0] == family and "popularity" not in r.method
            ]
            best = max(rows, key=lambda r: r.full[f"HR@{k}"])
            hr = best.full[f"HR@{k}"]
            report.checks.append(
                {
                    "check": f"{family} (best: {best.method}) beats popularity, full-ranking HR@{k}, by 20%+",
                    "method": best.method,
                    "value": round(hr, 4),
                    "popularity": round(pop, 4),
                    "lift": round(hr / pop - 1, 3) if pop > 0 else None,
                    "passed": bool(hr >= 1.2 * pop),
                }
            )
    report.best = _best_row(collection, report, k)
    report.notes.append(
        "implicit feedback = every rating (1-5) counts as an interaction, as in the NCF protocol; the "
        "held-out item is the user's last rating regardless of its value"
    )
    return report


def _best_row(collection: Collection, report: RecsReport, k: int) -> JSONObject | None:
    """The row with the best full-ranking NDCG@k that a stored version reproduces, as a record
    for embedscope.recommend.choice (version, profile, scoring, the score and popularity's)."""
    metric = f"NDCG@{k}"
    rows = [r for r in report.results if r.use is not None]
    if not rows:
        return None
    best = max(rows, key=lambda r: r.full[metric])
    pop = next((r for r in report.results if r.method == "popularity"), None)
    use = best.use
    if use is None:  # rows were chosen for having one
        return None
    info = collection.version_info(use["version"])
    return {
        **use,
        "row": best.method,
        "metric": metric,
        "value": round(best.full[metric], 4),
        "popularity": round(pop.full[metric], 4) if pop else None,
        "encoder": info.encoder,
        "protocol": "leave-last-out by time, full ranking",
    }
