"""Fusion: several retrievers' candidate lists for one query -> one ranking.

Methods are looked up by name in `FUSIONS` (a search recipe names one), never chosen by if-chains at
call sites. Each takes the runs, one weight per run, and its own parameters:

- `rrf`: reciprocal rank fusion (Cormack et al., 2009), score = sum of w / (k + rank). Scale-free,
  so BM25 scores and cosines mix without calibration; k = 60 is the paper's default.
- `max`: CombMAX (Fox and Shaw, 1994), score = max of w * norm(s); the pieces of a long query
  (`search.query`'s split stage) use it, so that the one sentence naming the book can decide.
- `convex`: a convex combination of normalised scores, score = sum of w * norm(s) (Bruch et al.,
  2023, "An Analysis of Fusion Functions for Hybrid Retrieval"). Normalisations (`NORMALIZERS`):
  `minmax` (observed min and max of the run), `zscore` (mean and standard deviation of the run),
  `tmm` (theoretical min-max: the lowest score the retriever can give, and the observed max).

Theoretical minimum (`score_floor`): 0 for sparse count-based runs (BM25, TF-IDF: weights are never
negative) and -1 for cosine. We do not assume non-negative embeddings: MiniLM's are not, and for
the ones that are (LDA topics) -1 is still a true lower bound, only a looser one. Other metrics
(unnormalised inner products) have no bound, so `tmm` falls back to the observed minimum there.

A document missing from one run (below that retriever's candidate depth) gets, with `convex`, the
normalised score of that run's last candidate (`missing="cutoff"`): its true score is at most that
(for an exact index), the tightest bound the list itself gives; `missing="zero"` gives it 0 instead.
`missing="score"` uses its true score when the run carries it (`Run.others`: the search pipeline
scores the other runs' candidates against the part's stored vectors), normalised with the run's own
statistics, so that a document one retriever found and the other rates far below its cutoff (a word
match with nothing of the query's meaning) is not credited the cutoff; where the run has no such
score (a long query's pieces fused into it) it falls back to the cutoff. Runs with weight 0 are
left out altogether, so their candidates do not join the union either.

Sums use math.fsum (exactly rounded), so the result does not depend on the order of the runs;
ties are broken by id, so it does not depend on the order within a run either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONMapping, JSONObject
from embedscope.search.base import OptionSpec, check_options, one_of, positive_int


@dataclass(frozen=True)
class Run:
    """One retriever's candidates for one query, best first."""

    ids: list[str]
    scores: np.ndarray
    #: the lowest score this retriever can give (see the module docstring); None = unbounded
    floor: float | None = None
    #: this retriever's true scores of other runs' candidates it did not return (`missing="score"`)
    others: Mapping[str, float] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def score_floor(sparse: bool, metric: str) -> float | None:
    """The theoretical minimum score of a version's runs (used by the `tmm` normalisation)."""
    if sparse:
        return 0.0
    return -1.0 if metric == "cosine" else None


# --- normalisations ---------------------------------------------------------------------------------
# Each maps `at` (default: the run's own scores) with the statistics of the run's `scores`, so that a
# true score of a document outside the run (`Run.others`) lands on the run's scale.
def minmax(scores: np.ndarray, floor: float | None = None, at: np.ndarray | None = None) -> np.ndarray:
    """(s - min) / (max - min) over the run; a run of equal scores is all 1 (every one is the best)."""
    x = scores if at is None else at
    lo, hi = float(scores.min()), float(scores.max())
    return (x >= hi).astype(np.float64) if hi == lo else (x - lo) / (hi - lo)


def zscore(scores: np.ndarray, floor: float | None = None, at: np.ndarray | None = None) -> np.ndarray:
    """(s - mean) / standard deviation over the run; a run of equal scores is all 0."""
    x = scores if at is None else at
    std = float(scores.std())
    return np.zeros_like(x) if std == 0 else (x - scores.mean()) / std


def theoretical_minmax(
    scores: np.ndarray, floor: float | None = None, at: np.ndarray | None = None
) -> np.ndarray:
    """(s - floor) / (max - floor): the run's own minimum depends on how deep it was cut, the
    retriever's floor does not (Bruch et al. 2023). Without a floor, this is `minmax`."""
    if floor is None:
        return minmax(scores, at=at)
    x = scores if at is None else at
    hi = float(scores.max())
    return (x >= hi).astype(np.float64) if hi <= floor else (x - floor) / (hi - floor)


class Normalizer(Protocol):
    """A normalisation: `at` (default: the run's own scores) on the scale of the run's `scores`."""

    def __call__(
        self, scores: np.ndarray, floor: float | None = None, at: np.ndarray | None = None
    ) -> np.ndarray: ...


NORMALIZERS: dict[str, Normalizer] = {
    "minmax": minmax,
    "zscore": zscore,
    "tmm": theoretical_minmax,
}


# --- fusion methods ---------------------------------------------------------------------------------
def _ranked(totals: Mapping[str, list[float]]) -> tuple[list[str], np.ndarray]:
    fused = sorted(((math.fsum(parts), doc) for doc, parts in totals.items()), key=lambda t: (-t[0], t[1]))
    return [d for _, d in fused], np.array([s for s, _ in fused], dtype=np.float64)


