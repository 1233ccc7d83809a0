"""Item embeddings learned from behaviour instead of text, stored as ordinary embedding versions.

- item2vec (Barkan & Koenigstein, 2016): gensim Word2Vec, skip-gram with negative sampling, over
  each user's time-ordered history as a "sentence"; items used by the same people get close vectors.
- als: implicit-feedback matrix factorisation (Hu, Koren & Volinsky, 2008) with the `implicit`
  library's ALS; the item factors are the item vectors.
- ease: EASE (Steck, WWW 2019), a closed-form item x item linear model; its regularisation λ is
  chosen by validation on the interactions it is given (`l2="auto"`).
- itemknn: item-based nearest neighbours (Sarwar et al., WWW 2001): shrunk cosine between the
  items' interaction columns, each candidate item keeping its k most similar items (`k="auto"`:
  chosen by validation like EASE's λ).

EASE and ItemKNN score a user by their item x item matrix W (sum of W[i, j] over history items i,
"predict" scoring); the version's vectors are W's rows in its top singular directions, so similar,
cosine scoring, MMR and interests work on them as on any version.

`embed_behaviour(collection, "item2vec" | "als" | "ease" | "itemknn")` trains on the collection's
stored interactions and writes a version through the store's `write_version`, so `search_vectors`,
`similar` and `recommend` work on it like on any text version. Vectors are L2-normalised (cosine metric).
Items with no interactions are EXCLUDED from the version (they have no behavioural position; a
zero vector would tie with everything): `similar` on such an item raises a clear error, and they
never appear as behavioural candidates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.encoders.base import Encoder, is_sparse, l2_normalize
from embedscope.encoders.registry import create_encoder
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue
from embedscope.names import check_name
from embedscope.recommend.interactions import Interactions as _I
from embedscope.store.base import VersionData, fingerprint

if TYPE_CHECKING:
    from implicit.cpu.als import AlternatingLeastSquares

    from embedscope.collection import Collection
    from embedscope.recommend.interactions import Interactions
    from embedscope.store.base import VersionInfo

METHODS = ("item2vec", "als", "ease", "itemknn")
#: behavioural encoders scored by an item x item matrix (ItemItemEncoder)
ITEM_ITEM = ("ease", "itemknn")


class BehaviouralEncoder(Encoder):
    """The stored "encoder" of a behavioural version: it records how the vectors were trained
    (config + params, so the version is reproducible) but cannot turn text into a vector."""

    requires_fit: bool = False
    encodes_text: ClassVar[bool] = False

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        raise EmbedscopeError(
            f"behavioural embeddings ({self.name}) cannot encode text; use similar/recommend "
            f"(an item without interactions has no {self.name} vector), or train them with "
            f"`embedscope embed-behaviour NAME {self.name}`"
        )

    @property
    def dim(self) -> int:
        return int(self.params.get("vector_size") or self.params["factors"])

    def _check(self) -> None:
        for key in ("vector_size", "factors", "window", "epochs", "iterations", "min_count"):
            if key in self.params and int(self.params[key]) < 1:
                raise EmbedscopeError(f"encoder '{self.name}': {key} must be >= 1")


class Item2VecEncoder(BehaviouralEncoder):
    name: ClassVar[str] = "item2vec"
    description: ClassVar[str] = (
        "item2vec: skip-gram word2vec (gensim) over users' time-ordered histories (behavioural)"
    )
    defaults: ClassVar[JSONObject] = {
        "vector_size": 64,
        "window": 20,  # histories are sets more than sentences: a wide window (Barkan & Koenigstein)
        "min_count": 1,
        "negative": 5,
        "ns_exponent": 0.75,
        "sample": 0.0,  # no down-sampling of popular items: their co-occurrences are the signal
        "epochs": 5,
        "seed": 1,
        "workers": 1,  # >1 is faster but not reproducible
        "min_rating": None,  # keep only interactions rated >= this (None: all are positive)
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        self._check()
        #: skip-gram output ("context") vectors, row-aligned with the version's ids: profile . context
        #: is the model's own estimate of which items co-occur with the history ("predict" scoring)
        self.context: np.ndarray | None = None

    def save(self, directory: Path) -> None:
        super().save(directory)
        if self.context is not None:
            np.save(Path(directory) / "context.npy", np.ascontiguousarray(self.context, dtype=np.float32))

    def _load_state(self, directory: Path) -> None:
        path = Path(directory) / "context.npy"
        self.context = np.load(path) if path.exists() else None


class ALSEncoder(BehaviouralEncoder):
    name: ClassVar[str] = "als"
    description: ClassVar[str] = (
        "implicit-feedback ALS matrix factorisation (implicit); item factors (behavioural)"
    )
    defaults: ClassVar[JSONObject] = {
        "factors": 64,
        "regularization": 0.05,
        "alpha": 2.0,
        "iterations": 15,
        "seed": 1,
        "min_rating": None,
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        self._check()


class ItemItemEncoder(BehaviouralEncoder):
    """A behavioural model that is an item x item weight matrix W (rows and columns in the version's
    row order): a user's score for item j is the sum of w_i * W[i, j] over the history items i, with
    w the profile's weights (uniform for mean, decayed for recency). W travels with the encoder
    (dense .npy for EASE, CSR .npz for ItemKNN), like item2vec's context vectors; `chosen` records
    the parameter values picked by validation ("auto") and the validation scores behind them."""

    defaults: ClassVar[JSONObject] = {}

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        self._check()
        if self.params.get("cv") not in ("last", "random"):
            raise EmbedscopeError(
                f"encoder '{self.name}': cv must be 'last' or 'random', not {self.params['cv']!r}"
            )
        self.weights: np.ndarray | sp.csr_matrix | None = None
        self.chosen: JSONObject = {}

    def _auto_or_number(self, key: str, *, minimum: float, integer: bool = False) -> None:
        value = self.params[key]
        if value == "auto":
            return
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum
        if not ok or (integer and int(value) != value):
            kind = "an integer" if integer else "a number"
            raise EmbedscopeError(
                f"encoder '{self.name}': {key} must be 'auto' (chosen by validation) or {kind} "
                f">= {minimum:g}, not {value!r}"
            )

    def save(self, directory: Path) -> None:
        super().save(directory)
        directory = Path(directory)
        if is_sparse(self.weights):
            sp.save_npz(directory / "weights.npz", sp.csr_matrix(self.weights, dtype=np.float32))
        elif self.weights is not None:
            np.save(directory / "weights.npy", np.ascontiguousarray(self.weights, dtype=np.float32))
        (directory / "chosen.json").write_text(json.dumps(self.chosen, indent=2, default=float))

    def _load_state(self, directory: Path) -> None:
        directory = Path(directory)
        if (directory / "weights.npz").exists():
            self.weights = sp.load_npz(directory / "weights.npz").tocsr()
        elif (directory / "weights.npy").exists():
            self.weights = np.load(directory / "weights.npy")
        chosen = directory / "chosen.json"
        self.chosen = json.loads(chosen.read_text()) if chosen.exists() else {}

    def score_history(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(queries, n_rows) scores: `weights` (queries, len(rows)) over the history rows of W."""
        if self.weights is None:
            raise EmbedscopeError(f"{self.name}: the item x item matrix is missing; retrain the version")
        w = np.atleast_2d(np.asarray(weights, dtype=np.float32))
        sub = self.weights[np.asarray(rows, dtype=np.int64)]
        return np.asarray((sub.T @ w.T).T, dtype=np.float32)

    def contributions(self, rows: np.ndarray, column: int) -> np.ndarray:
        """W[rows, column]: how much each history row adds to one item's score."""
        if self.weights is None:
            return np.zeros(len(rows), dtype=np.float32)
        col = self.weights[np.asarray(rows, dtype=np.int64)][:, [column]]
        return np.asarray(col.toarray() if is_sparse(col) else col, dtype=np.float32).ravel()


