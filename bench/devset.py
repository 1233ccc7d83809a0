"""The books development set (bench/data/vibe): queries of several kinds with graded judgements,
as BEIR folders `embedscope evaluate` reads, its pool for judging, and metrics per query kind.

    python bench/devset.py folder [--cache DIR]          # write the BEIR folders (plain and fields)
    python bench/devset.py pool SHEET [--depth 10]       # judging sheet: pooled books not yet judged
    python bench/devset.py kinds EVAL_DIR [EVAL_DIR ...] [--baseline RUN]  # per-kind metrics of evaluate runs

The set is `queries.jsonl` + `qrels.tsv`, plus `long-queries.jsonl` + `long-qrels.tsv` when present
(same format); each query's kind is its `metadata.kind` (KINDS). Two folders are written from
books.csv (the books are never copied into the repository):

- `books-vibe`: corpus text = title + description, what `evaluate` has always read;
- `books-vibe-fields`: text = "by AUTHORS. CATEGORIES. DESCRIPTION" after the title, a field-aware
  document (genre words live in `categories`, names in `authors`).

`embedscope evaluate FOLDER -e bm25,minilm,hybrid -o DIR` scores either; `kinds DIR` then reads
DIR/runs/*.trec and reports nDCG@10 and Recall@100 per kind (metrics.json has only the mean over
all queries), writing bench/results/devset.json.

The pool (bench/data/vibe/README.md) is the union, per query, of the top `depth` books of
POOL_SYSTEMS (through the product's search path, editions collapsed as `search` does), the books
matched by the query's catalogue browses in `browse.jsonl`, and every other edition of a pooled work.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, SHARED_DATA, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOKS = SHARED_DATA / "books" / "books.csv"
DEVSET = ROOT / "bench" / "data" / "vibe"
#: query kinds: short vibe lists, natural one-sentence requests, long known-item requests
KINDS = ("vibe", "request", "long")
#: (queries, qrels, kind when a query states none) per file pair of the set; a pair whose queries
#: file is absent is skipped
FILES = (("queries.jsonl", "qrels.tsv", None), ("long-queries.jsonl", "long-qrels.tsv", "long"))
BROWSE = "browse.jsonl"
#: browse fields: books.csv columns a browse may match, by regular expression (case-insensitive)
BROWSE_FIELDS = ("title", "authors", "categories", "description")
BROWSE_CAP = 40  # books per browse, most rated first: a browse that matches more is too broad
FOLDERS = {"books-vibe": False, "books-vibe-fields": True}  # folder name -> field-aware text


# --- the set ------------------------------------------------------------------------------------------
def load_queries(folder: Path = DEVSET) -> dict[str, dict[str, str]]:
    """query id -> {"text", "kind"} over every queries file of the set; unknown kinds and repeated
    ids are errors (a later evaluation reports per kind, and a repeated id would merge two queries)."""
    from embedscope.sources import read_jsonl

    out: dict[str, dict[str, str]] = {}
    for qfile, _, default in FILES:
        path = folder / qfile
        if not path.exists():
            continue
        for rec in read_jsonl(path):
            qid, kind = str(rec["_id"]), str((rec.get("metadata") or {}).get("kind", default or ""))
            if kind not in KINDS:
                raise ValueError(f"{path.name}: query {qid} has kind {kind!r}; valid: {', '.join(KINDS)}")
            if qid in out:
                raise ValueError(f"{path.name}: query id {qid} appears twice in the set")
            out[qid] = {"text": str(rec["text"]), "kind": kind}
    return out


def load_qrels(folder: Path = DEVSET) -> list[tuple[str, str, int]]:
    """(query id, isbn13, grade) over every judgements file of the set, in file order."""
    from embedscope.sources import iter_qrels

    return [
        j
        for qfile, rfile, _ in FILES
        if (folder / qfile).exists() and (folder / rfile).exists()
        for j in iter_qrels(folder / rfile, columns=(3,), sep="\t")
    ]


def books_frame() -> Any:
    import pandas as pd

    return pd.read_csv(BOOKS, dtype={"isbn13": str})


def document(row: Any, fields: bool) -> dict[str, str]:
    """A BEIR corpus record of one books.csv row; `evaluate` embeds title + " " + text."""
    desc = "" if _missing(row.description) else str(row.description)
    if not fields:
        return {"_id": row.isbn13, "title": str(row.title), "text": desc}
    authors = "" if _missing(row.authors) else "by " + str(row.authors).replace(";", ", ")
    cats = "" if _missing(row.categories) else str(row.categories)
    return {
        "_id": row.isbn13,
        "title": f"{row.title}.",
        "text": ". ".join(p for p in (authors, cats, desc) if p),
    }


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def write_folder(cache: Path, name: str = "books-vibe") -> Path:
    """The set as a BEIR folder under `cache` (corpus from books.csv, queries with their metadata,
    all judgements as qrels/test.tsv); files are rewritten only when they change."""
    queries = load_queries()
    return books_folder(
        cache / name,
        "".join(
            json.dumps({"_id": q, "text": v["text"], "metadata": {"kind": v["kind"]}}) + "\n"
            for q, v in queries.items()
        ),
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in load_qrels()),
        fields=FOLDERS[name],
    )


def books_folder(folder: Path, queries: str, qrels: str, *, fields: bool = False) -> Path:
    """A BEIR folder of the books (corpus.jsonl from books.csv, `document` per row) with the given
    queries.jsonl and qrels/test.tsv texts. The harness names its collection after the folder
    (beir-<folder name>), so folders named alike share one collection and its vectors."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(document(r, fields)) for r in books_frame().itertuples()]
    _write_if_changed(folder / "corpus.jsonl", "\n".join(lines) + "\n")
    _write_if_changed(folder / "queries.jsonl", queries)
    _write_if_changed(folder / "qrels" / "test.tsv", qrels)
    return folder


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


