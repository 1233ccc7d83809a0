"""Long known-item requests ("which book was it?") on the books: how the systems and two simple
long-query treatments rank the one book a reader means.

    python bench/bench_long_queries.py [--cache DIR]   # the table; writes bench/results/long_queries.json
    python bench/bench_long_queries.py --sample        # only print the stratified sample of target books
    python bench/bench_long_queries.py --check         # only check the requests against the writing rules
    python bench/bench_long_queries.py --pool FILE     # only write a judging sheet of unjudged pooled books

The requests and judgements are bench/data/vibe/long-queries.jsonl and long-qrels.tsv (how they were
made: bench/data/vibe/LONG.md). `--sample` reproduces how their target books were drawn.

Systems: bm25, tfidf, minilm and hybrid exactly as `embedscope evaluate FOLDER -e
bm25,minilm,hybrid,tfidf` runs them (`evaluate_beir`, the product's search path), over a BEIR folder of
the books written under `--cache` (the same collection `bench_hybrid.py` uses: MiniLM encodes the
books once). Then two treatments that need no change to embedscope: split the request into
sentences, search each sentence with minilm (or bm25) through the same pipeline, 1000 deep, and
fuse the sentence runs per request by the max or the mean of the raw scores, or by RRF (k=60).
Metrics: the harness's (nDCG@10, Recall@100, MRR@10 with any relevant book), plus, for the known
item, RR@10 and Success@10 counting only books graded 2 (ir-measures, the harness's library);
each row against minilm with the harness's paired randomisation test (`compare_runs`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine  # noqa: E402
from devset import books_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOKS = ROOT.parent / "shared" / "data" / "books" / "books.csv"
LONG = ROOT / "bench" / "data" / "vibe"
Run = dict[str, dict[str, float]]  # query id -> {book: score}, as embedscope.evaluate.ir
SYSTEMS = ("bm25", "tfidf", "minilm", "hybrid")
SENTENCE_DEPTH = 1000  # books per sentence before the sentence runs are fused

# --- the sample of target books ---------------------------------------------------------------------
SEED = 20
MIN_DESCRIPTION = 150  # characters: a shorter description leaves nothing to remember
#: stratum -> books drawn; assigned in this order, the first rule that matches wins
STRATA = {
    "juvenile fiction": 7,
    "mystery/crime": 6,
    "fantasy/sci-fi": 6,
    "biography/history": 6,
    "fiction": 10,
    "other non-fiction": 5,
}
_FICTION = r"fiction|stories|comics"
_MYSTERY_WORDS = r"\b(?:murder\w*|detective|sleuth|homicide|serial killer|inspector)\b"
_FANTASY_WORDS = (
    r"\b(?:wizard\w*|magic\w*|dragon\w*|sorcer\w*|elves|elf|planet\w*|alien\w*|starship|galaxy|"
    r"galactic|time travel\w*|robot\w*|dystopi\w*)\b"
)
#: categories of plays, poems, anthologies and study guides: nobody recalls them by a plot
_NOT_KNOWN_ITEM = r"literary criticism|drama|poetry|literary collections|language arts|study aids"


def stratum(categories: str, description: str) -> str | None:
    """The stratum of one book, from its categories field (and, for plain 'Fiction', from genre
    words in its description, since the catalogue files most mysteries and fantasy as 'Fiction')."""
    c, d = categories.lower(), description.lower()
    fiction = bool(re.search(_FICTION, c)) and "nonfiction" not in c
    if re.search(r"juvenile fiction|children|young adult", c):
        return "juvenile fiction"
    if re.search(r"myster|detective|crime fiction|thriller|suspense", c) or (
        fiction and re.search(_MYSTERY_WORDS, d)
    ):
        return "mystery/crime"
    if re.search(r"fantasy|science fiction|alternative histor", c) or (
        fiction and re.search(_FANTASY_WORDS, d)
    ):
        return "fantasy/sci-fi"
    if re.search(r"biography|history", c):
        return "biography/history"
    if fiction:
        return "fiction"
    if not c or re.search(_NOT_KNOWN_ITEM, c):
        return None
    return "other non-fiction"


def sample_targets(books: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
    """Draw STRATA[s] books from each stratum: numpy default_rng(seed), one permutation of each
    stratum's eligible rows (description >= MIN_DESCRIPTION characters, in books.csv order), taken
    in order, skipping a book whose work (lower-cased title + first author) was already drawn."""
    rng = np.random.default_rng(seed)
    desc = books["description"].fillna("")
    strata = [
        stratum(str(c) if isinstance(c, str) else "", d)
        for c, d in zip(books["categories"], desc, strict=True)
    ]
    eligible = books.assign(stratum=strata)[(desc.str.len() >= MIN_DESCRIPTION).to_numpy()]
    picked, works = [], set()
    for name, n in STRATA.items():
        rows = eligible[eligible["stratum"] == name]
        taken = 0
        for i in rng.permutation(len(rows)):
            row = rows.iloc[i]
            work = (str(row["title"]).lower(), str(row["authors"]).split(";")[0].lower())
            if work in works:
                continue
            works.add(work)
            picked.append(row)
            taken += 1
            if taken == n:
                break
    return pd.DataFrame(picked)


def read_requests() -> list[dict]:
    return [json.loads(line) for line in (LONG / "long-queries.jsonl").read_text().splitlines() if line]


def content_words(text: str) -> list[str]:
    """Porter stems of the words that are not English stop words (scikit-learn's list)."""
    import Stemmer
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stem = Stemmer.Stemmer("porter").stemWord
    words = re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))
    return [stem(w) for w in words if w.strip("'") and w not in ENGLISH_STOP_WORDS]