def rrf(runs: Sequence[Run], weights: Sequence[float], *, k: int = 60) -> tuple[list[str], np.ndarray]:
    """Weighted reciprocal rank fusion: sum over runs of w / (k + rank), ranks from 1."""
    totals: dict[str, list[float]] = {}
    for run, w in zip(runs, weights, strict=True):
        if w == 0:
            continue
        for rank, doc in enumerate(run.ids, start=1):
            totals.setdefault(doc, []).append(w / (k + rank))
    return _ranked(totals)


def convex(
    runs: Sequence[Run],
    weights: Sequence[float],
    *,
    normalization: str = "zscore",
    missing: str = "cutoff",
) -> tuple[list[str], np.ndarray]:
    """Convex combination of normalised scores (see the module docstring for `missing`)."""
    active = [(run, w) for run, w in zip(runs, weights, strict=True) if w != 0 and len(run)]
    union = list(dict.fromkeys(doc for run, _ in active for doc in run.ids))
    totals: dict[str, list[float]] = {doc: [] for doc in union}
    for run, w in active:
        mine, default = _normalised(run, normalization, missing)
        for doc in union:
            totals[doc].append(w * mine.get(doc, default))
    return _ranked(totals)


def _normalised(run: Run, normalization: str, missing: str) -> tuple[dict[str, float], float]:
    """A run's normalised scores by id (with `missing="score"`, its `others` too), and what a
    document it has no score for gets (see the module docstring)."""
    norm = NORMALIZERS[normalization]
    scores = np.asarray(run.scores, dtype=np.float64)
    values = norm(scores, run.floor)
    mine = dict(zip(run.ids, values.tolist(), strict=True))
    if missing == "score" and run.others:
        extra = norm(scores, run.floor, np.fromiter(run.others.values(), np.float64, len(run.others)))
        mine.update((doc, v) for doc, v in zip(run.others, extra.tolist(), strict=True) if doc not in mine)
    return mine, (0.0 if missing == "zero" else float(values[-1]))


def combmax(
    runs: Sequence[Run],
    weights: Sequence[float],
    *,
    normalization: str = "zscore",
    missing: str = "cutoff",
) -> tuple[list[str], np.ndarray]:
    """CombMAX (Fox and Shaw, 1994): each document's best weighted normalised score over the runs; a
    document missing from a run gets that run's cutoff (or 0), as in `convex`. What a long query split
    into pieces uses to let the one piece that names the book decide."""
    active = [(run, w) for run, w in zip(runs, weights, strict=True) if w != 0 and len(run)]
    scored = [(_normalised(run, normalization, missing), w) for run, w in active]
    union = list(dict.fromkeys(doc for run, _ in active for doc in run.ids))
    if missing == "score":  # each run's true score of the document where it has one, else its cutoff
        return _ranked({doc: [max(w * mine.get(doc, low) for (mine, low), w in scored)] for doc in union})
    # a document found by one run only still had the other runs' cutoff as a lower bound of its max
    floor = max(w * low for (_, low), w in scored) if scored else -math.inf
    return _ranked(
        {doc: [max(floor, *(w * mine[doc] for (mine, _), w in scored if doc in mine))] for doc in union}
    )


@dataclass(frozen=True)
class FusionMethod:
    fuse: Callable[..., tuple[list[str], np.ndarray]]
    #: parameter name -> (default, check that returns an error message or None)
    params: OptionSpec = field(default_factory=dict)
    description: str = ""

    def check(self, params: JSONMapping) -> JSONObject:
        """The full parameter set (defaults filled in); an EmbedscopeError for unknown or bad ones."""
        return check_options("fusion", self.params, params)


FUSIONS: dict[str, FusionMethod] = {
    "rrf": FusionMethod(rrf, {"k": (60, positive_int)}, "reciprocal rank fusion: sum of w / (k + rank)"),
    "convex": FusionMethod(
        convex,
        {
            # z-score: the best measured on SciFact and the books vibe set (docs/evaluation.md)
            "normalization": ("zscore", one_of(list(NORMALIZERS))),
            "missing": ("cutoff", one_of(["cutoff", "zero", "score"])),
        },
        "convex combination of normalised scores: sum of w * norm(score)",
    ),
    "max": FusionMethod(
        combmax,
        {
            "normalization": ("zscore", one_of(list(NORMALIZERS))),
            "missing": ("cutoff", one_of(["cutoff", "zero", "score"])),
        },
        "CombMAX: the best weighted normalised score over the runs",
    ),
}


def fusion_method(name: str) -> FusionMethod:
    method = FUSIONS.get(name)
    if method is None:
        raise EmbedscopeError(f"unknown fusion '{name}'; valid: {', '.join(FUSIONS)}")
    return method


def fuse(
    runs: Sequence[Run], weights: Sequence[float], method: str, params: JSONMapping
) -> tuple[list[str], np.ndarray]:
    """Fuse runs with the named method: (ids, scores), best first."""
    if len(runs) != len(weights):
        raise EmbedscopeError(f"{len(weights)} weights for {len(runs)} runs")
    m = fusion_method(method)
    return m.fuse(runs, weights, **m.check(params))