# --- per-kind metrics ---------------------------------------------------------------------------------
def per_kind(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, Any]:
    """kind -> {"queries": n, metric: mean, "judged@10"} (and "all"), from ir-measures' per-query
    scores."""
    import numpy as np

    from embedscope.evaluate.ir import per_query_scores

    kinds = {q: v["kind"] for q, v in load_queries().items()}
    per = per_query_scores(qrels, run)
    # the share of each top 10 that is judged: unjudged books count as not relevant, so a system
    # whose top 10 is often unjudged (one that was not pooled) is underrated by this set
    judged = {
        q: np.mean([d in qrels[q] for d in sorted(run.get(q, {}), key=lambda d: -run[q][d])[:10]] or [0.0])
        for q in qrels
    }
    out: dict[str, Any] = {}
    for kind in (*KINDS, "all"):
        qs = [q for q in qrels if kind == "all" or kinds.get(q) == kind]
        if qs:
            out[kind] = {"queries": len(qs)} | {
                m: round(float(np.mean([per[m][q] for q in qs])), 4) for m in ("nDCG@10", "Recall@100")
            }
            out[kind]["judged@10"] = round(float(np.mean([judged[q] for q in qs])), 3)
    return out


def kinds_report(eval_dirs: Iterable[Path], baseline: str | None = None) -> dict[str, Any]:
    """Per-kind metrics of every run under each `embedscope evaluate -o` folder, as a table; with
    `baseline` (a run name as the table shows it, e.g. eval-plain/minilm), each other run's nDCG@10
    against it per kind: difference, wins/ties/losses and the paired randomisation test's p."""
    from rich.console import Console
    from rich.table import Table

    from embedscope.evaluate.ir import compare_runs, read_trec_run

    qrels: dict[str, dict[str, int]] = {}
    for q, d, s in load_qrels():
        qrels.setdefault(q, {})[d] = s
    runs = {
        f"{Path(d).name}/{path.stem}": read_trec_run(path)
        for d in eval_dirs
        for path in sorted(Path(d).glob("runs/*.trec"))
    }
    if not runs:
        raise SystemExit("no runs/*.trec under the folders given; run `embedscope evaluate ... -o DIR` first")
    rows = {name: per_kind(qrels, run) for name, run in runs.items()}
    kinds = [k for k in (*KINDS, "all") if any(k in r for r in rows.values())]
    console = Console(width=max(Console().width, 140))
    table = Table(title="books dev set: nDCG@10 / Recall@100 (judged share of the top 10) per query kind")
    table.add_column("run")
    for k in kinds:
        n = next(r[k]["queries"] for r in rows.values() if k in r)
        table.add_column(f"{k} ({n})", justify="right")
    for name, r in rows.items():
        table.add_row(
            name,
            *[
                f"{r[k]['nDCG@10']:.4f} / {r[k]['Recall@100']:.4f} ({r[k]['judged@10']:.2f})"
                if k in r
                else "-"
                for k in kinds
            ],
        )
    console.print(table)
    tests: dict[str, Any] = {}
    if baseline:
        if baseline not in runs:
            raise SystemExit(f"baseline {baseline!r} is not one of the runs: {', '.join(runs)}")
        kind_of = {q: v["kind"] for q, v in load_queries().items()}
        t = Table(title=f"nDCG@10 against {baseline}: difference, win/tie/loss, p (paired randomisation)")
        t.add_column("run")
        for k in kinds:
            t.add_column(k, justify="right")
        for name, run in runs.items():
            if name == baseline:
                continue
            tests[name] = {}
            for k in kinds:
                sub = {q: j for q, j in qrels.items() if k == "all" or kind_of.get(q) == k}
                m = compare_runs(sub, runs[baseline], run, test="randomisation")["metrics"][0]
                tests[name][k] = {key: m[key] for key in ("diff", "wins", "ties", "losses", "p_rand")}
            t.add_row(
                name,
                *[
                    f"{v['diff']:+.4f} {v['wins']}/{v['ties']}/{v['losses']} p={v['p_rand']:.3f}"
                    for v in tests[name].values()
                ],
            )
        console.print(t)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": "devset", "machine": machine(), "runs": rows, "baseline": baseline, "tests": tests}
    (RESULTS / "devset.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {RESULTS / 'devset.json'}")
    return out


