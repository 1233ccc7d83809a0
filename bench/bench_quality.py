"""Search quality, stage by stage: every recipe setting chosen by cross-validation over query folds, on
the books development set (reported per query kind) and on SciFact, through the product's search path.

    python bench/bench_quality.py [--devset DIR] [--seeds 10] [--folds 5] [--home DIR] [--cache DIR]

What it does, in order (each step starts from what the steps before it kept):
1. baselines: bm25, minilm and today's hybrid (convex z-score, equal weights), on both data sets;
2. documents (books only; SciFact's BEIR items have no fields): the hybrid over every pair of a BM25
   document (field boosts: BM25F) and a MiniLM document (a template over the fields);
3. fusion weight: the BM25 weight in 0.3 ... 0.7 for the kept parts;
4. long requests: dropping negated clauses, the split stage (sentences or passages, fused by max /
   mean / RRF), what a candidate one part did not return counts in it (that part's cutoff, 0, or
   its true score: `missing="score"`), query term weighting (drop common terms), each with "off"
   among the candidates;
5. pseudo-relevance feedback: RM3 on the BM25 part, Rocchio on the MiniLM part;
6. query-adaptive fusion: a BM25 weight per bucket of query length.

Every step is a set of candidate recipes, "off" (the step's starting point) among them. On each of
`--folds` x `--seeds` training splits of the books queries, the candidate with the best mean nDCG@10
is picked (ties: the earlier, "off" first) and scored on the held-out fold: reported are the held-out
mean, its sd over folds and over seeds, and how often each candidate was picked. A step changes the
default only when (a) the books CV picks a candidate other than "off" most often, (b) the held-out
mean of that procedure beats "off"'s by more than its sd over seeds, and (c) on SciFact (300 test
queries, 5 x 10 CV the same way between that candidate and "off", a tie counting for the candidate,
so a stage that never fires there passes) the candidate is picked most often: "what the dev set AND
SciFact both support". SciFact decides only keep-or-drop, on training folds, never a setting.
The final default is then compared, per query kind, with bm25, minilm and today's hybrid: nDCG@10,
Recall@100, paired randomisation tests (`embedscope.evaluate.ir.compare_runs`, as `compare-runs`).

Data. The books: a copy (under --cache) of the `books` collection `embedscope demo` builds (copied
from --home, e.g. the pre-built seed; else ingested and embedded as the demo does). The dev set:
--devset DIR with queries.jsonl + qrels.tsv and, when present, long-queries.jsonl + long-qrels.tsv
(default bench/data/vibe); a query's kind is its `metadata.kind` (vibe / request / long; the
20-query set of issue 9 has none: vibe). SciFact: the collection `embedscope evaluate` caches
(beir-scifact under --home: bm25 + minilm), searched read-only. Writes bench/results/quality.json
(and the top 10 of every dev query before and after, for reading).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, SHARED_DATA, kfold_picks, machine, paired  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = SHARED_DATA / "beir" / "scifact"
BOOKS = SHARED_DATA / "books" / "books.csv"
DEVSET = ROOT / "bench" / "data" / "vibe"
METRICS = ("nDCG@10", "Recall@100")
KINDS = ("vibe", "request", "long")
DEPTH = 100

#: BM25 documents tried on the books (field boosts = BM25F; the books' text is "{title}. {description}")
SPARSE_DOCS = {
    "text": None,
    "fields": "{text} {authors} {categories}",
    "fields-title2": "{title} {text} {authors} {categories}",
    "fields-categories2": "{text} {authors} {categories^2}",
}
#: MiniLM documents tried on the books
DENSE_DOCS = {
    "text": None,
    "fields": "{title}. {authors}. {categories}. {text}",
    "categories": "{categories}. {text}",
}


# --- data -----------------------------------------------------------------------------------------------
@dataclass
class QuerySet:
    """One collection and its judged queries, searched through the product's search path."""

    name: str
    collection: Any
    qids: list[str]
    texts: list[str]
    kinds: list[str]
    qrels: dict[str, dict[str, int]]
    pipeline: Any = None
    cache: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from embedscope.search.pipeline import MemoEncoder, SearchPipeline

        # each query text is encoded once per version, however many recipes search it
        self.pipeline = SearchPipeline(self.collection, encode=MemoEncoder())

    def measure(self, label: str, using: Any) -> dict[str, np.ndarray]:
        """Per-query nDCG@10 and Recall@100 of one version or recipe (cached by label), top 100,
        no collapsing of editions (the judgements grade each edition)."""
        if label not in self.cache:
            from embedscope.evaluate.ir import per_query_scores

            results = self.pipeline.search_many(self.texts, DEPTH, using=using, collapse=False, strict=False)
            run = {q: {h.id: h.score for h in r.hits} for q, r in zip(self.qids, results, strict=True)}
            pq = per_query_scores(self.qrels, run)
            self.runs[label] = run
            self.cache[label] = {m: np.array([pq[m][q] for q in self.qids]) for m in METRICS}
        return self.cache[label]

    def mask(self, kind: str | None) -> np.ndarray:
        return np.array([kind is None or k == kind for k in self.kinds])