def check_requests(books: pd.DataFrame) -> list[str]:
    """The writing rules a machine can check (LONG.md): 50-200 words; no run of more than 3
    consecutive content words (stemmed) shared with the target's title or description; no author
    surname or given name (whole words of 4+ letters). Returns the violations."""
    by_isbn = books.set_index("isbn13")
    problems = []
    for q in read_requests():
        book, text = by_isbn.loc[q["metadata"]["target"]], q["text"]
        n = len(text.split())
        if not 50 <= n <= 200:
            problems.append(f"{q['_id']}: {n} words")
        source = content_words(str(book["title"])) + ["|"] + content_words(str(book["description"]))
        grams = {tuple(source[i : i + 4]) for i in range(len(source) - 3)}
        words = content_words(text)
        shared = [
            " ".join(words[i : i + 4]) for i in range(len(words) - 3) if tuple(words[i : i + 4]) in grams
        ]
        if shared:
            problems.append(f"{q['_id']}: shares the run(s) {shared} with the title or description")
        names = {p for a in re.split(r"[;,]", str(book["authors"])) for p in a.split() if len(p) > 3}
        named = [p for p in names if re.search(rf"\b{re.escape(p.lower())}\b", text.lower())]
        if named:
            problems.append(f"{q['_id']}: names the author ({', '.join(named)})")
    return problems


# --- the BEIR folder and the runs ---------------------------------------------------------------------
def long_folder(cache: Path, targets_only: bool = False) -> Path:
    """The books with the long requests as a BEIR folder. Named books-vibe (inside cache/long) so
    the harness stores it as the collection beir-books-vibe, the one bench_hybrid.py's vibe folder
    uses: same corpus, so its vectors are shared. `targets_only`: judgements = each request's target
    (graded 2), for pooling before long-qrels.tsv exists."""
    requests = read_requests()
    queries = "".join(json.dumps({"_id": q["_id"], "text": q["text"]}) + "\n" for q in requests)
    path = LONG / "long-qrels.tsv"
    if targets_only or not path.exists():
        qrels = "query-id\tcorpus-id\tscore\n" + "".join(
            f"{q['_id']}\t{q['metadata']['target']}\t2\n" for q in requests
        )
    else:
        qrels = path.read_text()
    return books_folder(cache / "long" / "books-vibe", queries, qrels)


