"""Text that ships with the installed packages, for when no network is there: the English
Wikipedia excerpt inside gensim's test data (106 articles). The demo falls back to it; the static
encoder trains on its passages as general text beside a collection's own.

Here, below the encoders and the store, because both layers use it (it needs only gensim and pandas)."""

from __future__ import annotations

import bz2
import re

import pandas as pd

# a sentence ends at . ! or ? followed by space and a capital letter, digit or bracket: rough, and
# enough to cut passages at sentence ends (no sentence splitter is installed)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def wikipedia_sample(max_chars: int = 1500) -> pd.DataFrame:
    """English Wikipedia articles from the excerpt inside gensim's test data (no network needed)."""

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    path = datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    rows = []
    with bz2.open(path) as fh:
        for title, raw, page_id in extract_pages(fh):
            text = " ".join(filter_wiki(raw).split())
            if not text or text.upper().startswith("#REDIRECT") or len(text) < 200:
                continue
            rows.append({"id": page_id, "title": title, "text": text[:max_chars]})
    return pd.DataFrame(rows)


def wikipedia_passages(min_words: int = 30, shortest: int = 4) -> list[str]:
    """The excerpt's articles in full, cut into passages of whole sentences of at least
    `min_words` words (the last of an article may be shorter, down to `shortest` words):
    ~9,700 passages of ~50 words, the length of a book blurb's sentence or two."""
    passages = []
    for text in wikipedia_sample(max_chars=10**9).text:
        current: list[str] = []
        words = 0
        for sentence in _SENTENCE_END.split(text):
            current.append(sentence)
            words += len(sentence.split())
            if words >= min_words:
                passages.append(" ".join(current))
                current, words = [], 0
        if current and words >= shortest:
            passages.append(" ".join(current))
    return passages
