"""Random 80/20 evaluation of recommenders: the protocol of the published MovieLens 100K tables
(Recommenders.jl: MostPop 0.220, ItemKNN 0.399, MF 0.440, SLIM 0.436 NDCG@10).

A seeded random 20% of all interactions is the test part, every user with a test item is ranked
over the full catalogue minus her training items, and NDCG@10 / Recall@10 / Precision@10 / HR@10 /
MRR / MAP@10 are averaged over users (`embedscope.recommend.validation.topk_metrics`). The scorers
are the leave-last-out ones of `embedscope.evaluate.recs`, fitted on the training part only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from embedscope.errors import EmbedscopeError
from embedscope.evaluate.recs import (
    ProgressFn,
    fit_item_item_on,
    item_matrix,
    random_split,
    score_als_users,
    score_item_item,
    score_popularity,
    score_profile,
)
from embedscope.jsontypes import JSONObject
from embedscope.recommend.behavioural import train_item2vec_model
from embedscope.recommend.validation import topk_metrics


# --- random 80/20 (the published MovieLens tables' protocol) ----------------------------------------
@dataclass
class RandomSplitReport:
    """Per method: metrics averaged over seeds (mean and std), fit seconds, parameters chosen."""

    collection: str
    interactions: int
    users: int
    items: int
    test_ratio: float
    seeds: list[int]
    k: int
    protocol: str
    results: list[JSONObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> JSONObject:
        return asdict(self)


RANDOM_METHODS = ("popularity", "itemknn", "als", "item2vec", "ease")


def evaluate_random_split(
    frame: pd.DataFrame,
    catalogue: Sequence[str],
    *,
    collection: str = "",
    seeds: Sequence[int] = (0,),
    test_ratio: float = 0.2,
    k: int = 10,
    methods: Sequence[str] = RANDOM_METHODS,
    params: dict[str, JSONObject] | None = None,
    progress: ProgressFn | None = None,
) -> RandomSplitReport:
    """MostPop, ItemKNN, ALS (user x item factors, i.e. MF), item2vec (predict scoring, mean
    profile) and EASE on seeded random `test_ratio` hold-outs of all interactions, each one fitted
    on the training part only; EASE's λ and ItemKNN's k by validation on two random 20% hold-outs
    of that training part (`cv="random"`), unless `params` fixes them."""

    say = progress or (lambda _msg: None)
    unknown = sorted(set(methods) - set(RANDOM_METHODS))
    if unknown:
        raise EmbedscopeError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(RANDOM_METHODS)}")
    params = {m: dict((params or {}).get(m) or {}) for m in RANDOM_METHODS}
    for m in ("ease", "itemknn"):
        params[m].setdefault("cv", "random")
    in_catalogue = frame[frame["item"].isin(set(catalogue))]
    report = RandomSplitReport(
        collection,
        len(in_catalogue),
        int(in_catalogue["user"].nunique()),
        len(catalogue),
        test_ratio,
        list(seeds),
        k,
        f"random {1 - test_ratio:.0%}/{test_ratio:.0%} of all interactions (seeded), every interaction "
        "a positive; users with a test interaction ranked over all items minus their training items",
    )
    runs: dict[str, list[JSONObject]] = {m: [] for m in methods}
    for seed in seeds:
        split = random_split(frame, catalogue, test_ratio=test_ratio, seed=seed)
        for m in methods:
            say(f"seed {seed}: {m}")
            t0, c0 = time.perf_counter(), time.process_time()
            chosen: JSONObject = {}
            if m == "popularity":
                scores = score_popularity(split)
            elif m == "als":
                scores = score_als_users(split, params["als"])
            elif m == "item2vec":
                ids, vecs, ctx = train_item2vec_model(split.train, params["item2vec"])
                scores = score_profile(
                    split,
                    item_matrix(split, ids, vecs),
                    "mean",
                    context=item_matrix(split, ids, ctx, normalise=False),
                )
            else:
                model = fit_item_item_on(split, m, params[m])
                scores = score_item_item(split, model)
                chosen = {key: v for key, v in model.chosen.items() if key != "validation"}
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            metrics = topk_metrics(scores, split.train_matrix, split.test_matrix, k)
            runs[m].append({"seed": seed, **metrics, "seconds": wall, "cpu_seconds": cpu, **chosen})
    for m in methods:
        rows = runs[m]
        names = [key for key in rows[0] if key not in ("seed",) and isinstance(rows[0][key], int | float)]
        report.results.append(
            {
                "method": m,
                "mean": {key: round(float(np.mean([r[key] for r in rows])), 4) for key in names},
                "std": {key: round(float(np.std([r[key] for r in rows])), 4) for key in names},
                "runs": rows,
            }
        )
    report.notes.append(
        "seconds = fitting + scoring every user, wall clock (cpu_seconds: process CPU time); for EASE "
        "and ItemKNN they include the validation that picks λ / k"
    )
    return report