def sentences(text: str) -> list[str]:
    """A request's sentences. A regular expression, not a sentence-splitting library: the requests
    are plain prose with no abbreviations that end in a full stop, and none is installed here."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])", text) if p.strip()]
    return parts or [text]


def fuse_sentence_runs(runs: Sequence[Any], how: str) -> tuple[list[str], np.ndarray]:
    """One ranking from the sentence runs of one request (each a fusion.Run, best first).

    'rrf' is the pipeline's own fusion (equal weights). 'max' and 'mean' combine raw scores, which
    no fusion method does (they normalise per run). A book a sentence run does not hold gets that
    run's last score when the run was cut at SENTENCE_DEPTH (the tightest bound on its true score:
    the pipeline's missing="cutoff" rule), else the run's floor (a BM25 run shorter than the depth
    holds every book sharing a term; the others score 0)."""
    from embedscope.search.fusion import fuse

    runs = [r for r in runs if len(r)]
    if how == "rrf":
        return fuse(runs, [1.0] * len(runs), "rrf", {"k": 60})
    union = list(dict.fromkeys(d for r in runs for d in r.ids))
    table = np.empty((len(runs), len(union)))
    for i, r in enumerate(runs):
        mine = dict(zip(r.ids, np.asarray(r.scores, dtype=np.float64).tolist(), strict=True))
        cut = len(r) >= SENTENCE_DEPTH or r.floor is None
        missing = float(r.scores[-1]) if cut else float(r.floor)
        table[i] = [mine.get(d, missing) for d in union]
    agg: Callable[..., np.ndarray] = np.max if how == "max" else np.mean
    scores = agg(table, axis=0)
    order = sorted(range(len(union)), key=lambda j: (-scores[j], union[j]))
    return [union[j] for j in order], scores[order]


def sentence_runs(col: Any, requests: dict[str, str], using: str, k: int = 100) -> dict[str, Run]:
    """Split each request into sentences, search every sentence through the collection's search
    pipeline (one batch, SENTENCE_DEPTH deep), fuse per request by max, mean and rrf."""
    from embedscope.search.fusion import Run as FusionRun
    from embedscope.search.fusion import score_floor

    split = {q: sentences(t) for q, t in requests.items()}
    flat = [s for q in requests for s in split[q]]
    results = col.pipeline.search_many(flat, SENTENCE_DEPTH, using=using, strict=False)
    info = col.load_version(using).info
    floor = score_floor(bool(info.sparse), info.metric)
    out: dict[str, Run] = {how: {} for how in ("max", "mean", "rrf")}
    i = 0
    for q in requests:
        mine = results[i : i + len(split[q])]
        i += len(split[q])
        runs = [FusionRun([h.id for h in r.hits], np.array([h.score for h in r.hits]), floor) for r in mine]
        for how in out:
            ids, scores = fuse_sentence_runs(runs, how)
            out[how][q] = dict(zip(ids[:k], scores[:k].tolist(), strict=True))
    return out


def all_runs(cache: Path, targets_only: bool = False) -> tuple[Any, dict[str, Run], dict[str, str]]:
    """(the harness's EvalReport, label -> run of every system and treatment, the requests)."""
    from embedscope.evaluate.ir import evaluate_beir

    folder = long_folder(cache, targets_only)
    report = evaluate_beir(folder, list(SYSTEMS), root=cache / "collections")
    runs = {r.encoder: r.run for r in report.results}
    from embedscope.collection import Collection

    col = Collection.open(report.collection, cache / "collections")
    requests = {q["_id"]: q["text"] for q in read_requests()}
    for part in ("minilm", "bm25"):
        for how, run in sentence_runs(col, requests, part).items():
            runs[f"{part}, sentences, {how}"] = run
    # the hybrid recipe's own fusion over sentence-split parts (no weight tuned: its defaults)
    for label, dense in (
        ("hybrid, bm25 part by sentences (mean)", "minilm"),
        ("hybrid, both parts by sentences (mean)", "minilm, sentences, mean"),
    ):
        runs[label] = fuse_default(runs["bm25, sentences, mean"], runs[dense])
    return report, runs, requests


def fuse_default(sparse: Run, dense: Run, k: int = 100) -> Run:
    """Two runs fused as the default hybrid recipe fuses its parts (recipe.DEFAULT_HYBRID)."""
    from embedscope.search.fusion import Run as FusionRun
    from embedscope.search.fusion import fuse
    from embedscope.search.recipe import DEFAULT_FUSION, DEFAULT_PARAMS

    out: Run = {}
    for q in sparse.keys() | dense.keys():
        parts = [
            FusionRun(list(r.get(q, {})), np.array(list(r.get(q, {}).values()), dtype=np.float64), floor)
            for r, floor in ((sparse, 0.0), (dense, -1.0))
        ]
        ids, scores = fuse(parts, [1.0, 1.0], DEFAULT_FUSION, DEFAULT_PARAMS)
        out[q] = dict(zip(ids[:k], scores[:k].tolist(), strict=True))
    return out


# --- judging ---------------------------------------------------------------------------------------------
def catalogue_browse(books: pd.DataFrame, target: str) -> set[str]:
    """Other editions and the author's other books, found by the catalogue's fields, not by any
    system: every book sharing an author name with the target (normalised as the search path's
    edition collapse does), and every book whose normalised main title (before ':' or '(')
    contains the target's or is contained in it."""
    from embedscope.search.rerank import normalise_names, normalise_title

    def main_title(t: str) -> str:
        return normalise_title(re.split(r"[:(]", str(t))[0])

    row = books.loc[books["isbn13"] == target].iloc[0]
    names = normalise_names(row["authors"])
    title = main_title(row["title"])
    found = set()
    for r in books.itertuples():
        other = main_title(r.title)
        same_title = bool(title and other) and (f" {title} " in f" {other} " or f" {other} " in f" {title} ")
        if same_title or names & normalise_names(r.authors):
            found.add(r.isbn13)
    return found


def write_pool(cache: Path, out: Path, depth: int = 10) -> int:
    """A judging sheet: per request, the top `depth` of every system and treatment plus the
    catalogue browse, without saying who found what, in isbn order, leaving out books already in
    long-qrels.tsv. One JSON line per (request, book) with the fields a grader reads."""
    from embedscope.sources import iter_qrels

    books = pd.read_csv(BOOKS, dtype={"isbn13": str})
    by_isbn = books.set_index("isbn13")
    path = LONG / "long-qrels.tsv"
    judged = {(q, d) for q, d, _ in iter_qrels(path)} if path.exists() else set()
    _, runs, requests = all_runs(cache, targets_only=True)
    targets = {q["_id"]: q["metadata"]["target"] for q in read_requests()}
    lines = []
    for q, text in requests.items():
        pooled = {d for run in runs.values() for d in list(run.get(q, {}))[:depth]}
        pooled |= catalogue_browse(books, targets[q])
        for d in sorted(pooled):
            if (q, d) in judged:
                continue
            b = by_isbn.loc[d]
            fields = {
                k: str(b[k]) for k in ("title", "authors", "categories", "published_year", "description")
            }
            lines.append(json.dumps({"query-id": q, "query": text, "corpus-id": d, **fields}))
    out.write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


# --- measuring -------------------------------------------------------------------------------------------
def known_item_scores(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, dict[str, float]]:
    """RR@10 and Success@10 counting only books graded 2 (the book meant, or an edition of it)."""
    import ir_measures
    from ir_measures import RR, Success

    measures = {"RR@10 (grade 2)": RR(rel=2) @ 10, "Success@10 (grade 2)": Success(rel=2) @ 10}
    names = {str(m): n for n, m in measures.items()}
    out = {n: dict.fromkeys(qrels, 0.0) for n in measures}
    answered = {q: d for q, d in run.items() if q in qrels and d}
    for m in ir_measures.iter_calc(list(measures.values()), qrels, answered):
        out[names[str(m.measure)]][m.query_id] = float(m.value)
    return out


def measure(cache: Path) -> dict[str, Any]:
    from embedscope.evaluate.ir import compare_runs, per_query_scores, read_qrels

    t0 = time.perf_counter()
    report, runs, requests = all_runs(cache)
    qrels = read_qrels(LONG / "long-qrels.tsv")
    rows = {}
    for label, run in runs.items():
        per = per_query_scores(qrels, run) | known_item_scores(qrels, run)
        rows[label] = {m: round(float(np.mean(list(v.values()))), 4) for m, v in per.items()}
        rows[label]["per_query"] = {m: {q: round(x, 4) for q, x in v.items()} for m, v in per.items()}

    def tests(base: str) -> dict[str, Any]:
        return {
            label: {
                r["metric"]: {k: r[k] for k in ("diff", "wins", "ties", "losses", "p_rand")}
                for r in compare_runs(qrels, runs[base], run, test="randomisation")["metrics"]
            }
            for label, run in runs.items()
            if label != base
        }

    words = [len(t.split()) for t in requests.values()]
    return {
        "requests": len(requests),
        "words": {"min": min(words), "median": float(np.median(words)), "max": max(words)},
        "sentences_per_request": float(np.mean([len(sentences(t)) for t in requests.values()])),
        "judgements": sum(len(v) for v in qrels.values()),
        "graded_2": sum(1 for v in qrels.values() for g in v.values() if g == 2),
        "graded_1": sum(1 for v in qrels.values() for g in v.values() if g == 1),
        "rows": rows,
        "vs_minilm": tests("minilm"),
        "vs_hybrid": tests("hybrid"),
        "top10": {label: {q: list(run.get(q, {}))[:10] for q in requests} for label, run in runs.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }


COLUMNS = ("nDCG@10", "Recall@100", "MRR@10", "RR@10 (grade 2)", "Success@10 (grade 2)")


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"long known-item requests ({res['requests']} requests, {res['words']['min']}-"
        f"{res['words']['max']} words; {res['judgements']} judgements); p: paired randomisation "
        "test"
    )
    t.add_column("system", justify="left")
    for c in COLUMNS:
        t.add_column(c, justify="right")
    for base in ("minilm", "hybrid"):
        t.add_column(f"nDCG@10 vs {base}: w/t/l, p", justify="right")
    for label, row in res["rows"].items():
        cells = []
        for base in ("minilm", "hybrid"):
            cmp = res[f"vs_{base}"].get(label, {}).get("nDCG@10")
            cells.append(f"{cmp['wins']}/{cmp['ties']}/{cmp['losses']}, p={cmp['p_rand']:.3f}" if cmp else "")
        t.add_row(label, *(f"{row[c]:.4f}" for c in COLUMNS), *cells)
    Console(width=max(Console().width, 170)).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedscope-bench-hybrid")
    ap.add_argument("--sample", action="store_true", help="only print the sample of target books")
    ap.add_argument("--check", action="store_true", help="only check the requests against the writing rules")
    ap.add_argument("--pool", type=Path, help="only write a judging sheet of unjudged pooled books")
    args = ap.parse_args()
    books = pd.read_csv(BOOKS, dtype={"isbn13": str})
    if args.sample:
        for r in sample_targets(books).itertuples():
            print(f"{r.stratum}\t{r.isbn13}\t{r.title}\t{r.authors}\t{r.categories}\t{r.published_year}")
        return
    if args.check:
        problems = check_requests(books)
        print("\n".join(problems) or f"{len(read_requests())} requests: all rules hold")
        raise SystemExit(1 if problems else 0)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.pool:
        print(f"wrote {write_pool(args.cache, args.pool)} (request, book) pairs to judge to {args.pool}")
        return
    load_before = os.getloadavg()
    res = measure(args.cache)
    print_table(res)
    out = {
        "benchmark": "long_queries",
        "command": "python bench/bench_long_queries.py",
        "machine": {
            **machine(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "sentence_depth": SENTENCE_DEPTH,
        **res,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "long_queries.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
