"""One contract, one check run over every encoder in the registry (like scikit-learn's
`check_estimator`): a new encoder gets these checks by being registered, with no test of its own.
Behavioural encoders (learnt from interactions, not text) have their own check at the end.

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
from embedscope.encoders.registry import (
    create_encoder,
    encoder_class,
    encoder_from_bytes,
    encoder_names,
    load_encoder,
)
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
    "static": {"epochs": 2},
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
    loaded = load_encoder(tmp_path / "enc")
    assert loaded.config() == config
    assert np.allclose(_dense(loaded.encode(texts[:20])), dense[:20], atol=1e-4)


# --- behavioural encoders: learnt from interactions, not text ------------------------------------------
BEHAVIOURAL = [n for n in encoder_names() if not encoder_class(n).encodes_text]
SMALL_BEHAVIOURAL: dict[str, dict] = {
    "item2vec": {"vector_size": 16, "epochs": 1, "workers": 1},
    "als": {"factors": 16, "iterations": 3},
    "ease": {"l2": 200.0, "vector_size": 16},
    "itemknn": {"k": 20, "shrink": 5.0, "vector_size": 16},
}
MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k"


def test_packed_encoder_unpacks_on_pythons_without_the_tar_filter(
    texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11.0-3.11.3 (Debian 12's python3 is 3.11.2) have no tarfile "data" filter: a packed
    encoder (a PostgreSQL version, a Ray actor's copy) still unpacks and encodes as before, and a
    pack holding anything but plain files and folders under its root is refused."""
    import io
    import tarfile

    enc = create_encoder("lsa", {"n_components": 16}).fit(texts)
    blob = enc.to_bytes()
    monkeypatch.delattr(tarfile, "data_filter", raising=False)  # absent already on those Pythons
    again = encoder_from_bytes(blob)
    assert np.array_equal(_dense(again.encode(texts[:20])), _dense(enc.encode(texts[:20])))
    for name, kind in (("../outside.json", tarfile.REGTYPE), ("encoder/link", tarfile.SYMTYPE)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            member = tarfile.TarInfo(name)
            member.type, member.linkname = kind, "/etc/passwd"
            tar.addfile(member, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        with pytest.raises(EmbedscopeError, match="not a file or folder inside it"):
            encoder_from_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def movielens_slice(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Every movie and the first 10,000 ratings of MovieLens 100K."""
    if not (MOVIELENS / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {MOVIELENS} (../shared/data is absent)")
    from embedscope import Collection
    from embedscope.recommend import load_interactions
    from embedscope.sources_movielens import read_movielens_items, read_movielens_ratings

    col = Collection.create("mlslice", root=tmp_path_factory.mktemp("mlslice"))
    col.ingest(read_movielens_items(MOVIELENS), id_field="id", text="text", metadata=["title", "year"])
    load_interactions(col, read_movielens_ratings(MOVIELENS).head(10_000))
    return col


def _state(enc: Encoder) -> list[np.ndarray]:
    """The learnt state a behavioural encoder carries besides its vectors (item2vec's context
    vectors, EASE / ItemKNN's item x item matrix)."""
    out = []
    for attr in ("context", "weights"):
        value = getattr(enc, attr, None)
        if value is not None:
            out.append(value.toarray() if sp.issparse(value) else np.asarray(value))
    return out


def test_every_behavioural_encoder_is_checked() -> None:
    assert {"item2vec", "als", "ease", "itemknn"} <= set(BEHAVIOURAL)


@pytest.mark.parametrize("name", BEHAVIOURAL)
def test_behavioural_encoder_contract(name: str, movielens_slice, tmp_path: Path) -> None:  # noqa: ANN001
    """Parameters validated and recorded; trained on interactions into an ordinary version (float32,
    unit length, the declared dimension, only items with interactions); no text encoding; the learnt
    state survives save/load; recommendations and similar work on it."""
    from embedscope.recommend import Interactions, Recommender, embed_behaviour

    col = movielens_slice
    params = SMALL_BEHAVIOURAL.get(name, {})
    cls = encoder_class(name)
    with pytest.raises(EmbedscopeError, match="no parameter 'no_such_param'"):
        create_encoder(name, {"no_such_param": 1})
    enc = create_encoder(name, params)
    config = enc.config()
    assert config == {"name": name, "params": {**cls.defaults, **params}}
    assert create_encoder(config["name"], config["params"]).config() == config
    with pytest.raises(EmbedscopeError, match="cannot encode text"):
        enc.encode(["a film about space"])

    info = embed_behaviour(col, name, params, version=f"c-{name}")
    inter = Interactions.of(col)
    assert info.encoder == config and info.dim == enc.dim
    assert info.count == inter.frame["item"].nunique()  # every item with interactions, nothing else
    ids, vectors = col.vectors(info.name)
    assert vectors.dtype == np.float32 and vectors.shape == (info.count, enc.dim)
    assert np.isfinite(vectors).all() and set(ids) <= set(inter.frame["item"])
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-3) and (norms > 0).mean() > 0.95

    stored = col.encoder(info.name)
    assert stored.config() == config
    for state in _state(stored):
        assert state.shape[0] == info.count
    again = encoder_from_bytes(stored.to_bytes())
    assert again.config() == config
    assert all(np.array_equal(a, b) for a, b in zip(_state(again), _state(stored), strict=True))

    user = inter.frame["user"].value_counts().index[0]
    seen = set(inter.history(user)["item"])
    res = Recommender(col, info.name).recommend(user, k=10, explain=False)
    assert len(res.items) == 10 and not seen & {r.id for r in res.items} and res.version == info.name
    hits = col.similar(ids[0], k=5, version=info.name)
    assert len(hits) == 5 and ids[0] not in {h.id for h in hits}
