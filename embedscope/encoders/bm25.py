"""BM25 as a sparse encoder, on bm25s's tokenizer and scoring functions.

The decomposition. BM25 scores a query q against a document d as

    score(q, d) = sum over query tokens t of
                  idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))

(Lucene variant; bm25s drops the constant (k1 + 1), which does not change the ranking). Everything
inside the sum depends only on (t, d), so it is a document-side weight W[d, t], precomputed once:
that is exactly the sparse matrix bm25s itself stores (`retriever.scores`). The query side is then
just how often each vocabulary term occurs in the query, so

    encode(docs)            -> W, CSR (n_docs, vocab), float32
    encode_queries(queries) -> Q, CSR (n_queries, vocab) of query term counts
    Q @ W.T                 == bm25s retriever scores   (checked in tests/test_encoders_sparse.py)

which lets BM25 live in the same sparse inner-product index as TF-IDF (metric "dot"; the rows are
NOT normalised). idf and avgdl are learned in `fit`; `encode` of new documents uses them, as an
inverted index that is not re-fitted would. For methods "bm25l" and "bm25+", bm25s adds a per-query
constant (the "non-occurrence" score of each query term) to every document; it shifts all scores
equally, so rankings match but absolute scores differ by that constant.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.base import Encoder, check_corpus
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    import bm25s.tokenization

_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def make_tokenizer(stopwords: str | list[str] | None, stemmer: str | None) -> bm25s.tokenization.Tokenizer:
    """bm25s's tokenizer (regex \\b\\w\\w+\\b, lowercase) with stop words and a PyStemmer stemmer."""
    import bm25s.tokenization

    stem = None
    if stemmer:
        import Stemmer

        try:
            stem = Stemmer.Stemmer(stemmer)
        except KeyError as exc:
            raise EmbedscopeError(
                f"unknown stemmer language {stemmer!r}; valid: {', '.join(Stemmer.algorithms())}"
            ) from exc
    return bm25s.tokenization.Tokenizer(stopwords=stopwords or [], stemmer=stem)


