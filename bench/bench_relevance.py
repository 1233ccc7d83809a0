"""Where the relevance scale's anchors come from (embedscope/search/relevance.py): MiniLM cosines of
real queries' best hits against made-up and off-topic queries, on the books and on SciFact.

    python bench/bench_relevance.py [--books books] [--scifact beir-scifact]

Reads the collections' `minilm` versions from $EMBEDSCOPE_HOME (`embedscope demo` builds `books`;
`embedscope evaluate ../shared/data/beir/scifact -e minilm` builds `beir-scifact`); a collection
that is absent is skipped. Queries: the books development set (bench/data/vibe, every kind), the
SciFact test queries, and NONSENSE below. Per collection and query set it reports the best hit's
cosine (5th percentile, median, maximum), the share of queries flagged "no good match" (best hit
below relevance GOOD) and, on the books, the mean relevance of judged books by grade. Quality, not
speed: the numbers do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DATA, report  # noqa: E402

from embedscope import Collection  # noqa: E402
from embedscope.errors import NotFoundError  # noqa: E402
from embedscope.search import relevance  # noqa: E402

VIBE = Path(__file__).resolve().parent / "data" / "vibe"
#: made-up words, keyboard mashes, and questions no book or abstract answers
NONSENSE = [
    "xyzzy plugh",
    "asdf qwerty",
    "zxcv bnm poiu",
    "blorf snazzle",
    "kjhgf lkjh",
    "qqq",
    "foo bar baz",
    "lorem ipsum dolor sit amet",
    "purple monkey dishwasher",
    "1234 5678",
    "how to fix a carburetor",
    "python programming tutorial",
    "best pizza in new york",
    "stock market today",
    "cheap flights to paris",
    "wifi password reset",
]


def _jsonl(path: Path) -> dict[str, str]:
    return {d["_id"]: d["text"] for d in map(json.loads, path.read_text().splitlines()) if d}


def _qrels(*paths: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for path in paths:
        for line in path.read_text().splitlines():
            q, doc, grade = line.split("\t")[:3]
            if q != "query-id":
                out[q][doc] = int(grade)
    return out


def _cosines(col: Collection, texts: list[str]) -> tuple[np.ndarray, object]:
    v = col.load_version("minilm")
    x = np.asarray(v.data.vectors, dtype=np.float32)
    q = np.asarray(v.encoder.encode_queries(texts), dtype=np.float32)
    return q @ x.T, v


def _row(collection: str, queries: str, best: np.ndarray, scale: tuple[float, float]) -> dict:
    rel = np.array([relevance.of_cosine(c, scale) for c in best])
    return {
        "collection": collection,
        "queries": queries,
        "n": len(best),
        "best cosine p5": round(float(np.percentile(best, 5)), 3),
        "median": round(float(np.median(best)), 3),
        "max": round(float(best.max()), 3),
        "flagged no good match": f"{float(np.mean(rel < relevance.GOOD)):.0%}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--books", default="books")
    ap.add_argument("--scifact", default="beir-scifact")
    args = ap.parse_args()
    rows, grades = [], {}
    for name, queries in ((args.books, "vibe"), (args.scifact, "scifact")):
        try:
            col = Collection.open(name)
            col.load_version("minilm")
        except NotFoundError as exc:
            print(f"skipped {name}: {exc}")
            continue
        if queries == "vibe":
            texts = {**_jsonl(VIBE / "queries.jsonl"), **_jsonl(VIBE / "long-queries.jsonl")}
            label = "books development set"
        else:
            texts = _jsonl(SHARED_DATA / "beir" / "scifact" / "queries.jsonl")
            tested = _qrels(SHARED_DATA / "beir" / "scifact" / "qrels" / "test.tsv")
            texts = {q: t for q, t in texts.items() if q in tested}
            label = "SciFact test queries"
        ids = list(texts)
        sims, v = _cosines(col, [texts[i] for i in ids] + NONSENSE)
        scale = relevance.anchors(v.info)
        assert scale is not None, "the minilm version's model has no anchors"
        best = sims.max(axis=1)
        rows.append(_row(name, label, best[: len(ids)], scale))
        rows.append(_row(name, "made-up and off-topic", best[len(ids) :], scale))
        if queries == "vibe":
            by_grade: dict[int, list[float]] = defaultdict(list)
            judged = _qrels(VIBE / "qrels.tsv", VIBE / "long-qrels.tsv")
            for qi, q in enumerate(ids):
                for doc, grade in judged[q].items():
                    if doc in v.row_of:
                        by_grade[grade].append(relevance.of_cosine(sims[qi, v.row_of[doc]], scale))
            grades = {g: round(float(np.mean(r)), 3) for g, r in sorted(by_grade.items())}
            print("books: mean relevance of judged books by grade (0 = judged not relevant):", grades)
    report(
        "relevance",
        f"best hit's MiniLM cosine; relevance = (cosine - {scale[0]}) / ({scale[1]} - {scale[0]}), "
        f"no good match below {relevance.GOOD}",
        rows,
        {"anchors": scale, "good": relevance.GOOD, "books_relevance_by_grade": grades, "nonsense": NONSENSE},
    )


if __name__ == "__main__":
    main()
