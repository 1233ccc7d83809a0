"""Static (model2vec) embeddings distilled offline from the packaged MiniLM, and the word-level
tokenizer cache they encode through (equal to model2vec's tokenisation, checked on real texts).

The first run distills (~1.5 min on 2 cores) into ~/.cache/embedscope/static; later runs load it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from embedscope.encoders import static
from embedscope.encoders.base import NotFittedError, is_empty_query, l2_normalize
from embedscope.encoders.registry import create_encoder, load_encoder
from embedscope.encoders.transformer import DEFAULT_MODEL, resolve_model_path
from embedscope.encoders.word_tokens import WordPieceCounter, bert_wordpiece
from embedscope.sources import load_beir

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"
#: the distillation alone (the recipe before training), and training on the collection's texts
#: alone, as the default does (named: the general sample's MiniLM vectors take minutes to make)
UNTRAINED = {"train": False}
OWN_TEXTS = {"general_sample": "none"}


@pytest.fixture(scope="module")
def descriptions(books_frame: pd.DataFrame) -> list[str]:
    return [str(d) for d in books_frame.description.dropna().head(600)]


@pytest.mark.slow
def test_static_distilled_offline_ranks_paraphrases_and_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, descriptions: list[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = create_encoder("static", UNTRAINED)
    with pytest.raises(NotFittedError):  # corpus weighting counts the collection's tokens first
        enc.encode(["a text"])
    enc.fit(descriptions)
    texts = [
        "a young wizard learns magic at a boarding school",
        "a boy discovers he has magical powers and attends a school for witchcraft",
        "a practical guide to growing tomatoes in your garden",
        "",
    ]
    x = enc.encode(texts)
    assert x.shape == (4, 256) and x.dtype == np.float32
    sims = x @ x.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # paraphrase closer than an unrelated text
    assert is_empty_query(x[3:4])
    enc.save(tmp_path / "static")
    assert (tmp_path / "static" / "static_model" / "model.safetensors").exists()
    loaded = load_encoder(tmp_path / "static")
    np.testing.assert_allclose(loaded.encode(texts), x, atol=1e-6)


@pytest.mark.slow
def test_corpus_weighting_discounts_the_collections_common_tokens(descriptions: list[str]) -> None:
    corpus = create_encoder("static", UNTRAINED).fit(descriptions)
    zipf = create_encoder("static", {**UNTRAINED, "weighting": "zipf", "sif_coefficient": 1e-4})
    table = np.asarray(corpus.static_model.embedding)
    base = np.asarray(corpus._distilled().embedding)  # the same table before weighting
    tokenizer = corpus.static_model.tokenizer
    weight = {
        w: np.linalg.norm(table[tokenizer.token_to_id(w)]) / np.linalg.norm(base[tokenizer.token_to_id(w)])
        for w in ("the", "novel", "dragon")
    }
    # 'the' is the commonest token of book blurbs, 'novel' common, 'dragon' rare: SIF orders them so
    assert weight["the"] < weight["novel"] < weight["dragon"] <= 1.0
    # the sum of a text is the sum of its weighted tokens, as model2vec's mean (up to the norm)
    text = "the dragon novel"
    expected = table[[tokenizer.token_to_id(w) for w in ("the", "dragon", "novel")]].sum(0)
    np.testing.assert_allclose(corpus.encode([text])[0], expected / np.linalg.norm(expected), atol=1e-5)
    # the model2vec recipe is still there: no fit, Zipf weights baked into the table
    assert not zipf.requires_fit and zipf.encode([text]).shape == (1, 256)


@pytest.fixture(scope="module")
def taught(books_300_embedded: Any) -> tuple[list[str], np.ndarray]:
    """300 books' texts and MiniLM's vectors of them, read from the collection as `embed` reads them."""
    items = books_300_embedded.items()
    targets = books_300_embedded.vectors_made_by(create_encoder("static").teacher(), items)
    assert targets is not None and not np.isnan(targets).any()
    return [i.text for i in items], targets


@pytest.mark.slow
def test_training_is_reproducible_with_a_seed(taught: tuple[list[str], np.ndarray]) -> None:
    texts, targets = taught
    runs = [
        create_encoder("static", {**OWN_TEXTS, "seed": seed}).fit(texts[:150], targets=targets[:150])
        for seed in (3, 3, 4)
    ]
    tables = [np.asarray(r.static_model.embedding) for r in runs]
    np.testing.assert_array_equal(tables[0], tables[1])
    assert not np.array_equal(tables[0], tables[2])  # the seed drives the split and the batches
    report = runs[0].training
    assert report is not None and report["seed"] == 3 and report["teacher_vectors_reused"] == 150
    assert report["held_out_cosine_after"] > report["held_out_cosine_before"]


def neighbour_agreement(vectors: np.ndarray, reference: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's k nearest neighbours (itself left out) that both spaces agree on."""

    def top(x: np.ndarray) -> np.ndarray:
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    ours, theirs = top(vectors), top(reference)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs, strict=True)]))