# --- pooling ------------------------------------------------------------------------------------------
#: pooled systems: label -> (folder, encoder or fusion recipe, parameters). Recipes fuse the folder's
#: bm25 and minilm versions; "hybrid" is DEFAULT_HYBRID, what `evaluate -e hybrid` scores.
POOL_SYSTEMS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "bm25": ("books-vibe", "bm25", None),
    "bm25 (no stemming)": ("books-vibe", "bm25", {"stemmer": None}),
    "tfidf": ("books-vibe", "tfidf", None),
    "minilm": ("books-vibe", "minilm", None),
    "hybrid": ("books-vibe", "hybrid", None),
    "hybrid rrf": ("books-vibe", "hybrid", {"fusion": "rrf", "params": {"k": 60}}),
    "fields bm25": ("books-vibe-fields", "bm25", None),
    "fields minilm": ("books-vibe-fields", "minilm", None),
    "fields hybrid": ("books-vibe-fields", "hybrid", None),
}


def system_runs(cache: Path, root: Path | None, depth: int) -> dict[str, dict[str, list[str]]]:
    """label -> {query id: top `depth` isbn13s} for every POOL_SYSTEMS entry, every query of the set
    (judged or not), through the product's search path. Collections `beir-<folder>` under `root`
    (default $EMBEDSCOPE_HOME) are shared with `embedscope evaluate`, so neither encodes twice."""
    from embedscope.evaluate.ir import _embed, corpus_collection, retrieve
    from embedscope.search.pipeline import MemoEncoder, SearchPipeline
    from embedscope.search.recipe import DEFAULT_HYBRID
    from embedscope.sources import BeirDataset, read_jsonl

    queries = {q: v["text"] for q, v in load_queries().items()}
    out: dict[str, dict[str, list[str]]] = {}
    for fname in FOLDERS:
        systems = {k: v for k, v in POOL_SYSTEMS.items() if v[0] == fname}
        folder = write_folder(cache, fname)
        corpus = {
            str(r["_id"]): {"title": r["title"], "text": r["text"]}
            for r in read_jsonl(folder / "corpus.jsonl")
        }
        ds = BeirDataset(corpus, queries, {}, [])
        col, _ = corpus_collection(ds, f"beir-{fname}", root)
        pipe = SearchPipeline(col, encode=MemoEncoder())
        for label, (_, enc, params) in systems.items():
            if enc == "hybrid":
                col.create_recipe(
                    "pool-hybrid", ["bm25", "minilm"], **(DEFAULT_HYBRID | (params or {})), replace=True
                )
                using = "pool-hybrid"
            else:
                using = _embed(col, enc, None, params)[0].name
            run, _, _ = retrieve(col, using, queries, depth, None, pipe)
            out[label] = {q: list(docs)[:depth] for q, docs in run.items()}
            print(f"  pooled {label}", flush=True)
    return out


def browse_hits(frame: Any, where: dict[str, Any], limit: int = BROWSE_CAP) -> list[str]:
    """isbn13s of the books whose every named field matches its regular expression, or each of a list
    of them (case-insensitive; "max_pages": a number caps num_pages), the `limit` most rated first."""
    unknown = set(where) - {*BROWSE_FIELDS, "max_pages"}
    if unknown:
        raise ValueError(
            f"browse field(s) {sorted(unknown)} unknown; valid: {', '.join(BROWSE_FIELDS)}, max_pages"
        )
    rows = frame
    if "max_pages" in where:
        rows = rows[rows.num_pages.fillna(0).astype(float) <= float(where["max_pages"])]
    # short fields first, each pattern only over the rows still in: descriptions are the slow part
    for field in sorted(set(where) & set(BROWSE_FIELDS), key=BROWSE_FIELDS.index):
        patterns = where[field]
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            with warnings.catch_warnings():  # groups in a pattern are only alternatives here
                warnings.simplefilter("ignore", UserWarning)
                rows = rows[rows[field].fillna("").str.contains(pattern, case=False, regex=True)]
    hits = rows.sort_values("ratings_count", ascending=False, na_position="last")
    return list(hits.isbn13[:limit])


