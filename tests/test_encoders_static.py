"""Static (model2vec) embeddings distilled offline from the packaged MiniLM.

The first run distills (~1.5 min on 2 cores) into ~/.cache/embedscope/static; later runs load it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope.encoders.base import Encoder, NotFittedError, is_empty_query
from embedscope.encoders.registry import create_encoder


@pytest.fixture(scope="module")
def descriptions(books_frame: pd.DataFrame) -> list[str]:
    return [str(d) for d in books_frame.description.dropna().head(600)]


@pytest.mark.slow
def test_static_distilled_offline_ranks_paraphrases_and_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, descriptions: list[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = create_encoder("static")
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
    loaded = Encoder.load(tmp_path / "static")
    np.testing.assert_allclose(loaded.encode(texts), x, atol=1e-6)


@pytest.mark.slow
def test_corpus_weighting_discounts_the_collections_common_tokens(descriptions: list[str]) -> None:
    corpus = create_encoder("static").fit(descriptions)
    zipf = create_encoder("static", {"weighting": "zipf", "sif_coefficient": 1e-4})
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
