"""Word vectors: gensim word2vec and the PyTorch reference model, trained on gensim's Lee corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedscope.encoders.base import Encoder, is_empty_query
from embedscope.encoders.registry import create_encoder, load_encoder
from embedscope.errors import EmbedscopeError


@pytest.fixture(scope="module")
def lee() -> list[str]:
    from gensim.test.utils import datapath

    path = Path(datapath("lee_background.cor"))
    if not path.exists():
        pytest.skip("gensim test data (lee_background.cor) is not installed")
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def w2v(lee: list[str]) -> Encoder:
    return create_encoder("word2vec", {"epochs": 50, "alpha": 0.05}).fit(lee)


def _random_pair_similarity(enc: Encoder, n: int = 300) -> float:
    rng = np.random.default_rng(0)
    words = enc.wv.index_to_key[50:2000]
    pairs = rng.choice(len(words), size=(n, 2))
    return float(np.mean([enc.similarity(words[a], words[b]) for a, b in pairs if a != b]))


def test_word2vec_finds_related_words(w2v: Encoder) -> None:
    assert "bush" in [w for w, _ in w2v.most_similar("president", 10)]
    assert {"israel", "arafat", "israeli", "gaza", "yasser"} & {
        w for w, _ in w2v.most_similar("palestinian", 10)
    }
    assert w2v.similarity("fire", "flames") > w2v.similarity("fire", "cricket") + 0.15
    assert w2v.similarity("fire", "flames") > _random_pair_similarity(w2v) + 0.2
    res = w2v.analogy("israeli", "israel", "palestinian", topn=5)  # word tools run and rank
    assert len(res) == 5 and all(isinstance(w, str) and -1 <= s <= 1 for w, s in res)


def test_word2vec_out_of_vocabulary_is_a_clear_error(w2v: Encoder) -> None:
    with pytest.raises(EmbedscopeError, match="'qwertyuiop' is not in the word2vec vocabulary"):
        w2v.most_similar("qwertyuiop")
    with pytest.raises(EmbedscopeError, match="not in the word2vec vocabulary"):
        w2v.analogy("king", "man", "qwertyuiop")


def test_word2vec_is_deterministic_and_round_trips(lee: list[str], w2v: Encoder, tmp_path: Path) -> None:
    again = create_encoder("word2vec", {"epochs": 50, "alpha": 0.05}).fit(lee)
    np.testing.assert_array_equal(again.wv.vectors, w2v.wv.vectors)
    w2v.save(tmp_path / "w2v")
    loaded = load_encoder(tmp_path / "w2v")
    np.testing.assert_array_equal(loaded.encode(lee[:10]), w2v.encode(lee[:10]))
    assert loaded.most_similar("fire", 3) == w2v.most_similar("fire", 3)


def test_sif_pooling_removes_the_common_component(lee: list[str]) -> None:
    sif = create_encoder("word2vec", {"epochs": 10, "pooling": "sif"}).fit(lee)
    mean = create_encoder("word2vec", {"epochs": 10, "pooling": "mean"}).fit(lee)
    xs, xm = sif.encode(lee), mean.encode(lee)
    np.testing.assert_allclose(np.linalg.norm(xs, axis=1), 1.0, atol=1e-5)
    # mean pooling of a small-corpus word2vec puts every text in one narrow cone; SIF spreads them
    off = ~np.eye(len(lee), dtype=bool)
    assert (xs @ xs.T)[off].mean() < (xm @ xm.T)[off].mean() - 0.3
    assert np.abs(xs @ sif._pc).max() < 1e-4  # no component left along the removed direction
    assert is_empty_query(sif.encode(["zzqxv qwertyuiop"]))


def _percentile(enc: Encoder, w1: str, w2: str) -> float:
    """Share of the vocabulary less similar to w1 than w2 is (1.0 = w2 is w1's nearest word)."""
    sims = enc.wv.cosine_similarities(enc.wv[w1], enc.wv.vectors)
    return float((sims < enc.similarity(w1, w2)).mean())


@pytest.mark.slow
@pytest.mark.parametrize("sg", [0, 1])
def test_torch_word2vec_loss_falls_and_related_words_are_closer(
    lee: list[str], sg: int, tmp_path: Path
) -> None:
    params = {"sg": sg, "epochs": 4 if sg else 10, "alpha": 0.025 if sg else 0.05, "batch_size": 2048}
    enc = create_encoder("torch_word2vec", params).fit(lee)
    losses = enc.loss_history
    assert len(losses) == params["epochs"]
    assert losses[-1] < 0.8 * losses[0] and all(
        b <= a + 1e-3 for a, b in zip(losses, losses[1:], strict=False)
    )
    # related words rank far above a random word among each other's neighbours (random: 0.5)
    related = [("president", "bush"), ("fire", "crews"), ("fire", "flames")]
    assert np.mean([_percentile(enc, a, b) for a, b in related]) > 0.8
    assert _percentile(enc, "president", "bush") > 0.85
    with pytest.raises(EmbedscopeError, match="not in the torch_word2vec vocabulary"):
        enc.similarity("fire", "qwertyuiop")
    enc.save(tmp_path / "t")
    loaded = load_encoder(tmp_path / "t")
    np.testing.assert_array_equal(loaded.encode(lee[:5]), enc.encode(lee[:5]))
    assert loaded.loss_history == pytest.approx(losses)


def test_word2vec_auto_epochs_scale_with_corpus_size(lee: list[str]) -> None:
    from embedscope.encoders.word2vec import auto_epochs

    assert auto_epochs(130_000) == 39 and auto_epochs(10_000_000) == 5 and auto_epochs(10) == 50
    enc = create_encoder("word2vec").fit(lee[:50])
    assert enc.epochs_used == 50 and enc.config()["params"]["epochs"] is None
