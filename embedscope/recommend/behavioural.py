"""Item embeddings learned from behaviour instead of text, stored as ordinary embedding versions.

- item2vec (Barkan & Koenigstein, 2016): gensim Word2Vec, skip-gram with negative sampling, over
  each user's time-ordered history as a "sentence"; items used by the same people get close vectors.
- als: implicit-feedback matrix factorisation (Hu, Koren & Volinsky, 2008) with the `implicit`
  library's ALS; the item factors are the item vectors.

`embed_behaviour(collection, "item2vec" | "als")` trains on the collection's stored interactions
and writes a version through the store's `write_version`, so `search_vectors`, `similar` and
`recommend` work on it like on any text version. Vectors are L2-normalised (cosine metric).
Items with no interactions are EXCLUDED from the version (they have no behavioural position; a
zero vector would tie with everything): `similar` on such an item raises a clear error, and they
never appear as behavioural candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from embedscope.encoders.base import Encoder, l2_normalize
from embedscope.errors import EmbedscopeError

if TYPE_CHECKING:
    from embedscope.collection import Collection
    from embedscope.recommend.interactions import Interactions
    from embedscope.store.base import VersionInfo

METHODS = ("item2vec", "als")


class BehaviouralEncoder(Encoder):
    """The stored "encoder" of a behavioural version: it records how the vectors were trained
    (config + params, so the version is reproducible) but cannot turn text into a vector."""

    requires_fit: ClassVar[bool] = False
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
        return int(self.params.get("vector_size") or self.params.get("factors"))

    def _check(self) -> None:
        for key in ("vector_size", "factors", "window", "epochs", "iterations", "min_count"):
            if key in self.params and int(self.params[key]) < 1:
                raise EmbedscopeError(f"encoder '{self.name}': {key} must be >= 1")


class Item2VecEncoder(BehaviouralEncoder):
    name: ClassVar[str] = "item2vec"
    description: ClassVar[str] = (
        "item2vec: skip-gram word2vec (gensim) over users' time-ordered histories (behavioural)"
    )
    defaults: ClassVar[dict[str, Any]] = {
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

    def __init__(self, **params: Any) -> None:
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
    defaults: ClassVar[dict[str, Any]] = {
        "factors": 64,
        "regularization": 0.05,
        "alpha": 2.0,
        "iterations": 15,
        "seed": 1,
        "min_rating": None,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._check()


def _positives(inter: Interactions, min_rating: float | None) -> Interactions:
    from embedscope.recommend.interactions import Interactions as _I

    if min_rating is None:
        return inter
    keep = inter.frame["rating"] >= float(min_rating)
    return _I(inter.frame[keep.to_numpy()])


def train_item2vec(inter: Interactions, params: dict[str, Any] | None = None) -> tuple[list[str], np.ndarray]:
    """(item ids, L2-normalised vectors) for every item in the interactions."""
    ids, vectors, _ = train_item2vec_model(inter, params)
    return ids, vectors


def train_item2vec_model(
    inter: Interactions,
    params: dict[str, Any] | None = None,
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


def fit_als(inter: Interactions, params: dict[str, Any] | None = None) -> tuple[list[str], list[str], Any]:
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


def train_als(inter: Interactions, params: dict[str, Any] | None = None) -> tuple[list[str], np.ndarray]:
    _, items, model = fit_als(inter, params)
    return items, l2_normalize(np.asarray(model.item_factors))


def train(
    method: str,
    inter: Interactions,
    params: dict[str, Any] | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(ids, normalised item vectors, item2vec context vectors or None)."""
    if method == "item2vec":
        return train_item2vec_model(inter, params)
    if method == "als":
        return (*train_als(inter, params), None)
    raise EmbedscopeError(f"unknown behavioural method '{method}'; valid: {', '.join(METHODS)}")


def embed_behaviour(
    collection: Collection,
    method: str = "item2vec",
    params: dict[str, Any] | None = None,
    *,
    version: str | None = None,
    index: str = "exact",
    activate: bool = False,
    interactions: Interactions | None = None,
) -> VersionInfo:
    """Train behavioural item vectors from the collection's interactions and store them as the
    embedding version `version` (default: the method name). Items without interactions are left out."""
    import time

    from embedscope.encoders.registry import create_encoder
    from embedscope.names import check_name
    from embedscope.recommend.interactions import Interactions as _I
    from embedscope.store.base import VersionData, VersionInfo, fingerprint
    from embedscope.store.embedded import now

    if method not in METHODS:
        raise EmbedscopeError(f"unknown behavioural method '{method}'; valid: {', '.join(METHODS)}")
    version = check_name(version or method, "version")
    enc = create_encoder(method, params)  # validates the parameters before any training
    inter = interactions if interactions is not None else _I.of(collection)
    started = time.perf_counter()
    ids, vectors, context = train(method, inter, enc.params)
    train_s = time.perf_counter() - started
    hashes_all = collection.store.item_hashes()
    keep = [n for n, i in enumerate(ids) if i in hashes_all]  # items deleted since the interactions
    ids = [ids[n] for n in keep]
    vectors = np.ascontiguousarray(vectors[keep], dtype=np.float32)
    if context is not None and isinstance(enc, Item2VecEncoder):
        enc.context = context[keep]
    if not ids:
        raise EmbedscopeError(f"{method}: no interacted item is in collection '{collection.name}'")
    hashes = [hashes_all[i] for i in ids]
    idx = collection.store.new_index(index, {})
    idx.build(vectors)
    stamp = now()
    old = {v.name: v for v in collection.versions()}.get(version)
    info = VersionInfo(
        name=version,
        encoder=enc.config(),
        dim=int(vectors.shape[1]),
        count=len(ids),
        # fingerprint of the whole collection: the version reflects all items as they were when it was
        # trained (items without interactions are left out on purpose, not because it is stale)
        fingerprint=fingerprint(hashes_all.items()),
        index={"kind": index, "params": idx.params},
        sparse=False,
        metric="cosine",
        created_at=old.created_at if old else stamp,
        updated_at=stamp,
        stats={
            "trained_on_interactions": len(inter),
            "items_without_interactions": len(hashes_all) - len(ids),
            "encode_seconds": round(train_s, 3),
            "vector_bytes": int(vectors.nbytes),
            "index_bytes": int(idx.nbytes()),
        },
    )
    collection.store.write_version(
        info, VersionData(ids, hashes, vectors), enc, None if index == "exact" else idx
    )
    if activate:
        collection.activate(version)
    return {v.name: v for v in collection.versions()}[version]