class BM25Encoder(Encoder):
    """Document side: BM25 term weights (CSR). Query side: term counts. query . doc = BM25 score."""

    name: ClassVar[str] = "bm25"
    description: ClassVar[str] = "BM25 (bm25s) term weights; query·doc = BM25 score (sparse, dot)"
    defaults: ClassVar[JSONObject] = {
        "k1": 1.5,
        "b": 0.75,
        "delta": 0.5,  # only used by bm25l / bm25+
        "method": "lucene",  # lucene | robertson | atire | bm25l | bm25+
        "stopwords": "en",  # "en" | null | list of words
        # Porter stemming, as in Lucene's EnglishAnalyzer and Anserini's BEIR BM25 baselines: on
        # SciFact test nDCG@10 0.662 -> 0.685, Recall@100 0.876 -> 0.919 (docs/evaluation.md)
        "stemmer": "porter",  # null or a PyStemmer algorithm: "porter", "english" (Porter2), ...
    }
    requires_fit: bool = True
    sparse: ClassVar[bool] = True
    metric: str = "dot"

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        if self.params["method"] not in _METHODS:
            raise EmbedscopeError(
                f"method must be one of {', '.join(_METHODS)}, not {self.params['method']!r}"
            )
        if float(self.params["k1"]) < 0 or not 0 <= float(self.params["b"]) <= 1:
            raise EmbedscopeError("BM25 needs k1 >= 0 and 0 <= b <= 1")
        self.tokenizer = make_tokenizer(self.params["stopwords"], self.params["stemmer"])
        self.idf: np.ndarray | None = None
        self.nonoccurrence: np.ndarray | None = None
        self.avgdl = 0.0

    # --- tokens ------------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str], *, learn: bool = False) -> list[list[int]]:
        """bm25s token ids; unknown words are dropped (never added to the vocabulary after fit).
        allow_empty=False: a text with no known term gives [] (a zero row), not bm25s's "" token."""
        return self.tokenizer.tokenize(
            list(texts),
            update_vocab=True if learn else "never",
            return_as="ids",
            show_progress=False,
            allow_empty=False,
        )

    @property
    def vocab(self) -> dict[str, int]:
        return self.tokenizer.get_vocab_dict()

    @property
    def dim(self) -> int:
        return len(self._fitted(self.idf, "idf"))

    # --- fit / encode ------------------------------------------------------------------------
    def fit(self, texts: Sequence[str]) -> BM25Encoder:
        from bm25s.scoring import (
            _build_idf_array,
            _build_nonoccurrence_array,
            _calculate_doc_freqs,
            _select_idf_scorer,
            _select_tfc_scorer,
        )

        texts = check_corpus(texts)
        self.tokenizer.reset_vocab()
        ids = self.token_ids(texts, learn=True)
        n_vocab = len(self.vocab)
        if n_vocab == 0:
            raise EmbedscopeError("cannot fit BM25: the corpus has no terms besides stop words")
        # the same idf / avgdl bm25s.BM25.index computes (private helpers of bm25s, reused so the
        # formulas stay exactly the library's; a test checks the scores against bm25s's retriever)
        self.avgdl = float(np.mean([len(d) for d in ids]))
        dfs = _calculate_doc_freqs(corpus_tokens=ids, unique_tokens=list(range(n_vocab)), show_progress=False)
        self.idf = _build_idf_array(
            dfs, n_docs=len(ids), compute_idf_fn=_select_idf_scorer(self.params["method"])
        )
        self.nonoccurrence = None
        if self.params["method"] in ("bm25l", "bm25+"):
            self.nonoccurrence = _build_nonoccurrence_array(
                doc_frequencies=dfs,
                n_docs=len(ids),
                compute_idf_fn=_select_idf_scorer(self.params["method"]),
                calculate_tfc_fn=_select_tfc_scorer(self.params["method"]),
                l_d=self.avgdl,
                l_avg=self.avgdl,
                k1=float(self.params["k1"]),
                b=float(self.params["b"]),
                delta=float(self.params["delta"]),
                dtype="float32",
            )
        self.fitted = True
        return self

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> sp.csr_matrix:
        """Document-side BM25 weights W (n, vocab)."""
        from bm25s.scoring import _select_tfc_scorer

        idf = self._fitted(self.idf, "idf")
        tfc = _select_tfc_scorer(self.params["method"])
        indptr, indices, data = [0], [], []
        for doc in self.token_ids(texts):
            counts = Counter(doc)
            cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            w = idf[cols] * tfc(
                tf_array=tf,
                l_d=len(doc),
                l_avg=self.avgdl,
                k1=float(self.params["k1"]),
                b=float(self.params["b"]),
                delta=float(self.params["delta"]),
            )
            if self.nonoccurrence is not None:
                w = w - self.nonoccurrence[cols]
            indices.append(cols)
            data.append(w.astype(np.float32))
            indptr.append(indptr[-1] + len(cols))
        return self._csr(indptr, indices, data)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64) -> sp.csr_matrix:
        """Query-side vectors: term counts (a repeated query term counts twice, as in bm25s)."""
        self._check_fitted()
        indptr, indices, data = [0], [], []
        for q in self.token_ids(texts):
            counts = Counter(q)
            indices.append(np.fromiter(counts.keys(), dtype=np.int64, count=len(counts)))
            data.append(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
            indptr.append(indptr[-1] + len(counts))
        return self._csr(indptr, indices, data)

    def _csr(self, indptr: list[int], indices: list[np.ndarray], data: list[np.ndarray]) -> sp.csr_matrix:
        n = len(indptr) - 1
        m = sp.csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0, np.float32),
                np.concatenate(indices) if indices else np.zeros(0, np.int64),
                np.asarray(indptr),
            ),
            shape=(n, self.dim),
            dtype=np.float32,
        )
        m.sort_indices()
        return m

    # --- persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        super().save(directory)
        directory = Path(directory)
        tok = self.tokenizer
        state = {"word_to_id": tok.word_to_id, "stem_to_sid": tok.stem_to_sid, "avgdl": self.avgdl}
        (directory / "bm25_vocab.json").write_text(json.dumps(state))
        weights, idf = directory / "bm25_weights.npz", self._fitted(self.idf, "idf")
        if self.nonoccurrence is not None:
            np.savez(weights, idf=idf, nonoccurrence=self.nonoccurrence)
        else:
            np.savez(weights, idf=idf)

    def _load_state(self, directory: Path) -> None:
        directory = Path(directory)
        state = json.loads((directory / "bm25_vocab.json").read_text())
        self.tokenizer.word_to_id = state["word_to_id"]
        self.tokenizer.stem_to_sid = state["stem_to_sid"]
        self.avgdl = float(state["avgdl"])
        with np.load(directory / "bm25_weights.npz") as z:
            self.idf = z["idf"]
            self.nonoccurrence = z["nonoccurrence"] if "nonoccurrence" in z.files else None
