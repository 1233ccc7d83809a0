"""One contract, one check run over every text encoder in the registry (like scikit-learn's
`check_estimator`): a new encoder gets these checks by being registered, with no test of its own.

Checked on 200 real books: parameters validated and recorded by `config()`, which rebuilds the
encoder; `encode` refuses before `fit` where the encoder learns; dense float32 or CSR float32 of
the declared dimension, finite, unit length where the metric is cosine; an empty batch; queries in
the documents' space; the same vectors after save and load, and on a second call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embedscope.encoders.base import Encoder, NotFittedError
from embedscope.encoders.registry import create_encoder, encoder_class, encoder_names
from embedscope.errors import EmbedscopeError

TEXT_ENCODERS = [n for n in encoder_names() if encoder_class(n).encodes_text]
# smaller than the defaults where the defaults would make this check slow, never a different kind
SMALL: dict[str, dict] = {
    "lsa": {"n_components": 32},
    "lda": {"n_components": 8, "max_iter": 3},
    "word2vec": {"vector_size": 32, "epochs": 3},
    "torch_word2vec": {"vector_size": 32, "epochs": 1},
    "minilm": {"max_seq_length": 64},
    # a few training steps; still the OpenVINO document and ONNX query paths of its tuned weights
    "tuned": {"batch_size": 32, "train_seq_length": 32, "max_seq_length": 64},
}
SLOW = {"minilm", "static", "torch_word2vec", "tuned"}


@pytest.fixture(scope="module")
def texts(books_frame: pd.DataFrame) -> list[str]:
    frame = books_frame.dropna(subset=["title", "description"]).head(200)
    return (frame["title"] + ". " + frame["description"]).tolist()


def _dense(x: np.ndarray | sp.csr_matrix) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _params(name: str) -> list:
    marks = [pytest.mark.slow] if name in SLOW else []
    return pytest.param(name, marks=marks, id=name)


def test_every_text_encoder_is_checked() -> None:
    assert {"onehot", "bow", "tfidf", "bm25", "lsa", "lda", "word2vec", "minilm", "static"} <= set(
        TEXT_ENCODERS
    )


@pytest.mark.parametrize("name", [_params(n) for n in TEXT_ENCODERS])
def test_encoder_contract(name: str, texts: list[str], tmp_path: Path) -> None:
    params = SMALL.get(name, {})
    cls = encoder_class(name)
    with pytest.raises(EmbedscopeError, match="no parameter 'no_such_param'"):
        create_encoder(name, {"no_such_param": 1})

    enc = create_encoder(name, params)
    config = enc.config()
    assert config == {"name": name, "params": {**cls.defaults, **params}}
    assert create_encoder(config["name"], config["params"]).config() == config

    if cls.requires_fit:
        with pytest.raises(NotFittedError):
            enc.encode(texts[:2])
    assert enc.fit(texts) is enc

    docs = enc.encode(texts)
    assert docs.shape == (len(texts), enc.dim)
    assert docs.dtype == np.float32
    assert sp.isspmatrix_csr(docs) if cls.sparse else isinstance(docs, np.ndarray)
    dense = _dense(docs)
    assert np.isfinite(dense).all()
    if cls.metric == "cosine":
        norms = np.linalg.norm(dense, axis=1)
        assert np.allclose(norms[norms > 0], 1.0, atol=1e-3)
        assert (norms > 0).mean() > 0.95  # nearly every real text gets a vector
    assert enc.encode([]).shape[0] == 0

    queries = enc.encode_queries(["a mystery in a small village", texts[0][:200]])
    assert queries.shape == (2, enc.dim)

    again = _dense(enc.encode(texts[:20]))
    assert np.allclose(again, dense[:20], atol=1e-5)
    enc.save(tmp_path / "enc")
    loaded = Encoder.load(tmp_path / "enc")
    assert loaded.config() == config
    assert np.allclose(_dense(loaded.encode(texts[:20])), dense[:20], atol=1e-4)
