"""Hold-out splits of an interaction table and top-k metrics over a users x items score matrix.

One place for both users of them: the item-item encoders choose their own parameter (EASE's λ,
ItemKNN's k) by validation on the interactions they are given, and `embedscope.evaluate.recs`
scores methods on the same splits. Because an encoder only ever sees the training part of an
evaluation, its choice can never look at the test part.

- `split_last`: each user's latest interaction (by time, ties: input order) is held out;
- `split_random`: a seeded random share of all interactions is held out (the "random 80/20"
  protocol of the published MovieLens tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.errors import EmbedscopeError
from embedscope.recommend.interactions import sort_by_time


def split_last(
    frame: pd.DataFrame, catalogue: Sequence[str] | None = None, *, min_history: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): each user's latest interaction is the test row; users with fewer than
    `min_history` interactions and items outside `catalogue` are left out."""
    if catalogue is not None:
        frame = frame[frame["item"].isin(set(catalogue))]
    frame = sort_by_time(frame).reset_index(drop=True)
    sizes = frame.groupby("user", sort=False)["item"].transform("size")
    frame = frame[sizes >= min_history].reset_index(drop=True)
    if frame.empty:
        raise EmbedscopeError(
            f"no user has {min_history}+ interactions with catalogue items; nothing to hold out"
        )
    last = ~frame.duplicated("user", keep="last")  # sorted by (user, time, seq): the last row per user
    return frame[~last].reset_index(drop=True), frame[last].reset_index(drop=True)


def split_random(
    frame: pd.DataFrame,
    catalogue: Sequence[str] | None = None,
    *,
    test_ratio: float = 0.2,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): a random `test_ratio` of all interactions (not per user) is the test part;
    the same seed and input give the same split."""
    if not 0 < test_ratio < 1:
        raise EmbedscopeError(f"test ratio must be between 0 and 1, not {test_ratio}")
    if catalogue is not None:
        frame = frame[frame["item"].isin(set(catalogue))]
    # a fixed row order first, so the split depends on the data and the seed, not on how it was read
    frame = sort_by_time(frame).reset_index(drop=True)
    if len(frame) < 2:
        raise EmbedscopeError("need at least 2 interactions to hold some out")
    order = np.random.default_rng(seed).permutation(len(frame))
    n_train = int(round(len(frame) * (1 - test_ratio)))
    train = frame.iloc[np.sort(order[:n_train])].reset_index(drop=True)
    test = frame.iloc[np.sort(order[n_train:])].reset_index(drop=True)
    return train, test


@dataclass
class Holdout:
    """A split as matrices: rows = `users`, columns = `items` (binary, 1 per interaction)."""

    users: list[str]
    items: list[str]
    train: pd.DataFrame
    train_matrix: sp.csr_matrix
    test_matrix: sp.csr_matrix


def holdout(train: pd.DataFrame, test: pd.DataFrame, items: Sequence[str]) -> Holdout:
    """Matrices of a (train, test) split over `items`; rows are the users with a test interaction."""
    users = list(pd.unique(test["user"]))
    return Holdout(
        users,
        list(items),
        train,
        binary_matrix(train, users, items),
        binary_matrix(test, users, items),
    )


def binary_matrix(frame: pd.DataFrame, users: Sequence[str], items: Sequence[str]) -> sp.csr_matrix:
    """users x items CSR, 1.0 where the user interacted with the item (rows outside the orders dropped)."""
    row_of = {u: n for n, u in enumerate(users)}
    col_of = {i: n for n, i in enumerate(items)}
    r = frame["user"].map(row_of)
    c = frame["item"].map(col_of)
    ok = (r.notna() & c.notna()).to_numpy()
    m = sp.csr_matrix(
        (np.ones(int(ok.sum()), dtype=np.float32), (r[ok].astype(int), c[ok].astype(int))),
        shape=(len(users), len(items)),
    )
    m.data[:] = 1.0  # a repeated (user, item) pair counts once
    return m


def topk_metrics(
    scores: np.ndarray, train_matrix: sp.csr_matrix, test_matrix: sp.csr_matrix, k: int = 10
) -> dict[str, float]:
    """Full-ranking metrics over every user with a test item: each user's training items are
    excluded, every other catalogue item competes. Binary relevance:

    - NDCG@k: DCG of the top k over the ideal DCG of min(|test|, k) hits (Rendle 2021; the
      definition of the published MovieLens tables this is compared with);
    - Recall@k = hits / |test|; Precision@k = hits / k; HR@k = share of users with a hit;
    - MRR = 1 / rank of the best-ranked test item in the full ranking; MAP@k = average precision
      at the hit positions over min(|test|, k).

    Ties are broken by column order (a stable sort), as a list shown to a user would be."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[~np.isfinite(s)] = -np.inf
    tr = train_matrix.tocoo()
    s[tr.row, tr.col] = -np.inf
    n_test = np.asarray(test_matrix.sum(axis=1)).ravel()
    rows = np.flatnonzero(n_test > 0)
    if len(rows) == 0:
        raise EmbedscopeError("no user has a test interaction; nothing to score")
    s, n_test = s[rows], n_test[rows]
    truth = test_matrix[rows].toarray() > 0
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(k), (len(s), 1))
    # order the top k by score, ties by column (argpartition's order is arbitrary)
    order = np.lexsort((part, -np.take_along_axis(s, part, axis=1)), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    hits = np.take_along_axis(truth, top, axis=1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(disc)[np.minimum(n_test, k).astype(int) - 1]
    n_hits = hits.sum(axis=1)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    best = np.where(truth, s, -np.inf).max(axis=1)
    rank = (s > best[:, None]).sum(axis=1)  # items strictly above the best test item
    return {
        f"NDCG@{k}": float(((hits * disc).sum(axis=1) / ideal).mean()),
        f"Recall@{k}": float((n_hits / n_test).mean()),
        f"Precision@{k}": float((n_hits / k).mean()),
        f"HR@{k}": float((n_hits > 0).mean()),
        "MRR": float(np.where(np.isfinite(best), 1.0 / (rank + 1.0), 0.0).mean()),
        f"MAP@{k}": float(((precision_at * hits).sum(axis=1) / np.minimum(n_test, k)).mean()),
    }
