"""Count-based and reduced encoders on real data (books.csv)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embedscope.encoders.base import NotFittedError, is_empty_query
from embedscope.encoders.registry import create_encoder, describe_encoders, encoder_names, load_encoder
from embedscope.errors import EmbedscopeError

SPARSE = ["onehot", "bow", "tfidf", "bm25"]


@pytest.fixture(scope="module")
def books(books_frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    frame = books_frame.dropna(subset=["title", "description"])
    return frame["title"].tolist(), (frame["title"] + ". " + frame["description"]).tolist()


@pytest.fixture(scope="module")
def small(books: tuple[list[str], list[str]]) -> list[str]:
    return books[1][:300]


def test_registry_lists_every_encoder_with_params() -> None:
    names = set(encoder_names())
    assert {
        "onehot",
        "bow",
        "tfidf",
        "bm25",
        "lsa",
        "lda",
        "word2vec",
        "torch_word2vec",
        "static",
        "minilm",
    } <= names
    assert "hybrid" not in names  # a search recipe (embedscope.search.recipe), not an encoder
    rows = {r["name"]: r for r in describe_encoders()}
    assert rows["bm25"]["params"]["k1"] == 1.5 and rows["bm25"]["sparse"]
    assert rows["lsa"]["params"]["n_components"] == 256 and not rows["lsa"]["sparse"]


@pytest.mark.parametrize("name", SPARSE)
def test_sparse_encoders_stay_sparse_csr_float32(name: str, small: list[str]) -> None:
    enc = create_encoder(name).fit(small)
    x = enc.encode(small)
    assert sp.isspmatrix_csr(x) and x.dtype == np.float32
    assert x.shape == (300, enc.dim)
    assert x.nnz < 0.05 * x.shape[0] * x.shape[1]  # really sparse


def test_onehot_is_binary_and_bow_counts() -> None:
    texts = ["red red red fish", "blue fish"]
    onehot = create_encoder("onehot", {"normalize": False}).fit(texts)
    bow = create_encoder("bow", {"normalize": False}).fit(texts)
    vocab = onehot.vocabulary()
    assert onehot.encode(["red red fish"]).toarray()[0, vocab.index("red")] == 1.0
    assert bow.encode(["red red fish"]).toarray()[0, vocab.index("red")] == 2.0
    assert onehot.metric == "dot"  # raw indicators are not normalised
    assert create_encoder("bow").metric == "cosine"


def test_tfidf_finds_a_book_by_a_distinctive_title_phrase(books: tuple[list[str], list[str]]) -> None:
    titles, texts = books
    enc = create_encoder("tfidf", {"stop_words": "english", "sublinear_tf": True}).fit(texts)
    docs = enc.encode(texts)
    found = 0
    picks = [i for i in range(0, len(titles), 97) if len(titles[i].split()) >= 3][:20]
    for i in picks:
        scores = (enc.encode_queries([titles[i]]) @ docs.T).toarray().ravel()
        top = np.argsort(-scores)[:5]
        found += int(i in top or titles[i] in [titles[j] for j in top])
    assert found >= 0.85 * len(picks), f"only {found}/{len(picks)} titles retrieved in the top 5"


@pytest.mark.parametrize("stemmer", [None, "english", "porter"])
def test_bm25_query_dot_doc_equals_bm25s_scores(small: list[str], stemmer: str | None) -> None:
    import bm25s

    from embedscope.encoders.bm25 import make_tokenizer

    enc = create_encoder("bm25", {"stemmer": stemmer}).fit(small)
    docs = enc.encode(small)
    # bm25s's own pipeline on the same tokens
    tok = make_tokenizer("en", stemmer)
    ids = tok.tokenize(small, update_vocab=True, return_as="ids", show_progress=False, allow_empty=False)
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    retriever.index((ids, dict(tok.get_vocab_dict())), show_progress=False)
    queries = ["a young wizard goes to school", "murder mystery in victorian london london", "love story"]
    ours = (enc.encode_queries(queries) @ docs.T).toarray()
    for n, q in enumerate(queries):
        qids = tok.tokenize(
            [q], update_vocab="never", return_as="ids", show_progress=False, allow_empty=False
        )[0]
        expected = retriever.get_scores(qids)
        np.testing.assert_allclose(ours[n], expected, rtol=1e-5, atol=1e-5)
        assert expected.max() > 0


def test_bm25_matches_the_plain_bm25s_top_hits(small: list[str]) -> None:
    """Against bm25s used the textbook way (bm25s.tokenize + retriever.retrieve), with the default
    Porter stemmer."""
    import bm25s
    import Stemmer

    stem = Stemmer.Stemmer("porter").stemWords
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(small, stopwords="en", stemmer=stem, show_progress=False), show_progress=False
    )
    enc = create_encoder("bm25").fit(small)
    docs = enc.encode(small)
    query = "the history of the roman empire"
    res, scores = retriever.retrieve(
        bm25s.tokenize([query], stopwords="en", stemmer=stem, show_progress=False), k=5, show_progress=False
    )
    ours = (enc.encode_queries([query]) @ docs.T).toarray().ravel()
    np.testing.assert_allclose(np.sort(ours)[::-1][:5], scores[0], rtol=1e-5)


def test_bm25_default_stems_so_a_plural_query_finds_the_singular(books: tuple[list[str], list[str]]) -> None:
    """Porter stemming (the default): "wizards" matches books that only say "wizard"; without a
    stemmer those books score 0 for it."""
    import re

    texts = books[1]
    only_singular = [
        i
        for i, t in enumerate(texts)
        if re.search(r"\bwizard\b", t, re.I) and not re.search(r"\bwizards\b", t, re.I)
    ]
    assert len(only_singular) >= 5  # the books corpus has them
    stemmed = create_encoder("bm25").fit(texts)
    plain = create_encoder("bm25", {"stemmer": None}).fit(texts)
    assert stemmed.params["stemmer"] == "porter"
    for enc, expect_match in ((stemmed, True), (plain, False)):
        scores = (
            (enc.encode_queries(["wizards"]) @ enc.encode([texts[i] for i in only_singular]).T)
            .toarray()
            .ravel()
        )
        assert bool((scores > 0).all()) is expect_match and bool((scores > 0).any()) is expect_match
    # and stems are shared both ways: "running" and "runs" reach the same term as "run"
    q = stemmed.encode_queries(["running", "runs", "run"])
    assert q[0].indices.tolist() == q[1].indices.tolist() == q[2].indices.tolist()


@pytest.mark.parametrize("name", SPARSE + ["lsa", "lda"])
def test_stop_word_or_unknown_query_gives_a_zero_row(name: str, small: list[str]) -> None:
    params = {"stop_words": "english"} if name in ("onehot", "bow", "tfidf") else {}
    enc = create_encoder(name, params).fit(small)
    q = enc.encode_queries(["the of and", "zzqxv blorptastic"])
    for row in range(2):
        assert is_empty_query(q[row : row + 1]), name
    assert not is_empty_query(enc.encode_queries(["wizard"])) or name == "lda"


@pytest.mark.parametrize("name", SPARSE + ["lsa", "lda"])
def test_save_load_round_trip_gives_identical_vectors(name: str, small: list[str], tmp_path) -> None:  # noqa: ANN001
    enc = create_encoder(name, {"n_components": 16} if name in ("lsa", "lda") else {})
    enc.fit(small)
    enc.save(tmp_path / name)
    loaded = load_encoder(tmp_path / name)
    assert loaded.config() == enc.config()
    probe = small[:20] + ["a completely new text about dragons"]
    x, y = enc.encode(probe), loaded.encode(probe)
    x = x.toarray() if sp.issparse(x) else x
    y = y.toarray() if sp.issparse(y) else y
    np.testing.assert_array_equal(x, y)


def test_lsa_dims_normalised_and_deterministic(small: list[str]) -> None:
    a = create_encoder("lsa", {"n_components": 64}).fit(small)
    x = a.encode(small)
    assert x.shape == (300, 64) and a.dim == 64
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    y = create_encoder("lsa", {"n_components": 64}).fit(small).encode(small)
    np.testing.assert_allclose(x, y, atol=1e-5)
    # more components than the corpus allows: clamped, not a crash
    assert create_encoder("lsa").fit(small[:10]).dim <= 9


def test_lda_topic_vectors(small: list[str]) -> None:
    enc = create_encoder("lda", {"n_components": 8}).fit(small)
    x = enc.encode(small[:5])
    assert x.shape == (5, 8) and np.all(x >= 0)
    assert len(enc.top_words(5)) == 8


@pytest.mark.parametrize(
    "name", ["onehot", "bow", "tfidf", "bm25", "lsa", "lda", "word2vec", "torch_word2vec"]
)
def test_fit_rules(name: str) -> None:
    enc = create_encoder(name)
    with pytest.raises(NotFittedError):
        enc.encode(["hello"])
    with pytest.raises(EmbedscopeError, match="cannot fit on an empty corpus"):
        enc.fit([])


def test_bad_params_give_clear_errors() -> None:
    with pytest.raises(EmbedscopeError, match=r"no parameter 'n_topics'.*valid: .*n_components=20"):
        create_encoder("lda", {"n_topics": 5})
    with pytest.raises(EmbedscopeError, match="method must be one of"):
        create_encoder("bm25", {"method": "okapi"})
    with pytest.raises(EmbedscopeError, match="unknown stemmer"):
        create_encoder("bm25", {"stemmer": "klingon"})
    with pytest.raises(EmbedscopeError, match="ngram_range"):
        create_encoder("tfidf", {"ngram_range": [2, 1]})
    with pytest.raises(EmbedscopeError, match="pooling"):
        create_encoder("word2vec", {"pooling": "max"})
    with pytest.raises(EmbedscopeError, match="cannot build a vocabulary"):
        create_encoder("tfidf", {"stop_words": "english"}).fit(["the of and", "and the"])
