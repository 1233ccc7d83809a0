"""What an experiment's log says: the winner, per-side credit or click-through rate, a significance
test, and the cumulative preference over time as a PNG.

- Interleaving: each impression is won by the side credited with more clicks, or tied (equal credit,
  no clicks included). Ties say nothing about which side is better, so the test is the two-sided
  sign test over impressions with a winner: scipy.stats.binomtest(wins B, wins A + wins B, 0.5).
- A/B: click-through rate per side = impressions with at least one click / impressions. Test: the
  two-sided two-proportion z-test with the pooled rate (written out: it is one formula, and
  statsmodels, which has it, would bring six packages for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import numpy.typing as npt

from embedscope.experiments.eventlog import read_events, segments
from embedscope.experiments.experiment import Experiment, Experiments
from embedscope.experiments.interleave import Side, credit, winner
from embedscope.jsontypes import JSONObject

ALPHA = 0.05


@dataclass
class ImpressionResult:
    ts: str
    side: Side | None  # A/B: the user's bucket; interleaving: None
    credit_a: int  # clicks on results credited to A
    credit_b: int

    @property
    def clicked(self) -> bool:
        return self.credit_a + self.credit_b > 0


def impression_results(records: Iterable[JSONObject]) -> tuple[list[ImpressionResult], int]:
    """Join clicks onto their impressions, in time order; also returns the clicks whose impression
    is not in the log (their impression line was torn by a crash)."""
    impressions: dict[str, JSONObject] = {}
    clicked: dict[str, set[int]] = {}
    orphans = 0
    for r in records:
        if r.get("type") == "impression" and isinstance(r.get("teams"), list):
            impressions[str(r.get("id"))] = r
        elif r.get("type") == "click" and isinstance(r.get("position"), int):
            clicked.setdefault(str(r.get("impression")), set()).add(r["position"])
    for imp_id in clicked:
        if imp_id not in impressions:
            orphans += 1
    out = []
    for imp_id, r in impressions.items():
        ca, cb = credit(r["teams"], clicked.get(imp_id, ()))
        out.append(ImpressionResult(str(r.get("ts", "")), r.get("side"), ca, cb))
    out.sort(key=lambda x: x.ts)
    return out, orphans


@overload
def sign_test(wins_a: int, wins_b: int) -> float: ...
@overload
def sign_test(wins_a: npt.NDArray[np.integer], wins_b: npt.NDArray[np.integer]) -> np.ndarray: ...
def sign_test(wins_a: npt.ArrayLike, wins_b: npt.ArrayLike) -> float | np.ndarray:
    """Two-sided p-value that A and B win equally often; 1.0 when nothing was decided.

    Equal to scipy.stats.binomtest(wins_b, wins_a + wins_b, 0.5).pvalue (tests check it): under
    p = 0.5 the binomial is symmetric, so the two-sided p is 2 P(X <= min(k, n - k)), capped at 1.
    Written with binom.cdf so that it also takes arrays: a simulation tests thousands of runs at once."""
    from scipy.stats import binom

    a, b = np.asarray(wins_a), np.asarray(wins_b)
    n = a + b
    p = np.minimum(1.0, 2 * binom.cdf(np.minimum(a, b), n, 0.5))
    p = np.where(n == 0, 1.0, p)
    return float(p) if p.ndim == 0 else p


@overload
def two_proportion_test(clicked_a: int, n_a: int, clicked_b: int, n_b: int) -> tuple[float, float]: ...
@overload
def two_proportion_test(
    clicked_a: np.ndarray, n_a: np.ndarray, clicked_b: np.ndarray, n_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]: ...
def two_proportion_test(
    clicked_a: npt.ArrayLike, n_a: npt.ArrayLike, clicked_b: npt.ArrayLike, n_b: npt.ArrayLike
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """(z, two-sided p) that the click-through rates are equal; z > 0 when B's is higher. (0, 1)
    where the rates cannot differ (a side without impressions, or no variation). Takes arrays too."""
    from scipy.stats import norm

    ca, na, cb, nb = (np.asarray(v, dtype=float) for v in (clicked_a, n_a, clicked_b, n_b))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (ca + cb) / (na + nb)
        se = np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
        z = np.where((na > 0) & (nb > 0) & (se > 0), (cb / nb - ca / na) / se, 0.0)
    p = 2 * norm.sf(np.abs(z))
    return (float(z), float(p)) if z.ndim == 0 else (z, p)


def summarise(exp: Experiment, results: Sequence[ImpressionResult], *, alpha: float = ALPHA) -> JSONObject:
    out: JSONObject = {**exp.to_dict(), "impressions": len(results), "alpha": alpha}
    out["clicked_impressions"] = sum(r.clicked for r in results)
    label = {"a": f"A ({exp.a})", "b": f"B ({exp.b})"}
    if exp.method == "interleave":
        outcomes = [winner(r.credit_a, r.credit_b) for r in results]
        wins = {s: outcomes.count(s) for s in ("a", "b", "tie")}
        p = sign_test(wins["a"], wins["b"])
        decided = wins["a"] + wins["b"]
        out.update(
            clicks={"a": sum(r.credit_a for r in results), "b": sum(r.credit_b for r in results)},
            wins={"a": wins["a"], "b": wins["b"], "ties": wins["tie"]},
            # Chapelle et al.'s preference, centred: (wins B - wins A) / impressions, in [-1, 1]
            preference_b=round((wins["b"] - wins["a"]) / len(results), 4) if results else 0.0,
            b_share_of_decided=round(wins["b"] / decided, 4) if decided else None,
            test={"name": "two-sided sign test over impressions with a winner (binomial, p=0.5)", "p": p},
        )
        best = None if wins["a"] == wins["b"] else ("b" if wins["b"] > wins["a"] else "a")
        evidence = f"{wins['a']} vs {wins['b']} impressions won, {wins['tie']} tied"
    else:
        sides: dict[str, JSONObject] = {}
        for s in ("a", "b"):
            mine = [r for r in results if r.side == s]
            clicked = sum(r.clicked for r in mine)
            sides[s] = {
                "impressions": len(mine),
                "clicked_impressions": clicked,
                "clicks": sum(r.credit_a + r.credit_b for r in mine),
                "ctr": round(clicked / len(mine), 4) if mine else None,
            }
        z, p = two_proportion_test(
            sides["a"]["clicked_impressions"],
            sides["a"]["impressions"],
            sides["b"]["clicked_impressions"],
            sides["b"]["impressions"],
        )
        out.update(
            sides=sides,
            test={"name": "two-sided two-proportion z-test on click-through rate", "z": round(z, 4), "p": p},
        )
        best = None if z == 0 else ("b" if z > 0 else "a")
        evidence = f"CTR {sides['a']['ctr']} vs {sides['b']['ctr']}"
    significant = best is not None and p < alpha
    out["winner"] = best if significant else None
    if significant and best is not None:
        out["verdict"] = f"{label[best]} wins: {evidence}, p = {p:.3g} after {len(results)} impressions"
    else:
        out["verdict"] = (
            f"no significant difference yet: {evidence}, p = {p:.3g} after {len(results)} impressions"
        )
    return out


def report(
    experiments: Experiments, name: str | None = None, *, alpha: float = ALPHA, plot: str | Path | None = None
) -> JSONObject:
    """The report of one experiment (default: the running one, else the latest), read from its log;
    with `plot`, also the cumulative preference as a PNG at that path."""
    exp = experiments.get(name)
    read = read_events(experiments.events_path(exp.name))
    results, orphans = impression_results(read.records)
    out = summarise(exp, results, alpha=alpha)
    clicks = [(str(r.get("impression")), r.get("position")) for r in read.records if r.get("type") == "click"]
    out["log"] = {
        "path": str(experiments.events_path(exp.name)),
        "segments": len(segments(experiments.events_path(exp.name))),
        "skipped_lines": read.skipped,
        "clicks_without_impression": orphans,
        # what is stored, beside what is counted: a click is written once per position of a list
        # (older logs, or two servers sharing one, may hold repeats, which count once)
        "impressions_logged": sum(1 for r in read.records if r.get("type") == "impression"),
        "clicks_logged": len(clicks),
        "duplicate_clicks": len(clicks) - len(set(clicks)),
    }
    if plot is not None:
        out["plot"] = str(plot_preference(exp, results, plot))
    return out


def plot_preference(exp: Experiment, results: Sequence[ImpressionResult], path: str | Path) -> Path:
    """Interleaving: cumulative (wins B - wins A) / impressions; A/B: cumulative CTR per side."""

    from embedscope.plots import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(1, len(results) + 1)
    if exp.method == "interleave":
        step = np.array([{"a": -1, "b": 1, "tie": 0}[winner(r.credit_a, r.credit_b)] for r in results])
        ax.plot(x, np.cumsum(step) / x, label=f"preference for B ({exp.b}) over A ({exp.a})")
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("(wins B - wins A) / impressions")
    else:
        for s, config in (("a", exp.a), ("b", exp.b)):
            mine = np.array([r.side == s for r in results], dtype=float)
            hit = np.array([r.side == s and r.clicked for r in results], dtype=float)
            seen = np.cumsum(mine)
            with np.errstate(invalid="ignore", divide="ignore"):
                ax.plot(x, np.where(seen > 0, np.cumsum(hit) / seen, np.nan), label=f"{s.upper()} ({config})")
        ax.set_ylabel("click-through rate so far")
    span = f"{results[0].ts[:16]} to {results[-1].ts[:16]}" if results else "no impressions yet"
    ax.set_xlabel("impressions, in time order")
    ax.set_title(f"{exp.name} ({exp.method}): {span}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path, 110)
