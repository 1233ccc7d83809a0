"""Offline evaluation of recommenders on real interactions.

Protocol (time-aware leave-last-out): each user's last interaction by timestamp (ties: input order)
is the test item; everything before it is training data. Behavioural embeddings and popularity are
learnt on the training part only (no leakage). Two rankings are scored per user:

- full: the test item ranked against ALL catalogue items the user has not interacted with in
  training (the honest protocol, Krichene & Rendle, KDD 2020 "On sampled metrics");
- sampled: the test item ranked against 100 items the user never interacted with, drawn with a
  fixed seed (He et al., WWW 2017, NCF protocol), comparable to that literature, but inflated.

Metrics: HR@10, NDCG@10, Recall@20 (one held-out item: the share of users whose item is in the top
20), catalogue coverage@10 (share of the catalogue appearing in someone's top 10; full ranking).
Each method is a scorer: training split -> (users x items) score matrix, higher is better, -inf
for "cannot score" (e.g. an item that no training interaction mentions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.encoders.base import l2_normalize
from embedscope.errors import EmbedscopeError
from embedscope.recommend import profiles as prof
from embedscope.recommend.interactions import Interactions, sort_by_time

if TYPE_CHECKING:
    from embedscope.collection import Collection

ProgressFn = Callable[[str], None]


@dataclass
class Split:
    """Leave-last-out split over a fixed catalogue. `train` is an Interactions of everything but
    each user's last item; `test_items[u]` is user u's held-out item (column index)."""

    users: list[str]
    items: list[str]
    train: Interactions
    test_cols: np.ndarray  # (n_users,) column of each user's test item
    train_matrix: sp.csr_matrix  # users x items, 1 where the user interacted in training
    seen_matrix: sp.csr_matrix  # users x items, train + test (for sampling negatives)


def leave_last_out(frame: pd.DataFrame, catalogue: Sequence[str], *, min_history: int = 2) -> Split:
    """Hold out each user's latest interaction; users with fewer than `min_history` interactions and
    interactions with items outside the catalogue are left out (counted in the error if none remain)."""
    col_of = {i: n for n, i in enumerate(catalogue)}
    frame = frame[frame["item"].isin(col_of)]
    frame = sort_by_time(frame).reset_index(drop=True)
    sizes = frame.groupby("user", sort=False)["item"].transform("size")
    frame = frame[sizes >= min_history].reset_index(drop=True)
    if frame.empty:
        raise EmbedscopeError(
            f"no user has {min_history}+ interactions with catalogue items; nothing to evaluate"
        )
    last = ~frame.duplicated("user", keep="last")  # sorted by (user, time, seq): the last row per user
    test, train = frame[last], frame[~last]
    users = test["user"].tolist()
    inter = Interactions(train)
    train_m = inter.matrix(users, list(catalogue))
    train_m.data[:] = 1.0
    test_cols = test["item"].map(col_of).to_numpy(dtype=np.int64)
    test_m = sp.csr_matrix((np.ones(len(users)), (np.arange(len(users)), test_cols)), shape=train_m.shape)
    seen = ((train_m + test_m) > 0).astype(np.float32).tocsr()
    return Split(users, list(catalogue), inter, test_cols, train_m.tocsr(), seen)


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


def score_als_users(split: Split, params: dict[str, Any] | None = None) -> np.ndarray:
    """Classic MF scoring: user factors . item factors, both learnt by ALS on the training split."""
    from embedscope.recommend.behavioural import fit_als

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

    def to_dict(self) -> dict[str, Any]:
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
    n_items = len(split.items)
    out = np.empty((len(split.users), n), dtype=np.int64)
    for u in range(len(split.users)):
        seen = split.seen_matrix.indices[split.seen_matrix.indptr[u] : split.seen_matrix.indptr[u + 1]]
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
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    item2vec_params: dict[str, Any] | None = None,
    als_params: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    frame: pd.DataFrame | None = None,
) -> RecsReport:
    """Run every method on a leave-last-out split of the collection's interactions.

    `content_versions`: dense text versions to evaluate (default: all non-behavioural dense ones)."""
    import time

    from embedscope.recommend.behavioural import METHODS
    from embedscope.recommend.interactions import read_interactions

    say = progress or (lambda _msg: None)
    frame = read_interactions(collection) if frame is None else frame
    catalogue = list(collection.store.item_hashes())
    split = leave_last_out(frame, catalogue)
    negs = sample_negatives(split, negatives, seed)
    report = RecsReport(
        collection.name, len(split.users), len(split.items), len(split.train), k, negatives, seed
    )
    results: dict[str, np.ndarray] = {}

    def run(name: str, fn: Callable[[], np.ndarray], notes: str = "") -> np.ndarray:
        say(name)
        t0 = time.perf_counter()
        scores = fn()
        full, sampled = evaluate_scores(split, scores, negs, k=k, k_recall=2 * k)
        report.results.append(MethodResult(name, full, sampled, round(time.perf_counter() - t0, 2), notes))
        results[name] = scores
        return scores

    run("popularity", lambda: score_popularity(split), "interaction counts in training")
    texts = {i.id: i.text for i in collection.store.iter_items()}
    item_texts = [texts[i] for i in split.items]
    if tfidf:
        from embedscope.encoders.registry import create_encoder, encoder_names

        if "tfidf" in encoder_names():
            enc = create_encoder("tfidf")
            mat = enc.fit(item_texts).encode(item_texts)
            dense = mat.toarray() if sp.issparse(mat) else np.asarray(mat)
            vecs = l2_normalize(dense.astype(np.float32))
            for p in profiles:
                run(
                    f"tfidf/{p}",
                    lambda p=p, vecs=vecs: score_profile(split, vecs, p, half_life=half_life),
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
        if sp.issparse(vectors):
            report.notes.append(f"version {name} is sparse: skipped")
            continue
        vecs = item_matrix(split, ids, np.asarray(vectors))
        for p in profiles:
            s = run(
                f"{name}/{p}",
                lambda p=p, vecs=vecs: score_profile(split, vecs, p, half_life=half_life),
                f"content: version '{name}' ({collection.store.get_version(name).encoder['name']})",
            )
            hr = report.results[-1].full[f"HR@{k}"]
            if content_best is None or hr > content_best[0]:
                content_best = (hr, f"{name}/{p}")
            del s
    if behavioural:
        from embedscope.recommend.behavioural import train_als, train_item2vec_model
        from embedscope.search.rerank import count_signal

        ids, vecs, ctx = train_item2vec_model(split.train, item2vec_params)
        iv, cv = item_matrix(split, ids, vecs), item_matrix(split, ids, ctx, normalise=False)
        for p in profiles:
            run(
                f"item2vec/{p}",
                lambda p=p: score_profile(split, iv, p, half_life=half_life),
                "behavioural: skip-gram over training histories; cosine to the profile",
            )
        for p in [p for p in profiles if p != "multi"]:
            run(
                f"item2vec-predict/{p}",
                lambda p=p: score_profile(split, iv, p, half_life=half_life, context=cv),
                "behavioural: profile . skip-gram context vectors (the model's co-occurrence score)",
            )
        pop_counts = np.asarray(split.train_matrix.sum(axis=0)).ravel()
        pop_sig = np.array(
            [count_signal(dict(enumerate(pop_counts))).get(n, 0.0) for n in range(len(pop_counts))]
        )
        if "recency" in profiles:
            run(
                "item2vec/recency + popularity 0.5",
                lambda: 0.5 * results["item2vec/recency"] + 0.5 * pop_sig[None, :],
                "ranking stage: ranking.blend(weight=0.5) with log-count popularity",
            )
        ids, vecs = train_als(split.train, als_params)
        av = item_matrix(split, ids, vecs)
        for p in profiles:
            run(
                f"als-items/{p}",
                lambda p=p: score_profile(split, av, p, half_life=half_life),
                "behavioural: profile over normalised ALS item factors; cosine",
            )
        run("als", lambda: score_als_users(split, als_params), "behavioural: ALS user x item factors")
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
        for family in ("item2vec", "als"):
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
    report.notes.append(
        "implicit feedback = every rating (1-5) counts as an interaction, as in the NCF protocol; the "
        "held-out item is the user's last rating regardless of its value"
    )
    return report