@pytest.mark.slow
def test_training_brings_the_books_neighbours_closer_to_minilms(
    taught: tuple[list[str], np.ndarray], tmp_path: Path
) -> None:
    """The use: a collection's static vectors, fitted on its own texts, find the neighbours
    MiniLM finds (more-like-this), far more often than the distillation alone."""
    texts, targets = taught
    distilled = create_encoder("static", UNTRAINED).fit(texts)
    trained = create_encoder("static", OWN_TEXTS).fit(texts, targets=targets)
    before = neighbour_agreement(distilled.encode(texts), targets)
    after = neighbour_agreement(trained.encode(texts), targets)
    assert after > before + 0.1, (before, after)
    # save and load: the same vectors, the settings and what the training did
    trained.save(tmp_path / "static")
    loaded = load_encoder(tmp_path / "static")
    assert loaded.config() == trained.config() and loaded.training == trained.training
    np.testing.assert_allclose(loaded.encode(texts[:50]), trained.encode(texts[:50]), atol=1e-6)


@pytest.mark.slow
def test_embed_takes_the_teacher_vectors_the_collection_holds(home: Path, books_frame: pd.DataFrame) -> None:
    from embedscope import Collection

    col = Collection.create("books")
    books = books_frame.dropna(subset=["description"])
    col.ingest(books.head(40), id_field="isbn13", template="{title}. {description}")
    teacher = create_encoder("static").teacher()
    assert teacher is not None and col.vectors_made_by(teacher, col.items()) is None  # no MiniLM yet
    col.embed("minilm", {"precision": "fp32"})  # any precision: only the teacher's params must match
    col.ingest(books.iloc[40:42], id_field="isbn13", template="{title}. {description}")
    items = col.items()
    stored = col.vectors_made_by(teacher, items)
    assert stored is not None and np.isnan(stored).any(axis=1).sum() == 2  # the two new books
    ids, minilm = col.vectors("minilm")
    row = {item_id: r for r, item_id in enumerate(ids)}
    for n, item in enumerate(items):
        if item.id in row:
            np.testing.assert_array_equal(stored[n], np.asarray(minilm)[row[item.id]])
    col.embed("static", OWN_TEXTS)
    report = col.encoder("static").training
    assert report is not None
    assert (report["teacher_vectors_reused"], report["teacher_encoded"]) == (40, 2)


