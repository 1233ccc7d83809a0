"""Intrinsic word-vector tests, with gensim's own evaluators and test files (shipped in its wheel):
Google analogies (questions-words.txt), WordSim-353 and SimLex-999 Spearman correlations.

A word2vec trained on a small domain corpus knows few of these words, so coverage (questions and
pairs actually scored) is reported next to every number: an accuracy over 40 questions is not an
accuracy over 19,544.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

    from embedscope.encoders.base import Encoder

TESTS = {"analogies": "questions-words.txt", "wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def data_file(name: str) -> Path:
    from gensim.test.utils import datapath

    path = Path(datapath(TESTS[name]))
    if not path.exists():
        raise EmbedscopeError(f"gensim's test file {path.name} is missing from this installation")
    return path


def word_vectors(encoder: Encoder) -> KeyedVectors:
    """The gensim KeyedVectors of a word2vec-family encoder (`.wv`)."""
    wv = getattr(encoder, "wv", None)
    if wv is None or not hasattr(wv, "evaluate_word_analogies"):
        name = getattr(encoder, "name", type(encoder).__name__)
        raise EmbedscopeError(f"encoder '{name}' has no word vectors; word tests need a word2vec version")
    return wv


def _count_pairs(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip() and not line.startswith("#"))


def word_tests(wv: KeyedVectors, *, restrict_vocab: int = 300_000) -> JSONObject:
    """Analogy accuracy and word-pair Spearman for a KeyedVectors, with coverage."""
    # gensim logs one line per analogy section at INFO; keep the CLI output clean
    logging.getLogger("gensim.models.keyedvectors").setLevel(logging.WARNING)
    out: JSONObject = {"vocabulary": len(wv), "dim": int(wv.vector_size)}
    path = data_file("analogies")
    total_questions = sum(
        1 for line in open(path, encoding="utf-8") if line.strip() and not line.startswith(":")
    )
    acc, sections = wv.evaluate_word_analogies(str(path), restrict_vocab=restrict_vocab)
    scored = next((s for s in sections if s["section"] == "Total accuracy"), None)
    n_scored = len(scored["correct"]) + len(scored["incorrect"]) if scored else 0
    out["analogies"] = {
        "accuracy": float(acc) if n_scored else None,
        "scored": n_scored,
        "total": total_questions,
        "sections": {
            s["section"]: {"correct": len(s["correct"]), "scored": len(s["correct"]) + len(s["incorrect"])}
            for s in sections
            if s["section"] != "Total accuracy" and (s["correct"] or s["incorrect"])
        },
    }
    for name in ("wordsim353", "simlex999"):
        path = data_file(name)
        total = _count_pairs(path)
        try:
            pearson, spearman, oov_pct = wv.evaluate_word_pairs(str(path), restrict_vocab=restrict_vocab)
            scored_pairs = round(total * (1 - oov_pct / 100))
            rho = None if scored_pairs < 3 else float(spearman[0])
            p = None if rho is None else float(spearman[1])
        except (ZeroDivisionError, ValueError):
            # gensim divides by the number of known pairs: none known -> nothing to correlate
            rho, p, oov_pct, scored_pairs = None, None, 100.0, 0
        out[name] = {
            "spearman": rho,
            "p_value": p,
            "scored": scored_pairs,
            "total": total,
            "oov_pct": round(float(oov_pct), 2),
        }
    return out