def load_browses(folder: Path = DEVSET) -> list[dict[str, Any]]:
    """The recorded catalogue browses: {"query-id", "where": {field: regex or [regex, ...], ...}} per
    line, with an optional "limit" (default BROWSE_CAP) where a browse has more relevant books."""
    from embedscope.sources import read_jsonl

    path = folder / BROWSE
    return read_jsonl(path) if path.exists() else []


def work_key(title: Any, authors: Any) -> str:
    """Editions of one work share it: the title before any subtitle or bracket, letters only, and the
    first author's last name (so "Treasure Island (Classics)" meets "Treasure Island")."""
    t = re.split(r"[:(\[]", str(title))[0]
    t = re.sub(r"[^a-z0-9]+", " ", t.lower()).strip()
    t = re.sub(r"^(the|a|an) ", "", t)
    first = "" if _missing(authors) else str(authors).split(";")[0].split()[-1:]
    return f"{t}|{(first[0] if first else '').lower()}"


def pool(cache: Path, root: Path | None, depth: int = 10) -> dict[str, dict[str, list[str]]]:
    """query id -> {isbn13: [sources]}: systems' top `depth`, browses, then other editions."""
    frame = books_frame()
    pooled: dict[str, dict[str, list[str]]] = {q: {} for q in load_queries()}
    for label, run in system_runs(cache, root, depth).items():
        for q, docs in run.items():
            for d in docs:
                pooled[q].setdefault(d, []).append(label)
    for b in load_browses():
        for d in browse_hits(frame, b["where"], int(b.get("limit", BROWSE_CAP))):
            pooled[b["query-id"]].setdefault(d, []).append("browse")
    keys = dict(
        zip(
            frame.isbn13,
            (work_key(t, a) for t, a in zip(frame.title, frame.authors, strict=True)),
            strict=True,
        )
    )
    by_work: dict[str, list[str]] = {}
    for d, k in keys.items():
        by_work.setdefault(k, []).append(d)
    for docs in pooled.values():
        for d in list(docs):
            for e in by_work[keys[d]]:
                docs.setdefault(e, ["edition"])
    return pooled


def write_sheet(cache: Path, root: Path | None, out: Path, depth: int = 10) -> int:
    """A judging sheet of pooled books not yet judged, one JSON line per (query, book), in isbn order
    and without the sources (so the grader cannot favour a system); returns the number of lines.
    The sources of every pooled book go to a separate file, OUT.sources.json, read after grading."""
    frame = books_frame().set_index("isbn13")
    queries = load_queries()
    judged = {(q, d) for q, d, _ in load_qrels()}
    lines = []
    pooled = pool(cache, root, depth)
    out.with_suffix(".sources.json").write_text(json.dumps(pooled))
    for q, docs in pooled.items():
        for d in sorted(set(docs) - {dd for qq, dd in judged if qq == q}):
            b = frame.loc[d]
            fields = {
                k: "" if _missing(b[k]) else str(b[k])
                for k in (*BROWSE_FIELDS, "published_year", "num_pages")
            }
            lines.append(json.dumps({"query-id": q, "query": queries[q]["text"], "corpus-id": d, **fields}))
    out.write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedscope-devset")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("folder", help="write the BEIR folders")
    p = sub.add_parser("pool", help="write a judging sheet of unjudged pooled books")
    p.add_argument("sheet", type=Path)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--root", type=Path, help="collections folder (default $EMBEDSCOPE_HOME)")
    k = sub.add_parser("kinds", help="per-kind metrics of `embedscope evaluate -o DIR` runs")
    k.add_argument("eval_dirs", type=Path, nargs="+")
    k.add_argument("--baseline", help="run to test the others against, e.g. eval-plain/minilm")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.cmd == "folder":
        for name in FOLDERS:
            print(f"wrote {write_folder(args.cache, name)}")
        print(
            "e.g. embedscope evaluate FOLDER -e bm25,minilm,hybrid -o DIR; python bench/devset.py kinds DIR"
        )
    elif args.cmd == "pool":
        n = write_sheet(args.cache, args.root, args.sheet, args.depth)
        print(f"wrote {n} (query, book) pairs to judge to {args.sheet}")
    else:
        kinds_report(args.eval_dirs, args.baseline)


if __name__ == "__main__":
    main()
