"""The encoder tuned to the collection (`embedscope tune`, encoder `tuned`): quality against its
base MiniLM, alone and as the dense part of the BM25 hybrid, on SciFact and on the books, with
paired randomisation tests; and what the tuning cost (wall and CPU seconds, with the load).

    python bench/bench_tune.py                       # SciFact and the books dev set
    python bench/bench_tune.py --only scifact
    python bench/bench_tune.py --only books --devset DIR     # another books dev set
    python bench/bench_tune.py --only books -p train_layers=0   # a variant (a version of its own)

Settings are not chosen here: SciFact is tuned with the defaults (pairs=ict: its collection has no
fields; 1 epoch, lr 2e-5, batch 64, warm-up 10%, the literature's defaults), on the corpus texts
only (never its queries or judgements); the books with pairs=title,categories,ict (every field a
reader's request speaks of: the book's name, its genre, its content), the same defaults otherwise.
The hybrids are the shipped recipe (search.recipe.DEFAULT_HYBRID) with the dense part swapped.

Versions come from the same places as everywhere else, so a rerun trains nothing: SciFact's from
the evaluation harness's collection `beir-scifact` (what `embedscope evaluate ../shared/data/beir/scifact
-e tuned` builds), the books' from bench_quality's copy of the demo's `books` collection (under
--cache, copied from $EMBEDSCOPE_HOME/books: it has the metadata fields), with the demo's two
documents; `embedscope tune books --pairs title,categories,ict` on the demo's collection builds
the same version. The books dev set is bench_quality's (every kind, the long requests included).
Writes bench/results/tune.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DATA, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = SHARED_DATA / "beir" / "scifact"
VIBE = ROOT / "bench" / "data" / "vibe"
BOOKS_PAIRS = "title,categories,ict"
METRICS = ("nDCG@10", "Recall@100")


def cpu_facts() -> dict[str, Any]:
    flags = subprocess.run(
        "grep -o -w 'avx512_bf16\\|avx512_vnni\\|amx_bf16\\|avx2' /proc/cpuinfo | sort -u",
        shell=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {"loadavg": Path("/proc/loadavg").read_text().split()[:3], "cpu_flags": flags}


def training(col: Any, version: str) -> dict[str, Any]:
    info = {v.name: v for v in col.versions()}[version]
    record = {k: v for k, v in col.encoder(version).training.items() if k != "losses"}
    return {**record, "encode_seconds": info.stats.get("encode_seconds"), "params": info.encoder["params"]}


def runs(col: Any, queries: dict[str, str], usings: dict[str, Any], k: int = 100) -> dict[str, Any]:
    """One run per configuration, through the collection's one search path (exact, no collapse:
    every edition is judged on its own)."""
    out = {}
    for label, using in usings.items():
        results = col.pipeline.search_many(
            list(queries.values()), k, using=using, exact=True, collapse=False, strict=False
        )
        out[label] = {q: {h.id: h.score for h in r.hits} for q, r in zip(queries, results, strict=True)}
    return out


def measure(name: str, qrels: Any, run: dict[str, Any], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from embedscope.evaluate.ir import compare_runs, score_run

    rows = []
    scores = {label: score_run(qrels, r) for label, r in run.items()}
    for a, b in pairs:
        cmp = compare_runs(qrels, run[a], run[b], test="randomisation")
        by = {m["metric"]: m for m in cmp["metrics"]}
        row: dict[str, Any] = {"data": name, "A": a, "B": b, "queries": cmp["queries"]}
        for metric in METRICS:
            row[f"{metric} A"] = round(scores[a][metric], 4)
            row[f"{metric} B"] = round(scores[b][metric], 4)
            row[f"{metric} p"] = round(by[metric]["p_rand"], 4)
        row["W/T/L nDCG@10"] = f"{by['nDCG@10']['wins']}/{by['nDCG@10']['ties']}/{by['nDCG@10']['losses']}"
        rows.append(row)
    return rows


def hybrid_with(dense: str, name: str, sparse: str = "bm25") -> Any:
    """The shipped hybrid (a BM25 version + a dense version, DEFAULT_HYBRID), as a recipe object:
    searched without being stored."""
    from embedscope.search.recipe import DEFAULT_HYBRID, make_recipe

    return make_recipe(name, [sparse, dense], **DEFAULT_HYBRID)


COMPARE = [("minilm", "tuned"), ("hybrid", "hybrid-tuned"), ("minilm", "hybrid-tuned")]


def scifact() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from embedscope.evaluate.ir import _embed, corpus_collection
    from embedscope.sources import load_beir

    ds = load_beir(SCIFACT)
    col, _ = corpus_collection(ds, "beir-scifact")
    for enc in ("bm25", "minilm", "tuned"):  # the harness's cached versions (tuned trains if absent)
        _embed(col, enc, None)
    queries = {q: ds.queries[q] for q in ds.qrels}
    usings = {
        "bm25": "bm25",
        "minilm": "minilm",
        "tuned": "tuned",
        "hybrid": hybrid_with("minilm", "hybrid"),
        "hybrid-tuned": hybrid_with("tuned", "hybrid-tuned"),
    }
    return measure("scifact test", ds.qrels, runs(col, queries, usings), COMPARE), training(col, "tuned")


def books(
    devset: Path, home: Path, cache: Path, overrides: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The demo's books (bench_quality's copy of them, with its versions): MiniLM over the demo's
    dense document against the tuned version over the same document, alone and as the dense part of
    the demo's hybrid (BM25F document + dense, DEFAULT_HYBRID), on the dev set, per query kind."""
    from bench_quality import QuerySet, books_collection, ensure_version, read_devset

    from embedscope.cli.demo import BOOK_DOCUMENTS
    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.tune import tuned_params

    col = books_collection(home, cache)
    sparse = ensure_version(col, "bm25-demo", "bm25", BOOK_DOCUMENTS["sparse_document"])
    dense = ensure_version(col, "minilm-demo", "minilm", BOOK_DOCUMENTS["dense_document"])
    have = {v.name: v for v in col.versions()}
    want = create_encoder("tuned", tuned_params(have[dense].encoder, pairs=BOOKS_PAIRS, **overrides)).config()
    name = "tuned" + "".join(f"-{k}{v}" for k, v in sorted(overrides.items()))
    if name not in have or (have[name].encoder, have[name].document) != (want, have[dense].document):
        # what `embedscope tune books --pairs title,categories,ict` does on the demo's collection
        print(f"tuning {name} on the books ...", flush=True)
        col.embed("tuned", want["params"], version=name, document=have[dense].document)
    texts, kinds, qrels = read_devset(devset)
    qs = QuerySet("books", col, list(texts), list(texts.values()), list(kinds.values()), qrels)
    usings = {
        "minilm": dense,
        "tuned": name,
        "hybrid": hybrid_with(dense, "hybrid", sparse),
        "hybrid-tuned": hybrid_with(name, "hybrid-tuned", sparse),
    }
    for label, using in usings.items():
        qs.measure(label, using)  # keeps the run in qs.runs
    run = qs.runs
    rows = measure("books dev set, all", qrels, run, COMPARE)
    for kind in sorted(set(kinds.values())):
        sub = {q: qrels[q] for q in texts if kinds[q] == kind}
        rows += measure(f"books, {kind}", sub, {k: {q: r[q] for q in sub} for k, r in run.items()}, COMPARE)
    return rows, training(col, name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("scifact", "books"))
    parser.add_argument("--devset", type=Path, default=VIBE, help="the books dev set's folder")
    parser.add_argument(
        "--home", type=Path, default=Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedscope-bench-quality"
    )
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE",
        help="a tuned parameter other than its default, e.g. -p train_layers=0 (a version of its own)",
    )  # fmt: skip
    args = parser.parse_args()
    overrides = {k: json.loads(v) if v[:1].isdigit() else v for k, v in (p.split("=", 1) for p in args.param)}
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"machine_now": cpu_facts(), "training": {}}
    if args.only in (None, "scifact"):
        got, record = scifact()
        rows += got
        extra["training"]["scifact"] = record
    if args.only in (None, "books"):
        got, record = books(args.devset, args.home, args.cache, overrides)
        rows += got
        extra["training"]["books"] = record
    for name, record in extra["training"].items():
        print(
            f"{name}: {record['items']} items, pairs {record['pairs']}, {record['steps']} steps, "
            f"train {record['seconds']} s wall / {record['cpu_seconds']} CPU s on {record['torch_threads']} "
            f"threads, encode {record['encode_seconds']} s"
        )
    print("now:", extra["machine_now"])
    report("tune", "tuned vs base MiniLM (p: paired randomisation test, 10,000 resamples)", rows, extra)


if __name__ == "__main__":
    main()
