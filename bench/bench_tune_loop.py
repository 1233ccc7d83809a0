"""The loop log -> tune -> evaluate -> interleave -> activate, simulated on SciFact (docs/online.md).

    python bench/bench_tune_loop.py [--log-impressions 3000] [--test-impressions 4000]

1. Split SciFact's judged test queries in two halves (seeded): users ask the first half ("logged"),
   the second half ("held out") is never seen by the tuning.
2. Log: an interleaving experiment `loop-log` (minilm vs hybrid, what a collection serves before
   any tuning) shows the logged queries to simulated users (the cascade click model's navigational
   users; relevance from the qrels); clicks go to the experiment's log through `Experiments`, as
   `embedscope serve` writes them.
3. Tune: `tuned-clicks` = MiniLM tuned on the corpus (ICT pairs, the defaults) plus the log's
   distinct (query, clicked document) pairs: `embedscope tune beir-scifact --from-clicks loop-log`.
   Same seed and settings as `tuned` (ICT only), so the difference between them is the clicks.
4. Evaluate on the held-out half (nDCG@10, Recall@100, paired randomisation test).
5. Interleave the deployed hybrid against the hybrid with the tuned dense part, on held-out queries
   with simulated users (a throwaway experiment through `Experiments` and `report`).
6. Activate the new hybrid when it wins at p < 0.05 (`embedscope activate`), else keep the old.

Uses the evaluation harness's collection `beir-scifact` (its bm25 / minilm / tuned versions are
what `embedscope evaluate ../shared/data/beir/scifact -e bm25,minilm,tuned` builds); a rerun
reuses the log and the tuned version. Writes bench/results/tune-loop.json.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tune import SCIFACT, hybrid_with, measure, runs  # noqa: E402
from common import report  # noqa: E402

LOG = "loop-log"
DEPTH = 10  # results shown per impression
SEED = 0


def simulate(
    exps: Any, name: str, lists: dict[str, dict[str, list[str]]], a: str, b: str, queries: dict[str, str],
    qrels: dict, n: int, seed: int,
) -> None:  # fmt: skip
    """n impressions of an interleaving experiment over `queries` (uniformly drawn), users clicking
    by the navigational cascade model."""
    from embedscope.experiments.clickmodel import CLICK_MODELS

    model = CLICK_MODELS["navigational"]
    rng, coin = np.random.default_rng(seed), random.Random(seed)
    qid_of = {text: qid for qid, text in queries.items()}
    exp = exps.start(a, b, method="interleave", name=name)
    for qid in rng.choice(sorted(queries), size=n):
        text = queries[qid]
        imp = exps.present(
            exp, text, lambda t: lists[a][qid_of[t]], lambda t: lists[b][qid_of[t]], k=DEPTH, rng=coin
        )
        rel = np.array([[qrels[qid].get(d, 0) > 0 for d in imp.ids]])
        for pos in np.flatnonzero(model.clicks(rel, rng)[0]):
            exps.click(exp.name, imp.id, int(pos))
    exps.stop(exp.name)


def top(run: dict[str, dict[str, float]]) -> dict[str, list[str]]:
    return {q: sorted(r, key=lambda d: -r[d])[:DEPTH] for q, r in run.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-impressions", type=int, default=3000)
    parser.add_argument("--test-impressions", type=int, default=4000)
    args = parser.parse_args()

    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.tune import tuned_params
    from embedscope.evaluate.ir import _embed, corpus_collection
    from embedscope.experiments import Experiments, clicked_pairs
    from embedscope.experiments import report as experiment_report
    from embedscope.search.recipe import DEFAULT_HYBRID
    from embedscope.sources import load_beir

    ds = load_beir(SCIFACT)
    col, _ = corpus_collection(ds, "beir-scifact")
    for name in ("bm25", "minilm"):
        _embed(col, name, None)
    judged = sorted(ds.qrels)
    order = np.random.default_rng(SEED).permutation(len(judged))
    logged = {judged[i]: ds.queries[judged[i]] for i in order[: len(judged) // 2]}
    held = {judged[i]: ds.queries[judged[i]] for i in order[len(judged) // 2 :]}

    # 1-2. the log: users of the deployed configurations click
    exps = Experiments.of(col, fsync=False)
    before = {"minilm": "minilm", "hybrid": hybrid_with("minilm", "hybrid")}
    if LOG not in {e.name for e in exps.list()}:
        lists = {k: top(r) for k, r in runs(col, logged, before, k=DEPTH).items()}
        simulate(exps, LOG, lists, "minilm", "hybrid", logged, ds.qrels, args.log_impressions, SEED)
    clicks = exps.clicks(LOG)
    pairs, _ = clicked_pairs(col, LOG)
    relevant = sum(1 for c in clicks if ds.qrels.get(_qid(logged, c["query"]), {}).get(c["item"], 0) > 0)

    # 3. tune with the clicks (what `embedscope tune beir-scifact --from-clicks loop-log` does)
    minilm = {v.name: v for v in col.versions()}["minilm"].encoder
    enc = create_encoder("tuned", tuned_params(minilm, clicks=LOG))
    have = {v.name: v for v in col.versions()}
    if "tuned-clicks" not in have or have["tuned-clicks"].encoder != enc.config():
        enc.add_pairs(pairs)  # type: ignore[attr-defined]
        # fitted before `embed`, which then only encodes: the collection's writer lock is held for
        # minutes, not for the training (another process may be embedding the same collection)
        items = col.items()
        enc.fit_items([i.text for i in items], [i.metadata for i in items])
        when_free(lambda: col.embed(enc, version="tuned-clicks", index="exact"))
    when_free(lambda: _embed(col, "tuned", None))  # ICT only: what `evaluate -e tuned` builds

    # 4. evaluate on queries the tuning never saw
    usings = {
        "minilm": "minilm",
        "tuned": "tuned",
        "tuned-clicks": "tuned-clicks",
        "hybrid": before["hybrid"],
        "hybrid-tuned": hybrid_with("tuned", "hybrid-tuned"),
        "hybrid-tuned-clicks": hybrid_with("tuned-clicks", "hybrid-tuned-clicks"),
    }
    compare = [
        ("minilm", "tuned-clicks"),
        ("tuned", "tuned-clicks"),
        ("hybrid", "hybrid-tuned-clicks"),
        ("hybrid-tuned", "hybrid-tuned-clicks"),
    ]
    held_runs = runs(col, held, usings)
    rows = measure("scifact held-out half", {q: ds.qrels[q] for q in held}, held_runs, compare)
    logged_runs = runs(col, logged, usings)
    rows += measure("scifact logged half (seen)", {q: ds.qrels[q] for q in logged}, logged_runs, compare)

    # 5. interleave on held-out queries, simulated users
    lists = {k: top(held_runs[k]) for k in ("hybrid", "hybrid-tuned-clicks")}
    with tempfile.TemporaryDirectory() as folder:
        test = Experiments(folder, fsync=False)
        simulate(
            test,
            "loop-test",
            lists,
            "hybrid",
            "hybrid-tuned-clicks",
            held,
            ds.qrels,
            args.test_impressions,
            SEED + 1,
        )
        out = experiment_report(test, "loop-test")
        test.close()

    # 6. activate the winner
    activated = out["winner"] == "b" and out["test"]["p"] < 0.05
    if activated:
        recipe = usings["hybrid-tuned-clicks"]
        when_free(lambda: col.create_recipe(recipe.name, recipe.parts, **DEFAULT_HYBRID))
        col.activate(recipe.name)
    extra = {
        "queries": {"logged": len(logged), "held_out": len(held)},
        "log": {"impressions": args.log_impressions, "clicks": len(clicks), "clicks_on_relevant": relevant,
                "distinct_pairs": len(pairs)},
        "training": {k: v for k, v in col.encoder("tuned-clicks").training.items() if k != "losses"},
        "interleaving": {"impressions": out["impressions"], "wins": out["wins"], "p": out["test"]["p"],
                         "winner": out["winner"], "verdict": out["verdict"]},
        "activated": activated,
    }  # fmt: skip
    print(extra)
    report("tune-loop", "log -> tune -> evaluate on SciFact (p: paired randomisation test)", rows, extra)


def when_free(action: Callable[[], Any], wait_s: float = 30.0, tries: int = 480) -> Any:
    """Run a write, waiting while another process holds the collection's writer lock (a long
    `evaluate` embedding the same collection)."""
    from embedscope.errors import ConflictError

    for _ in range(tries):
        try:
            return action()
        except ConflictError:
            time.sleep(wait_s)
    return action()


def _qid(queries: dict[str, str], text: str) -> str:
    return next((q for q, t in queries.items() if t == text), "")


if __name__ == "__main__":
    main()