class EASEEncoder(ItemItemEncoder):
    name: ClassVar[str] = "ease"
    description: ClassVar[str] = (
        "EASE (Steck 2019): closed-form item x item linear model, λ by validation (behavioural)"
    )
    defaults: ClassVar[JSONObject] = {
        "l2": "auto",  # λ; "auto" = the best of L2_GRID on a validation split of the interactions given
        "cv": "last",  # validation split for "auto": each user's last item, or "random" 20% (2 folds)
        "vector_size": 64,  # the version's vectors: B's rows in its top singular directions
        "seed": 1,
        "min_rating": None,
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        self._auto_or_number("l2", minimum=1e-9)


class ItemKNNEncoder(ItemItemEncoder):
    name: ClassVar[str] = "itemknn"
    description: ClassVar[str] = (
        "ItemKNN: shrunk cosine between items' interactions, k neighbours by validation (behavioural)"
    )
    defaults: ClassVar[JSONObject] = {
        "k": "auto",  # neighbours kept per candidate item; "auto" = the best of K_GRID on validation
        "shrink": 0.0,  # cosine = x_i . x_j / (|x_i| |x_j| + shrink): damps pairs seen by few users
        "cv": "last",
        "vector_size": 64,
        "seed": 1,
        "min_rating": None,
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        self._auto_or_number("k", minimum=1, integer=True)
        if not isinstance(self.params["shrink"], int | float) or self.params["shrink"] < 0:
            raise EmbedscopeError(
                f"encoder 'itemknn': shrink must be a number >= 0, not {self.params['shrink']!r}"
            )


#: λ values EASE's l2="auto" may pick (a log grid, ~1.5x apart: λ grows with the data; hundreds
#: on MovieLens 100K/1M, thousands on larger sets), walked from the literature's default 500 (Steck
#: 2019; RecBole's ML-1M search found 500-1000); the same for ItemKNN's k="auto", from 100
L2_GRID = tuple(float(m * 10**e) for e in range(1, 5) for m in (1, 1.5, 2, 3, 5, 7)) + (1e5,)
L2_START = 500.0
K_GRID = tuple(int(m * 10**e) for e in range(0, 4) for m in (1, 1.5, 2, 3, 5, 7) if m * 10**e >= 5)
K_START = 100
#: EASE inverts a dense items x items matrix: beyond this many items it does not fit in memory
EASE_MAX_ITEMS = 20_000


def _positives(inter: Interactions, min_rating: float | None) -> Interactions:

    if min_rating is None:
        return inter
    keep = inter.frame["rating"] >= float(min_rating)
    return _I(inter.frame[keep.to_numpy()])


def train_item2vec(inter: Interactions, params: JSONObject | None = None) -> tuple[list[str], np.ndarray]:
    """(item ids, L2-normalised vectors) for every item in the interactions."""
    ids, vectors, _ = train_item2vec_model(inter, params)
    return ids, vectors


def train_item2vec_model(
    inter: Interactions,
    params: JSONObject | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(item ids, L2-normalised input vectors, raw output/context vectors)."""
    from gensim.models import Word2Vec

    p = Item2VecEncoder(**(params or {})).params
    inter = _positives(inter, p["min_rating"])
    sentences = [s for s in inter.sequences() if s]
    if not sentences:
        raise EmbedscopeError("item2vec: no interactions to learn from")
    model = Word2Vec(
        sentences,
        vector_size=int(p["vector_size"]),
        window=int(p["window"]),
        min_count=int(p["min_count"]),
        sg=1,
        hs=0,
        negative=int(p["negative"]),
        ns_exponent=float(p["ns_exponent"]),
        sample=float(p["sample"]),
        epochs=int(p["epochs"]),
        seed=int(p["seed"]),
        workers=int(p["workers"]),
    )
    ids = list(model.wv.index_to_key)
    return ids, l2_normalize(model.wv.vectors), np.asarray(model.syn1neg, dtype=np.float32)


def fit_als(
    inter: Interactions, params: JSONObject | None = None
) -> tuple[list[str], list[str], AlternatingLeastSquares]:
    """Train ALS; returns (users, items, model) with model.user_factors / model.item_factors rows
    in those orders."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    p = ALSEncoder(**(params or {})).params
    inter = _positives(inter, p["min_rating"])
    users, items = inter.users(), inter.items()
    if not users:
        raise EmbedscopeError("als: no interactions to learn from")
    matrix = inter.matrix(users, items).tocsr()
    matrix.data[:] = 1.0
    # implicit runs its own threads; a multi-threaded BLAS underneath would oversubscribe the cores
    # (implicit checks this when the model is built, so the limit covers construction too)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=int(p["factors"]),
            regularization=float(p["regularization"]),
            alpha=float(p["alpha"]),
            iterations=int(p["iterations"]),
            random_state=int(p["seed"]),
            calculate_training_loss=False,
        )
        model.fit(matrix, show_progress=False)
    return users, items, model


def train_als(inter: Interactions, params: JSONObject | None = None) -> tuple[list[str], np.ndarray]:
    _, items, model = fit_als(inter, params)
    return items, l2_normalize(np.asarray(model.item_factors))


def ease_weights(X: sp.spmatrix, l2: float) -> np.ndarray:
    """EASE's closed form (Steck, WWW 2019) on a users x items 0/1 matrix X:
    P = (XᵀX + λI)⁻¹, B = I - P·diag(1/diag(P)), so B_ij = -P_ij / P_jj and diag(B) = 0.

    Written out with numpy rather than taken from a library: it is these three lines, and the
    libraries that have it (RecBole, Cornac) bring a training framework with them."""
    gram = np.asarray((X.T @ X).toarray() if is_sparse(X) else X.T @ X, dtype=np.float64)
    return _ease_from_gram(gram, l2)


def _ease_from_gram(gram: np.ndarray, l2: float) -> np.ndarray:
    g = gram.copy()
    g[np.diag_indices_from(g)] += float(l2)
    p = np.linalg.inv(g)
    b = p / -np.diag(p)  # column j divided by -P_jj
    np.fill_diagonal(b, 0.0)
    return b


def itemknn_weights(X: sp.spmatrix, k: int, shrink: float = 0.0) -> sp.csr_matrix:
    """Item-based kNN on a users x items 0/1 matrix X: S_ij = x_i·x_j / (|x_i||x_j| + shrink)
    (cosine of the item columns, shrunk towards 0 for pairs few users share; no self-similarity),
    then each candidate item j keeps only its k most similar items i (column j of S), the
    neighbourhood of Sarwar et al. (2001). A user's score for j is the sum of S[i, j] over her items.

    Written with scipy rather than `implicit`'s CosineRecommender: implicit keeps the k neighbours
    of each history item (rows), has no shrinkage, and measured lower on MovieLens 100K (NDCG@10
    0.36 vs 0.40 with k neighbours per candidate, docs/recommend.md); this is ~20 lines and sparse."""
    X = sp.csc_matrix(X, dtype=np.float64)
    gram = (X.T @ X).tocoo()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
    off = gram.row != gram.col
    rows, cols = gram.row[off], gram.col[off]
    sims = gram.data[off] / (norms[rows] * norms[cols] + float(shrink) + 1e-12)
    s = sp.csc_matrix((sims, (rows, cols)), shape=gram.shape)
    s.sort_indices()
    keep = np.ones(len(s.data), dtype=bool)
    for j in range(s.shape[1]):  # per column: drop all but the k largest
        lo, hi = s.indptr[j], s.indptr[j + 1]
        if hi - lo > k:
            drop = np.argpartition(-s.data[lo:hi], k)[k:]
            keep[lo + drop] = False
    s.data[~keep] = 0.0
    s.eliminate_zeros()
    return s.tocsr().astype(np.float32)


def _validation_splits(frame: pd.DataFrame, cv: str, seed: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    from embedscope.recommend.validation import split_last, split_random

    if cv == "last":
        return [split_last(frame)]
    return [split_random(frame, test_ratio=0.2, seed=seed + f) for f in range(2)]


#: a grid value (EASE's l2, ItemKNN's k)
G = TypeVar("G", int, float)


def choose_by_validation(
    inter: Interactions,
    items: list[str],
    fit: Callable[[sp.csr_matrix, G], np.ndarray | sp.csr_matrix],
    grid: Sequence[G],
    start: G,
    *,
    cv: str = "last",
    seed: int = 1,
    metric: str = "NDCG@10",
) -> tuple[G, list[JSONObject]]:
    """The grid value with the best mean `metric` over validation splits of `inter` (its last item
    per user, or two seeded random 20% hold-outs), each model fitted on the rest; and the scores.
    Only `inter` is seen: given an evaluation's training part, the choice never sees its test part.

    The grid (sorted) is walked from `start` (the literature's default) towards the better
    neighbour until neither neighbour scores higher: the curves are single-peaked in practice, and
    three or four fits instead of the whole grid keep EASE's choice within seconds."""
    from embedscope.recommend.validation import binary_matrix, holdout, topk_metrics

    folds = []
    for train, test in _validation_splits(inter.frame, cv, seed):
        folds.append(
            (holdout(train, test, items), binary_matrix(train, list(pd.unique(train["user"])), items))
        )
    seen: dict[int, float] = {}

    def score(i: int) -> float:
        if i not in seen:
            values = []
            for h, X in folds:
                w = fit(X, grid[i])
                s = h.train_matrix @ w
                s = s.toarray() if is_sparse(s) else np.asarray(s)
                values.append(topk_metrics(s, h.train_matrix, h.test_matrix)[metric])
            seen[i] = float(np.mean(values))
        return seen[i]

    i = list(grid).index(start)
    while True:
        near = [j for j in (i - 1, i + 1) if 0 <= j < len(grid)]
        best = max(near, key=score) if near else i
        if not near or score(best) <= score(i):
            break
        i = best
    score(i)
    rows = [{"value": grid[j], metric: round(seen[j], 5)} for j in sorted(seen)]
    return grid[i], rows


@dataclass
class ItemItemModel:
    """A fitted EASE / ItemKNN model: W over `items` and the parameter values actually used."""

    items: list[str]
    weights: np.ndarray | sp.csr_matrix
    chosen: JSONObject = field(default_factory=dict)


def fit_item_item(method: str, inter: Interactions, params: JSONObject | None = None) -> ItemItemModel:
    """Fit EASE or ItemKNN on the interactions (all of them positive, binary), choosing l2 / k by
    validation on these same interactions when they are "auto"."""

    enc = create_behavioural(method, params)
    p = enc.params
    inter = _positives(inter, p["min_rating"])
    users, items = inter.users(), inter.items()
    if len(items) < 2:
        raise EmbedscopeError(f"{method}: needs interactions with at least 2 items")
    X = inter.matrix(users, items).tocsr()
    X.data[:] = 1.0
    chosen: JSONObject = {}
    started = time.perf_counter()
    if method == "ease":
        if len(items) > EASE_MAX_ITEMS:
            raise EmbedscopeError(
                f"ease: {len(items):,} items need a dense {len(items):,}² matrix; it is meant for up to "
                f"{EASE_MAX_ITEMS:,} items: use itemknn or als"
            )
        l2 = p["l2"]
        if l2 == "auto":
            l2, chosen["validation"] = choose_by_validation(
                inter, items, ease_weights, L2_GRID, L2_START, cv=p["cv"], seed=int(p["seed"])
            )
        chosen["validation_seconds"] = round(time.perf_counter() - started, 3)
        t0 = time.perf_counter()
        weights: np.ndarray | sp.csr_matrix = ease_weights(X, float(l2)).astype(np.float32)
        chosen.update(l2=float(l2), fit_seconds=round(time.perf_counter() - t0, 3))
    elif method == "itemknn":
        k = p["k"]
        grid = [g for g in K_GRID if g < len(items)] or [len(items) - 1]
        start_k = K_START if K_START in grid else grid[len(grid) // 2]
        shrink = float(p["shrink"])
        if k == "auto":
            k, chosen["validation"] = choose_by_validation(
                inter,
                items,
                lambda m, g: itemknn_weights(m, g, shrink),
                grid,
                start_k,
                cv=p["cv"],
                seed=int(p["seed"]),
            )
        chosen["validation_seconds"] = round(time.perf_counter() - started, 3)
        t0 = time.perf_counter()
        weights = itemknn_weights(X, int(k), shrink)
        chosen.update(k=int(k), fit_seconds=round(time.perf_counter() - t0, 3))
    else:
        raise EmbedscopeError(f"'{method}' is not an item x item method; valid: {', '.join(ITEM_ITEM)}")
    return ItemItemModel(items, weights, chosen)


def item_item_vectors(weights: np.ndarray | sp.spmatrix, dim: int, seed: int = 1) -> np.ndarray:
    """Item vectors for a version from an item x item matrix W: W's rows in its top `dim` singular
    directions (W·V = U·Σ), L2-normalised, zero-padded to `dim` for catalogues smaller than that.
    The cosine of two vectors approximates that of the two items' rows of W: items that lend
    weight to the same items are close (what `similar`, MMR and interests need)."""
    from sklearn.utils.extmath import randomized_svd

    n = weights.shape[0]
    d = max(1, min(dim, n - 1))
    if n <= 4 * dim:  # small: the exact decomposition is cheap
        dense = weights.toarray() if is_sparse(weights) else np.asarray(weights)
        u, s, _ = np.linalg.svd(dense.astype(np.float64), full_matrices=False)
    else:
        u, s, _ = randomized_svd(weights.astype(np.float64), d, random_state=seed)
    out = np.zeros((n, dim), dtype=np.float32)
    out[:, :d] = (u[:, :d] * s[:d]).astype(np.float32)
    return l2_normalize(out)


def create_behavioural(method: str, params: JSONObject | None = None) -> Encoder:
    """The method's encoder with these parameters (validated): the registry's, so the defaults
    and checks are those of the stored version."""

    if method not in METHODS:
        raise EmbedscopeError(f"unknown behavioural method '{method}'; valid: {', '.join(METHODS)}")
    return create_encoder(method, params)


@dataclass
class Trained:
    """What `train` learnt: item ids and their normalised vectors, plus the model state the
    encoder keeps (item2vec's context vectors, or EASE / ItemKNN's item x item matrix)."""

    ids: list[str]
    vectors: np.ndarray
    context: np.ndarray | None = None
    weights: np.ndarray | sp.csr_matrix | None = None
    chosen: JSONObject = field(default_factory=dict)


def train(method: str, inter: Interactions, params: JSONObject | None = None) -> Trained:
    if method == "item2vec":
        ids, vectors, context = train_item2vec_model(inter, params)
        return Trained(ids, vectors, context=context)
    if method == "als":
        return Trained(*train_als(inter, params))
    if method in ITEM_ITEM:
        p = create_behavioural(method, params).params
        model = fit_item_item(method, inter, p)
        vectors = item_item_vectors(model.weights, int(p["vector_size"]), int(p["seed"]))
        return Trained(model.items, vectors, weights=model.weights, chosen=model.chosen)
    raise EmbedscopeError(f"unknown behavioural method '{method}'; valid: {', '.join(METHODS)}")


def embed_behaviour(
    collection: Collection,
    method: str = "item2vec",
    params: JSONObject | None = None,
    *,
    version: str | None = None,
    index: str = "exact",
    activate: bool = False,
    interactions: Interactions | None = None,
) -> VersionInfo:
    """Train behavioural item vectors from the collection's interactions and store them as the
    embedding version `version` (default: the method name). Items without interactions are left out."""

    if method not in METHODS:
        raise EmbedscopeError(f"unknown behavioural method '{method}'; valid: {', '.join(METHODS)}")
    version = check_name(version or method, "version")
    enc = create_encoder(method, params)  # validates the parameters before any training
    inter = interactions if interactions is not None else _I.of(collection)
    started = time.perf_counter()
    trained = train(method, inter, enc.params)
    train_s = time.perf_counter() - started
    hashes_all = collection.item_hashes()
    keep = [n for n, i in enumerate(trained.ids) if i in hashes_all]  # items deleted since the interactions
    ids = [trained.ids[n] for n in keep]
    vectors = np.ascontiguousarray(trained.vectors[keep], dtype=np.float32)
    if trained.context is not None and isinstance(enc, Item2VecEncoder):
        enc.context = trained.context[keep]
    if trained.weights is not None and isinstance(enc, ItemItemEncoder):
        enc.weights = trained.weights[keep][:, keep]  # rows and columns in the version's row order
        enc.chosen = trained.chosen
    if not ids:
        raise EmbedscopeError(f"{method}: no interacted item is in collection '{collection.name}'")
    hashes = [hashes_all[i] for i in ids]
    info = collection.add_version(
        version,
        enc,
        VersionData(ids, hashes, vectors),
        index=index,
        # fingerprint of the whole collection: the version reflects all items as they were when it was
        # trained (items without interactions are left out on purpose, not because it is stale)
        content=fingerprint(hashes_all.items()),
        stats={
            "trained_on_interactions": len(inter),
            "items_without_interactions": len(hashes_all) - len(ids),
            "encode_seconds": round(train_s, 3),
            **{f"chosen_{k}": v for k, v in trained.chosen.items() if k in ("l2", "k")},
            "vector_bytes": int(vectors.nbytes),
        },
    )
    if activate:
        collection.activate(version)
        info = collection.version_info(version)
    return info
