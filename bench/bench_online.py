"""How many impressions do interleaving and A/B need to pick the better of two rankers?

    python bench/bench_online.py [--data ../shared/data/beir/scifact] [--runs DIR] [--trials 1000]

Simulated users (the cascade click model, embedscope/experiments/clickmodel.py) search SciFact's
300 test queries; a document is relevant when the qrels say so. Two rankers with a known nDCG@10
gap come from the project's evaluation harness (`evaluate_beir`, corpus vectors cached in
$EMBEDSCOPE_HOME/beir-scifact; or TREC runs from `embedscope evaluate` with --runs DIR).

1. Pool: per query, `--pool` impressions per method: team-draft interleavings of the two top-10
   lists (embedscope.experiments.team_draft) with clicks credited to their team; and the A and B
   lists shown alone, recording whether anything was clicked.
2. A simulated experiment of n impressions draws n (query, impression) pairs from the pool with
   replacement, queries uniformly: its counts are multinomial with the pool's frequencies, so each
   run is one multinomial draw. A/B users fall into either side with probability 1/2 (a hash of the
   user id; one query per user). Interleaving: sign test over impressions with a winner; A/B:
   two-proportion z-test on click-through rate; both the functions `experiment report` uses.
3. A run succeeds when p < 0.05 and the side with the higher nDCG@10 wins. Reported: the success
   rate per n (16 to 2^20 in steps of sqrt 2) and the smallest n reaching 90%.
4. End to end: one experiment of the interleaving's needed size through `Experiments` (rankers,
   event log, click log, report), to show the real path agrees.

Seeded and reproducible; about a minute on the 2-core machine once the corpus vectors are cached.
Writes bench/results/online.json and bench/results/online.png.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "beir" / "scifact"
PAIRS = ("static:minilm", "minilm:hybrid", "bm25:hybrid")  # A:B; the gaps are large, medium, small
MODELS = ("navigational", "informational")
DEPTH = 10  # results shown per impression
ALPHA, TARGET = 0.05, 0.9
SIZES = sorted({round(2 ** (i / 2)) for i in range(8, 41)})  # 16 .. 1,048,576 impressions, steps of sqrt(2)


def load_runs(
    data: Path, runs_dir: Path | None, encoders: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    from embedscope.evaluate.ir import evaluate_beir, read_trec_run

    if runs_dir is not None:
        return {e: read_trec_run(runs_dir / f"{e}.trec") for e in encoders}
    report = evaluate_beir(data, encoders)  # the harness's depth (100): hybrid fuses its parts' top 100
    return {r.encoder: r.run for r in report.results}


def top(run: dict[str, float]) -> list[str]:
    return [d for d, _ in sorted(run.items(), key=lambda kv: -kv[1])[:DEPTH]]


def build_pool(
    lists_a: list[list[str]], lists_b: list[list[str]], relevant: list[set[str]], pool: int, seed: int
) -> dict[str, np.ndarray]:
    """Per query and impression: relevance and team of each shown position (interleaving) and the
    relevance of A's and B's own lists (A/B). Clicks are drawn later, per click model."""
    from embedscope.experiments import team_draft

    coin = random.Random(seed)
    q = len(lists_a)
    inter_rel = np.zeros((q, pool, DEPTH), dtype=bool)
    inter_b = np.zeros((q, pool, DEPTH), dtype=bool)  # position credited to B
    for i, (a, b) in enumerate(zip(lists_a, lists_b, strict=True)):
        for j in range(pool):
            merged = team_draft(a, b, DEPTH, coin)
            inter_rel[i, j, : len(merged.results)] = [d in relevant[i] for d in merged.results]
            inter_b[i, j, : len(merged.teams)] = [t == "b" for t in merged.teams]

    def own(lists: list[list[str]]) -> np.ndarray:
        rel = np.zeros((q, DEPTH), dtype=bool)
        for i, docs in enumerate(lists):
            rel[i, : len(docs)] = [d in relevant[i] for d in docs]
        return np.repeat(rel[:, None, :], pool, axis=1)

    return {"inter_rel": inter_rel, "inter_b": inter_b, "rel_a": own(lists_a), "rel_b": own(lists_b)}


def outcome_rates(pool: dict[str, np.ndarray], model: Any, rng: np.random.Generator) -> dict[str, float]:
    """Pool frequencies: interleaving P(A wins), P(B wins), P(tie); A/B click-through per side."""
    clicks = model.clicks(pool["inter_rel"].reshape(-1, DEPTH), rng)
    team_b = pool["inter_b"].reshape(-1, DEPTH)
    credit_b = (clicks & team_b).sum(1)
    credit_a = (clicks & ~team_b).sum(1)
    return {
        "p_a_wins": float((credit_a > credit_b).mean()),
        "p_b_wins": float((credit_b > credit_a).mean()),
        "p_tie": float((credit_a == credit_b).mean()),
        "ctr_a": float(model.clicks(pool["rel_a"].reshape(-1, DEPTH), rng).any(1).mean()),
        "ctr_b": float(model.clicks(pool["rel_b"].reshape(-1, DEPTH), rng).any(1).mean()),
    }


def power_curves(rates: dict[str, float], b_better: bool, trials: int, rng: np.random.Generator) -> dict:
    """Share of simulated experiments per size that pick the better side at p < ALPHA."""
    from embedscope.experiments.report import sign_test, two_proportion_test

    probs = [rates["p_a_wins"], rates["p_b_wins"], rates["p_tie"]]
    curves: dict[str, list[dict[str, float]]] = {"interleave": [], "ab": []}
    needed: dict[str, int | None] = {"interleave": None, "ab": None}
    for n in SIZES:
        if needed["interleave"] is None:
            wins = rng.multinomial(n, probs, size=trials)
            p = sign_test(wins[:, 0], wins[:, 1])
            right = wins[:, 1] > wins[:, 0] if b_better else wins[:, 0] > wins[:, 1]
            ok = float(((p < ALPHA) & right).mean())
            curves["interleave"].append({"impressions": n, "success": ok})
            if ok >= TARGET:
                needed["interleave"] = n
        if needed["ab"] is None:
            n_a = rng.binomial(n, 0.5, size=trials)
            n_b = n - n_a
            c_a, c_b = rng.binomial(n_a, rates["ctr_a"]), rng.binomial(n_b, rates["ctr_b"])
            z, p = two_proportion_test(c_a, n_a, c_b, n_b)
            ok = float(((p < ALPHA) & ((z > 0) if b_better else (z < 0))).mean())
            curves["ab"].append({"impressions": n, "success": ok})
            if ok >= TARGET:
                needed["ab"] = n
        if all(v is not None for v in needed.values()):
            break
    return {"curves": curves, "needed": needed}


def end_to_end(
    name_a: str,
    name_b: str,
    lists: dict[str, dict[str, list[str]]],
    qrels: dict,
    model: Any,
    n: int,
    seed: int,
) -> dict[str, Any]:
    """One interleaving experiment through the real path: Experiments.present, the event log,
    Experiments.click, report()."""
    from embedscope.experiments import Experiments, report

    rng = np.random.default_rng(seed)
    coin = random.Random(seed)
    queries = sorted(lists[name_a])
    with tempfile.TemporaryDirectory() as folder:
        exps = Experiments(folder, fsync=False)
        exp = exps.start(name_a, name_b, method="interleave")
        for qid in rng.choice(queries, size=n):
            imp = exps.present(
                exp, qid, lists[name_a].__getitem__, lists[name_b].__getitem__, k=DEPTH, rng=coin
            )
            rel = np.array([[qrels[qid].get(d, 0) > 0 for d in imp.ids]])
            for pos in np.flatnonzero(model.clicks(rel, rng)[0]):
                exps.click(exp.name, imp.id, int(pos))
        out = report(exps, exp.name)
        exps.close()
    return {
        "impressions": out["impressions"],
        "wins": out["wins"],
        "p": out["test"]["p"],
        "winner": out["winner"],
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    from embedscope.plots import pyplot, save

    plt = pyplot()
    models = list(dict.fromkeys(r["click_model"] for r in results))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), sharey=True, squeeze=False)
    pairs = list(dict.fromkeys((r["a"], r["b"]) for r in results))
    colour = {pair: f"C{i}" for i, pair in enumerate(pairs)}  # one colour per pair, a line style per method
    for ax, model in zip(axes[0], models, strict=True):
        for r in (r for r in results if r["click_model"] == model):
            for method, style in (("interleave", "-"), ("ab", "--")):
                pts = r["curves"][method]
                ax.plot(
                    [p["impressions"] for p in pts],
                    [p["success"] for p in pts],
                    style,
                    color=colour[(r["a"], r["b"])],
                    marker=".",
                    label=f"{r['a']} vs {r['b']} ({method})",
                )
        ax.axhline(TARGET, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("impressions")
        ax.set_title(f"{model} users", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"runs picking the better side at p < {ALPHA}")
    axes[0][-1].legend(fontsize=7)
    save(fig, path, 100)


def main() -> None:
    from common import RESULTS, report

    from embedscope.evaluate.ir import score_run
    from embedscope.sources import load_beir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--runs", type=Path, help="folder of <encoder>.trec runs (from `embedscope evaluate`)")
    ap.add_argument("--pairs", default=",".join(PAIRS), help="A:B encoder pairs")
    ap.add_argument(
        "--models", default=",".join(MODELS), help="click models: perfect,navigational,informational"
    )
    ap.add_argument("--trials", type=int, default=1000, help="simulated experiments per size")
    ap.add_argument("--pool", type=int, default=200, help="simulated impressions per query and method")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from embedscope.experiments.clickmodel import CLICK_MODELS

    started = time.perf_counter()
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    encoders = list(dict.fromkeys(e for p in pairs for e in p))
    ds = load_beir(args.data, "test")
    runs = load_runs(args.data, args.runs, encoders)
    qids = sorted(ds.qrels)
    ndcg = {e: score_run(ds.qrels, runs[e])["nDCG@10"] for e in encoders}
    lists = {e: {q: top(runs[e].get(q, {})) for q in qids} for e in encoders}
    relevant = [{d for d, r in ds.qrels[q].items() if r > 0} for q in qids]
    rows, results = [], []
    rng = np.random.default_rng(args.seed)
    for a, b in pairs:
        pool = build_pool(
            [lists[a][q] for q in qids], [lists[b][q] for q in qids], relevant, args.pool, args.seed
        )
        for model_name in args.models.split(","):
            model = CLICK_MODELS[model_name]
            rates = outcome_rates(pool, model, rng)
            b_better = ndcg[b] > ndcg[a]
            power = power_curves(rates, b_better, args.trials, rng)
            needed = power["needed"]
            ratio = needed["ab"] / needed["interleave"] if needed["ab"] and needed["interleave"] else None
            results.append({"a": a, "b": b, "click_model": model_name, **rates, **power})
            rows.append(
                {
                    "A vs B": f"{a} vs {b}",
                    "nDCG@10 A / B": f"{ndcg[a]:.4f} / {ndcg[b]:.4f}",
                    "users": model_name,
                    "interleave: B wins / A wins / tie": (
                        f"{rates['p_b_wins']:.3f} / {rates['p_a_wins']:.3f} / {rates['p_tie']:.3f}"
                    ),
                    "A/B: CTR A / B": f"{rates['ctr_a']:.3f} / {rates['ctr_b']:.3f}",
                    "impressions, interleave": needed["interleave"] or f"> {SIZES[-1]}",
                    "impressions, A/B": needed["ab"] or f"> {SIZES[-1]}",
                    "A/B / interleave": f"{ratio:.0f}x" if ratio else "-",
                }
            )
    first = results[0]
    check_n = first["needed"]["interleave"] or 1000
    e2e = end_to_end(
        first["a"], first["b"], lists, ds.qrels, CLICK_MODELS[first["click_model"]], check_n, args.seed
    )
    seconds = round(time.perf_counter() - started, 1)
    png = RESULTS / "online.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, png)
    report(
        "online",
        f"Impressions to pick the better ranker at p < {ALPHA} in {TARGET:.0%} of {args.trials} runs "
        f"(SciFact test, {len(qids)} queries, top {DEPTH})",
        rows,
        {
            "settings": {**{k: str(v) for k, v in vars(args).items()}, "sizes": SIZES},
            "ndcg10": ndcg,
            "results": results,
            "end_to_end": {"a": first["a"], "b": first["b"], "click_model": first["click_model"], **e2e},
            "seconds": seconds,
            "plot": str(png),
        },
    )
    print(
        f"end to end ({first['a']} vs {first['b']}, {first['click_model']}, {e2e['impressions']} impressions "
        f"through Experiments + report): wins {e2e['wins']}, p = {e2e['p']:.3g}, winner {e2e['winner']}"
    )
    print(f"{seconds} s; plot: {png}")


if __name__ == "__main__":
    main()