@functools.cache
def minilm_tokenizer(max_length: int | None) -> Any:
    """The packaged MiniLM's tokenizer as model2vec sets it up: no padding, truncated to max_length."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(resolve_model_path(DEFAULT_MODEL)) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation() if max_length is None else tokenizer.enable_truncation(max_length)
    return tokenizer


def tokenizer_counts(tokenizer: Any, texts: list[str]) -> sp.csr_matrix:
    """The reference: per-text token counts straight from the tokenizer."""
    rows = [
        np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(texts, add_special_tokens=False)
    ]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    data = np.ones(int(indptr[-1]), dtype=np.float32)
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((data, indices, indptr), shape=(len(texts), tokenizer.get_vocab_size()))


def assert_counts_equal(
    counter: WordPieceCounter, tokenizer: Any, texts: list[str], max_tokens: int | None
) -> None:
    got, special = counter.counts(texts, max_tokens)
    reference = tokenizer_counts(tokenizer, texts)
    has_special = np.zeros(len(texts), dtype=bool)
    has_special[special] = True
    for i in np.flatnonzero(has_special):  # left to the tokenizer, and only when they need it
        assert got[i].nnz == 0 and any(
            t in texts[i].upper() for t in ("[SEP]", "[CLS]", "[MASK]", "[PAD]", "[UNK]")
        )
    keep = sp.diags((~has_special).astype(np.float32))
    assert (keep @ (got - reference)).count_nonzero() == 0


# printable ASCII with the whitespace and control characters BERT treats specially, accents,
# combining marks, CJK, Unicode spaces, curly quotes, emoji, special-token text, over-long words
_PIECES = [
    *"abcXYZ019 .,;-'#\"()[]\t\n\r\x0b\x0c\x1c\x7f\x85\x00éüÉß\u0301\u00a0\u2028\u3000\u200b中文“—😀İ\ufffd",
    *("[SEP]", "[mask]", "the", "antidisestablishmentarianism", "x" * 120, "é" * 101),
]


@functools.cache
def shared_counter() -> WordPieceCounter:
    """One cache for all examples: keys cached by one example are reused by the next."""
    return WordPieceCounter(minilm_tokenizer(None))


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join), min_size=1, max_size=6))
def test_word_cache_counts_equal_the_tokenizers_on_any_text(texts: list[str]) -> None:
    for max_tokens in (None, 12):  # 12: truncation cuts inside words and texts
        assert_counts_equal(shared_counter(), minilm_tokenizer(max_tokens), texts, max_tokens)


def test_word_cache_is_only_used_for_bert_wordpiece_tokenizers() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    assert bert_wordpiece(minilm_tokenizer(None))
    word_level = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    assert not bert_wordpiece(word_level)
    with pytest.raises(ValueError, match="BertPreTokenizer"):
        WordPieceCounter(word_level)


def real_texts(books_frame: pd.DataFrame) -> list[str]:
    """Every book as the bench encodes it, every SciFact document and query."""
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT} (../shared/data is absent)")
    books = books_frame.dropna(subset=["title", "description"])
    ds = load_beir(SCIFACT)
    return [
        *(books["title"] + ". " + books["description"]),
        *(f"{doc['title']} {doc['text']}".strip() for doc in ds.corpus.values()),
        *ds.queries.values(),
    ]


@pytest.mark.slow
def test_word_cache_equals_model2vec_on_every_book_and_scifact_text(books_frame: pd.DataFrame) -> None:
    texts = real_texts(books_frame)
    enc = create_encoder("static", UNTRAINED).fit(texts)
    model = enc.static_model
    # the data holds the hard cases: non-ASCII text, texts past max_length tokens and past
    # model2vec's character cut, and one with special-token text
    texts.append(f"{texts[0]} [SEP] {texts[1]}")
    lengths = np.asarray(tokenizer_counts(minilm_tokenizer(None), texts).sum(axis=1)).ravel()
    assert sum(not t.isascii() for t in texts) > 1000
    assert (lengths > model.max_length).sum() > 400
    assert sum(len(t) > model.max_length * model.median_token_length for t in texts) > 50
    # fit: the SIF weights come from exactly the tokenizer's counts (truncated as model2vec's)
    base = enc._distilled()
    counts = static.token_counts(base.tokenizer, texts[:-1], len(base.embedding))
    weights = static.sif_weights(counts / counts.sum(), float(enc.params["sif_coefficient"]))
    np.testing.assert_array_equal(np.asarray(model.embedding), np.asarray(base.embedding) * weights[:, None])
    # encode: model2vec's vectors, text by text
    fast = enc.encode(texts)
    reference = l2_normalize(model.encode(texts, use_multiprocessing=False))
    empty = ~reference.any(axis=1)
    np.testing.assert_array_equal(empty, ~fast.any(axis=1))
    assert (fast * reference).sum(axis=1)[~empty].min() >= 0.9999
    # and from a cold cache, in small batches mixing short and over-long texts
    fresh = create_encoder("static", UNTRAINED).fit(texts[:-1])
    too_long = [t for t, n in zip(texts, lengths, strict=True) if n > model.max_length][:40]
    for start in range(0, 500, 100):
        batch = texts[start : start + 100] + too_long[start // 20 : start // 20 + 8]
        expected = l2_normalize(model.encode(batch, use_multiprocessing=False))
        np.testing.assert_allclose(fresh.encode(batch), expected, atol=1e-5)