def read_devset(folder: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Queries (text, kind) and graded judgements of the books dev set, the long requests included."""
    from embedscope.sources import iter_qrels, read_jsonl

    texts, kinds, qrels = {}, {}, {}
    for queries, judged, default_kind in (
        ("queries.jsonl", "qrels.tsv", "vibe"),
        ("long-queries.jsonl", "long-qrels.tsv", "long"),
    ):
        if not (folder / queries).exists():
            continue
        for rec in read_jsonl(folder / queries):
            qid = str(rec["_id"])
            texts[qid] = str(rec["text"])
            kinds[qid] = str((rec.get("metadata") or {}).get("kind") or default_kind)
        for q, d, score in iter_qrels(folder / judged):
            qrels.setdefault(q, {})[d] = int(score)
    judged_queries = {q for q, docs in qrels.items() if any(s > 0 for s in docs.values())}
    texts = {q: t for q, t in texts.items() if q in judged_queries}
    return texts, {q: kinds[q] for q in texts}, {q: qrels[q] for q in texts}


def books_collection(home: Path, cache: Path) -> Any:
    """The harness's own copy of the demo's `books` collection (never the user's: variants are added)."""
    from embedscope import Collection

    target = cache / "collections" / "books"
    if not target.exists():
        source = home / "books"
        if source.exists():
            shutil.copytree(source, target)
        else:
            from embedscope.cli.demo import BOOK_METADATA
            from embedscope.sources import read_table

            frame = read_table(BOOKS).dropna(subset=["description"])
            col = Collection.create("books", target.parent)
            col.ingest(
                frame,
                id_field="isbn13",
                template="{title}. {description}",
                metadata=[c for c in BOOK_METADATA if c in frame.columns],
            )
            col.embed("hybrid")
    return Collection.open("books", target.parent)


def ensure_version(col: Any, name: str, encoder: str, document: str | None) -> str:
    """A version of `encoder` with `document` (embedded once; later runs find it current), indexed as
    the demo indexes it (dense: HNSW; sparse: exact), so that what is measured is what ships."""
    from embedscope.encoders.registry import encoder_class

    kind = "exact" if encoder_class(encoder).sparse else "hnsw"
    existing = {v.name: v for v in col.versions()}.get(name)
    if (
        existing is None
        or existing.document != document
        or existing.index["kind"] != kind
        or not col.is_current(existing)
    ):
        print(f"embedding {col.name}/{name} ({encoder}, document {document or '{text}'})", flush=True)
        col.embed(encoder, version=name, document=document if document else "{text}", index=kind)
    return name


# --- cross-validation -----------------------------------------------------------------------------------
def cross_validate(table: dict[str, np.ndarray], seeds: int, folds: int) -> dict[str, Any]:
    """k-fold over queries x `seeds` shuffles: on each training split the candidate with the best
    mean wins and is scored on the held-out fold. Ties go to the earlier candidate ("off" first)."""
    labels = list(table)
    rows, held, seed_means = kfold_picks(np.stack([table[c] for c in labels]), seeds, folds, decimals=10)
    picks = [labels[r] for r in rows]
    counts = Counter(picks)
    chosen = counts.most_common(1)[0][0]
    return {
        "heldout_mean": round(float(np.mean(held)), 4),
        "heldout_sd_over_folds": round(float(np.std(held, ddof=1)), 4),
        "heldout_sd_over_seeds": round(float(np.std(seed_means, ddof=1)), 4) if seeds > 1 else 0.0,
        "chosen": chosen,
        "picks": dict(counts.most_common()),
    }


def summary(qs: QuerySet, label: str) -> dict[str, Any]:
    """Mean nDCG@10 and Recall@100, all queries and per kind."""
    m = qs.cache[label]
    out: dict[str, Any] = {"all": {k: round(float(v.mean()), 4) for k, v in m.items()}}
    for kind in sorted(set(qs.kinds)):
        sel = qs.mask(kind)
        out[kind] = {k: round(float(v[sel].mean()), 4) for k, v in m.items()}
    return out


# --- steps ----------------------------------------------------------------------------------------------
@dataclass
class Step:
    """Candidates for one data set: label -> version name or Recipe; the first is "off"."""

    name: str
    books: dict[str, Any]
    #: the same candidates over SciFact's versions (None: the step does not apply there)
    scifact: dict[str, Any] | None = None


def run_step(step: Step, books: QuerySet, sci: QuerySet | None, seeds: int, folds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    table = {
        label: books.measure(f"{step.name}: {label}", using)["nDCG@10"] for label, using in step.books.items()
    }
    off = next(iter(step.books))
    cv = cross_validate(table, seeds, folds)
    off_cv = cross_validate({off: table[off]}, seeds, folds)
    chosen = cv["chosen"]
    out: dict[str, Any] = {
        "step": step.name,
        "candidates": {
            label: {
                "books": summary(books, f"{step.name}: {label}"),
                **({"recipe": _describe(using)}),
            }
            for label, using in step.books.items()
        },
        "books_cv": cv,
        "books_off_heldout": off_cv["heldout_mean"],
        "books_chosen_vs_off": {
            kind or "all": paired(
                books.cache[f"{step.name}: {off}"]["nDCG@10"][books.mask(kind)],
                books.cache[f"{step.name}: {chosen}"]["nDCG@10"][books.mask(kind)],
            )
            for kind in (None, *sorted(set(books.kinds)))
        },
    }
    gain = cv["heldout_mean"] - off_cv["heldout_mean"]
    supported_books = chosen != off and gain > cv["heldout_sd_over_seeds"]
    supported_sci = True
    if sci is not None and step.scifact is not None and chosen != off:
        # the chosen setting first: a tie (a stage that never fires on SciFact) counts as support
        sci_table = {
            label: sci.measure(f"{step.name}: {label}", step.scifact[label])["nDCG@10"]
            for label in (chosen, off)
        }
        sci_cv = cross_validate(sci_table, seeds, folds)
        supported_sci = sci_cv["chosen"] == chosen
        out["scifact"] = {
            "off": summary(sci, f"{step.name}: {off}")["all"],
            "chosen": summary(sci, f"{step.name}: {chosen}")["all"],
            "cv_chosen_or_off": sci_cv,
            "chosen_vs_off": paired(sci_table[off], sci_table[chosen]),
        }
    out["kept"] = chosen if supported_books and supported_sci else off
    if out["kept"] != off:
        out["why"] = (
            "the books CV picks it, its held-out gain exceeds the sd over seeds, SciFact's CV keeps it"
        )
    elif chosen == off:
        out["why"] = "the books CV keeps off"
    elif not supported_books:
        out["why"] = f"held-out gain on the books {gain:+.4f} is within the sd over seeds"
    else:
        out["why"] = "SciFact's CV (between off and it) drops it"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _describe(using: Any) -> str:
    return using if isinstance(using, str) else using.describe()


def print_step(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 200))
    kinds = [k for k in KINDS if any(k in c["books"] for c in res["candidates"].values())]
    t = Table(title=f"step: {res['step']}  (books nDCG@10 / R@100, full set; picked = CV picks of 50)")
    for c in ("candidate", "all", *kinds, "picked"):
        t.add_column(c, justify="left" if c == "candidate" else "right")
    for label, c in res["candidates"].items():
        b = c["books"]
        t.add_row(
            label,
            *(
                f"{b[k]['nDCG@10']:.4f} / {b[k]['Recall@100']:.3f}" if k in b else "-"
                for k in ("all", *kinds)
            ),
            str(res["books_cv"]["picks"].get(label, 0)),
        )
    console.print(t)
    cv = res["books_cv"]
    spread = f"sd folds {cv['heldout_sd_over_folds']}, seeds {cv['heldout_sd_over_seeds']}"
    tests = "; ".join(f"{k} {v}" for k, v in res["books_chosen_vs_off"].items())
    console.print(
        f"  books CV: chosen {cv['chosen']!r}, held-out {cv['heldout_mean']} ({spread}) "
        f"vs off {res['books_off_heldout']}; chosen vs off: {tests}"
    )
    if "scifact" in res:
        s = res["scifact"]
        picks = s["cv_chosen_or_off"]["picks"]
        console.print(f"  SciFact: off {s['off']}, chosen {s['chosen']}; CV picks between them {picks}")
        console.print(f"  SciFact paired chosen vs off: {s['chosen_vs_off']}")
    console.print(f"  [bold]kept:[/] {res['kept']} ({res['why']}; {res['seconds']} s)")


# --- the run --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devset", type=Path, default=DEVSET, help="folder with the books dev set")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--home", type=Path, default=Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedscope-bench-quality")
    ap.add_argument("--no-scifact", action="store_true", help="books only")
    ap.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    args = ap.parse_args()
    started, load_before = time.perf_counter(), os.getloadavg()
    from embedscope import Collection
    from embedscope.search.recipe import DEFAULT_HYBRID, make_recipe
    from embedscope.sources import load_beir

    args.cache.mkdir(parents=True, exist_ok=True)
    col = books_collection(args.home, args.cache)
    texts, kinds, qrels = read_devset(args.devset)
    books = QuerySet("books", col, list(texts), list(texts.values()), list(kinds.values()), qrels)
    print(f"books dev set: {len(texts)} judged queries, {dict(Counter(kinds.values()))}", flush=True)
    sci = None
    if not args.no_scifact:
        ds = load_beir(SCIFACT)
        scol = Collection.open("beir-scifact", args.home)
        sci = QuerySet(
            "scifact",
            scol,
            list(ds.qrels),
            [ds.queries[q] for q in ds.qrels],
            ["claim"] * len(ds.qrels),
            ds.qrels,
        )

    sparse_v = {
        k: ensure_version(col, "bm25" if d is None else f"bm25-{k}", "bm25", d)
        for k, d in SPARSE_DOCS.items()
    }
    dense_v = {
        k: ensure_version(col, "minilm" if d is None else f"minilm-{k}", "minilm", d)
        for k, d in DENSE_DOCS.items()
    }

    def recipe(parts: list[str], **kw: Any) -> Any:
        return make_recipe("hybrid", parts, **{**DEFAULT_HYBRID, **kw})

    # 1. baselines
    old = recipe(["bm25", "minilm"], stages={})  # issue 9's default: no query stages
    for qs in (books, sci):
        if qs is not None:
            qs.measure("bm25", "bm25")
            qs.measure("minilm", "minilm")
            qs.measure("old hybrid", old)
    steps: list[dict[str, Any]] = []
    state: dict[str, Any] = {
        "sparse": "bm25",
        "dense": "minilm",
        "weight": 0.5,
        "missing": "cutoff",
        "stages": {},
    }

    def current(**change: Any) -> tuple[Any, Any]:
        s = {**state, **change}
        w = [s["weight"], 1 - s["weight"]]
        stages = {k: v for k, v in s["stages"].items() if v is not None}
        params = {**DEFAULT_HYBRID["params"], "missing": s["missing"]}
        return (
            recipe([s["sparse"], s["dense"]], weights=w, params=params, stages=stages),
            recipe(["bm25", "minilm"], weights=w, params=params, stages=stages) if sci is not None else None,
        )

    def step(name: str, changes: dict[str, dict[str, Any]], scifact: bool = True) -> dict[str, Any]:
        cands = {"off": current()}
        cands.update({label: current(**ch) for label, ch in changes.items()})
        res = run_step(
            Step(
                name,
                {k: v[0] for k, v in cands.items()},
                {k: v[1] for k, v in cands.items()} if scifact else None,
            ),
            books,
            sci if scifact else None,
            args.seeds,
            args.folds,
        )
        print_step(res)
        if res["kept"] != "off":
            state.update(changes[res["kept"]])
        res["state_after"] = json.loads(json.dumps(state))
        steps.append(res)
        return res

    # 2. documents (books only)
    step(
        "documents",
        {
            f"bm25 {s} + minilm {d}": {"sparse": sv, "dense": dv}
            for s, sv in sparse_v.items()
            for d, dv in dense_v.items()
            if (s, d) != ("text", "text")
        },
        scifact=False,
    )
    # 3. fusion weight
    step("fusion weight", {f"bm25 weight {w}": {"weight": w} for w in (0.3, 0.4, 0.6, 0.7)})

    # 4. long requests: negation, split, then term weighting
    def with_stage(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return {"stages": {**state["stages"], name: options}}

    step(
        "drop negated clauses",
        {f"negation min_words {n}": with_stage("negation", {"min_words": n}) for n in (1, 20, 40)},
    )
    split_grid = {
        f"split {by} fuse {fuse}{'' if whole else ' (pieces only)'}": with_stage(
            "split", {"by": by, "fuse": fuse, "whole": whole}
        )
        for by in ("sentence", "passage")
        for fuse in ("max", "convex", "rrf")
        for whole in (True, False)
    }
    # the cheaper variants: only one kind of part searches the pieces (no extra MiniLM encoding: sparse)
    for on in ("sparse", "dense"):
        split_grid[f"split sentence fuse convex, {on} part only"] = with_stage(
            "split", {"by": "sentence", "fuse": "convex", "whole": True, "on": on}
        )
    step("split long queries", split_grid)
    # a candidate one part did not return: its cutoff (off), 0, or its true score (missing="score");
    # after the split stage, which it competes with on long requests (a split part keeps the cutoff)
    step("missing scores", {f"missing={m}": {"missing": m} for m in ("score", "zero")})
    step(
        "query term weighting",
        {
            f"terms max_df {df}{' binary' if binary else ''}": with_stage(
                "terms", {"max_df": df, "binary": binary}
            )
            for df in (0.05, 0.1, 0.2, 0.5)
            for binary in (False, True)
        },
    )
    # 5. pseudo-relevance feedback
    step(
        "RM3 (BM25 part)",
        {
            f"rm3 docs {d} terms {t} weight {w}": with_stage("rm3", {"docs": d, "terms": t, "weight": w})
            for d, t, w in ((10, 10, 0.5), (10, 10, 0.3), (5, 10, 0.3), (10, 20, 0.3))
        },
    )
    step(
        "Rocchio (MiniLM part)",
        {
            f"rocchio docs {d} beta {b}": with_stage("rocchio", {"docs": d, "beta": b})
            for d in (3, 5)
            for b in (0.25, 0.5, 1.0)
        },
    )
    # 6. query-adaptive fusion: BM25 weight per bucket of query length
    base_w = state["weight"]
    step(
        "adaptive fusion (by query length)",
        {
            f"words <= {edge}: bm25 {a}, longer: bm25 {b}": with_stage(
                "adaptive", {"edges": [edge], "weights": [[a, 1 - a], [b, 1 - b]]}
            )
            for edge in (8, 15, 40)
            for a in (base_w - 0.1, base_w, base_w + 0.1)
            for b in (base_w - 0.2, base_w - 0.1, base_w, base_w + 0.1, base_w + 0.2)
            if (a, b) != (base_w, base_w) and 0 < a < 1 and 0 < b < 1
        },
    )

    # the final default against the baselines, per kind
    final_books, final_sci = current()
    shipped = make_recipe("hybrid", ["bm25", "minilm"], **DEFAULT_HYBRID).stages
    if shipped != final_books.stages:
        print(
            f"NOTE: the code's DEFAULT_HYBRID stages {shipped} differ from this run's choice "
            f"{final_books.stages}"
        )
    books.measure("new default", final_books)
    # the new default's own parts alone too (the robustness goal: never below its best single part)
    labels = ["bm25", "minilm"]
    for part in (state["sparse"], state["dense"]):
        if part not in labels:
            books.measure(part, part)
            labels.append(part)
    report = {"books": final_report(books, [*labels, "old hybrid", "new default"])}
    if sci is not None:
        sci.measure("new default", final_sci)
        report["scifact"] = final_report(sci, ["bm25", "minilm", "old hybrid", "new default"])
    print_final(report)
    out = {
        "benchmark": "quality",
        "command": "python bench/bench_quality.py"
        + (f" --devset {args.devset}" if args.devset != DEVSET else ""),
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "devset": {"folder": str(args.devset), "queries": len(texts), "kinds": dict(Counter(kinds.values()))},
        "cv": {"folds": args.folds, "seeds": args.seeds, "metric": "nDCG@10"},
        "steps": steps,
        "default": {"books": final_books.to_dict(), "scifact": final_sci.to_dict() if final_sci else None},
        "documents": {
            "sparse": SPARSE_DOCS,
            "dense": DENSE_DOCS,
            "kept": {"sparse": state["sparse"], "dense": state["dense"]},
        },
        "final": report,
        "top10": top10(books, ["minilm", "old hybrid", "new default"]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {args.out} ({out['seconds']} s)")


def final_report(qs: QuerySet, labels: list[str]) -> dict[str, Any]:
    """Each system's means per kind, and the new default against each other system (paired tests of
    `compare_runs`, the code of `embedscope compare-runs`), per kind."""
    from embedscope.evaluate.ir import compare_runs

    out: dict[str, Any] = {"means": {label: summary(qs, label) for label in labels}, "tests": {}}
    for kind in (None, *sorted(set(qs.kinds))):
        qids = [q for q, keep in zip(qs.qids, qs.mask(kind), strict=True) if keep]
        qrels = {q: qs.qrels[q] for q in qids}
        for other in labels[:-1]:
            cmp = compare_runs(qrels, qs.runs[other], qs.runs[labels[-1]], test="randomisation")
            rows = {r["metric"]: r for r in cmp["metrics"] if r["metric"] in METRICS}
            out["tests"][f"{kind or 'all'}: {labels[-1]} vs {other}"] = {
                m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "metric"}
                for m, r in rows.items()
            }
    return out


def print_final(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 200))
    for name, rep in report.items():
        groups = list(next(iter(rep["means"].values())))
        t = Table(
            title=f"{name}: nDCG@10 / Recall@100 per kind (p: randomisation test of the new default vs it)"
        )
        t.add_column("system")
        for g in groups:
            t.add_column(g, justify="right")
        for label, means in rep["means"].items():
            cells = []
            for g in groups:
                test = rep["tests"].get(f"{g}: new default vs {label}")
                p = f" p={test['nDCG@10']['p_rand']:.3f}" if test else ""
                cells.append(f"{means[g]['nDCG@10']:.4f} / {means[g]['Recall@100']:.3f}{p}")
            t.add_row(label, *cells)
        console.print(t)


def top10(qs: QuerySet, labels: list[str]) -> dict[str, Any]:
    """The top 10 titles of every dev query for each system (what the numbers mean, for reading)."""
    frame, _ = qs.collection.metadata_frame()
    title: Callable[[str], str] = lambda i: f"{frame.at[i, 'title']} ({frame.at[i, 'authors']})"  # noqa: E731
    out = {}
    for q, text, kind in zip(qs.qids, qs.texts, qs.kinds, strict=True):
        out[q] = {"text": text, "kind": kind}
        for label in labels:
            ranked = sorted(qs.runs[label][q].items(), key=lambda t: -t[1])[:10]
            out[q][label] = [f"{qs.qrels[q].get(i, '-')} {title(i)}" for i, _ in ranked]
    return out


if __name__ == "__main__":
    main()
