"""Static (model2vec) embeddings distilled offline from the packaged MiniLM.

The first run distills (~1.5 min on 2 cores) into ~/.cache/embedscope/static; later runs load it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedscope.encoders.base import Encoder, is_empty_query
from embedscope.encoders.registry import create_encoder


@pytest.mark.slow
def test_static_distilled_offline_ranks_paraphrases_and_round_trips(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = create_encoder("static")
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
