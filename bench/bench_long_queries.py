"""Long known-item requests ("which book was it?") on the books: how the systems and two simple
long-query treatments rank the one book a reader means.

    python bench/bench_long_queries.py [--cache DIR]   # the table; writes bench/results/long_queries.json
    python bench/bench_long_queries.py --sample        # only print the stratified sample of target books
    python bench/bench_long_queries.py --check         # only check the requests against the writing rules

The requests and judgements are bench/data/vibe/long-queries.jsonl and long-qrels.tsv (how they were
made: bench/data/vibe/LONG.md). `--sample` reproduces how their target books were drawn.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BOOKS = ROOT.parent / "shared" / "data" / "books" / "books.csv"
LONG = ROOT / "bench" / "data" / "vibe"

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", action="store_true", help="only print the sample of target books")
    ap.add_argument("--check", action="store_true", help="only check the requests against the writing rules")
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


if __name__ == "__main__":
    main()
