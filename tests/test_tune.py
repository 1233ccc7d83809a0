"""The encoder tuned to the collection (embedscope/encoders/tune.py, `embedscope tune`): the pairs it
builds from real books, its batches, and a tuned version as an ordinary version (config recorded,
fitted state stored, surviving a restart and a re-embed, reproducible with its seed).

The training runs here are tiny (48 books, 3 steps of 16 pairs, 32 word pieces): what they check is
the plumbing and the determinism, not the quality (bench/bench_tune.py measures that)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope.encoders.tune import (
    ICT,
    TunedEncoder,
    build_pairs,
    ict_pair,
    make_batches,
    sentences,
    tuned_params,
)
from embedscope.errors import EmbedscopeError

META = ["title", "authors", "categories"]
#: tiny but real: fp32 PyTorch (no OpenVINO conversion; test_encoder_contract runs that path)
TINY = {
    "pairs": "title,categories,ict",
    "batch_size": 16,
    "train_seq_length": 32,
    "precision": "fp32",
    "query_backend": "torch",
}


def _records(frame: pd.DataFrame) -> tuple[list[str], list[dict]]:
    texts = (frame["title"] + ". " + frame["description"]).tolist()
    meta = [{k: (None if pd.isna(r[k]) else r[k]) for k in META} for _, r in frame.iterrows()]
    return texts, meta


@pytest.fixture(scope="module")
def five(books_frame: pd.DataFrame) -> tuple[list[str], list[dict]]:
    return _records(books_frame.dropna(subset=["description"]).head(5))


def test_pairs_built_from_real_books(five: tuple[list[str], list[dict]]) -> None:
    texts, meta = five
    for kind in ("title", "categories"):
        pairs = build_pairs(texts, meta, [kind], np.random.default_rng(0))
        assert len(pairs) == 5  # one pair per item
        for pair, text, m in zip(pairs, texts, meta, strict=True):
            assert pair.kind == kind and pair.anchor == m[kind]
            if kind == "title":  # the template put the title first: it is cut from the document
                assert text == f"{m['title']}. {pair.positive}"
            else:
                assert pair.positive == text
    ict = build_pairs(texts, meta, [ICT], np.random.default_rng(0))
    # ICT needs two sentences of five words or more (the title alone is not a second one)
    givers = [t for t in texts if sum(len(s.split()) >= 5 for s in sentences(t)) >= 2]
    assert len(ict) == len(givers) > 0
    for pair, text in zip(ict, givers, strict=True):
        parts = sentences(text)
        assert pair.anchor in parts and len(pair.anchor.split()) >= 5
        # the rest of the text, the query sentence cut out (kept in 10% of draws, as in ICT)
        assert pair.positive in (" ".join(s for s in parts if s != pair.anchor), " ".join(parts))
    # several kinds: each item gives one pair, of a kind drawn per item; the seed fixes the draw
    mixed = build_pairs(texts * 20, meta * 20, ["title", "categories", ICT], np.random.default_rng(1))
    assert len(mixed) == 100 and {p.kind for p in mixed} == {"title", "categories", ICT}
    again = build_pairs(texts * 20, meta * 20, ["title", "categories", ICT], np.random.default_rng(1))
    assert mixed == again


def test_pairs_refuse_unknown_fields_and_missing_metadata(five: tuple[list[str], list[dict]]) -> None:
    texts, meta = five
    with pytest.raises(EmbedscopeError, match="no item has metadata field 'genre'.*fields: authors"):
        build_pairs(texts, meta, ["genre", ICT], np.random.default_rng(0))
    with pytest.raises(EmbedscopeError, match="need the items' metadata"):
        build_pairs(texts, None, ["title"], np.random.default_rng(0))
    with pytest.raises(EmbedscopeError, match="loss must be one of mnrl, cached_mnrl"):
        TunedEncoder(loss="triplet")
    with pytest.raises(EmbedscopeError, match="pairs is empty"):
        TunedEncoder(pairs=" , ")
    assert TunedEncoder(pairs=["title", " ict", "title"]).params["pairs"] == "title,ict"


def test_ict_never_pairs_a_sentence_with_only_what_the_template_added() -> None:
    """A one-sentence description under the demo's template "{categories}. {text}" left ICT the
    genre as the rest: "any plot -> Fiction." pairs (838 of the books' 5,197)."""
    rng = np.random.default_rng(0)
    one = "Fiction. Armed with the latest technology, a scientist faces the dangers of the Congo jungle."
    assert ict_pair(one, rng) is None
    two = one + " The lost city of Zinj holds diamonds that three rivals will kill for."
    pair = ict_pair(two, rng)
    assert pair is not None and len(pair.positive.split()) > 5


def test_a_shared_value_gives_at_most_one_pair_per_batch_and_batches_stay_full(
    books_frame: pd.DataFrame,
) -> None:
    """The categories of 2,111 of the 5,197 books are "Fiction": a query can be in a batch once, so
    its surplus piled up as dozens of batches of two or three pairs (73 of 144 steps on the books,
    each a full optimiser step with almost no negatives). Now a value gives at most one pair per
    batch's worth of items (the others give a pair of another kind), and repeats spread over the
    batches."""
    texts, meta = _records(books_frame.dropna(subset=["description"]))
    pairs = build_pairs(texts, meta, ["title", "categories", ICT], np.random.default_rng(0), 64)
    assert len(pairs) == len(texts)
    per_batch = -(-len(texts) // 64)
    assert max(Counter(p.anchor for p in pairs).values()) <= per_batch
    assert sum(p.anchor == "Fiction" for p in pairs) == per_batch  # the cap binds, and only there
    batches = make_batches(pairs, 64, np.random.default_rng(0))
    sizes = sorted(len(b) for b in batches)
    assert sum(sizes) >= 0.97 * len(pairs) and sizes[1] == 64  # one partial batch at most
    for b in batches:
        assert len({pairs[i].anchor for i in b}) == len(b) and len({pairs[i].positive for i in b}) == len(b)


def test_batches_hold_no_duplicate_and_group_by_length(five: tuple[list[str], list[dict]]) -> None:
    texts, meta = five
    # 40 pairs whose queries are 5 categories (several books per category, as "Fiction" is)
    pairs = build_pairs(texts * 8, meta * 8, ["categories"], np.random.default_rng(0))
    batches = make_batches(pairs, 4, np.random.default_rng(0))
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used)) and all(2 <= len(b) <= 4 for b in batches)
    for b in batches:  # a repeated query or document would be its own false negative
        assert len({pairs[i].anchor for i in b}) == len(b) and len({pairs[i].positive for i in b}) == len(b)


def test_tuned_params_from_a_version_config() -> None:
    base = {
        "name": "minilm",
        "params": {"model": "all-MiniLM-L6-v2", "max_seq_length": 200, "precision": "int8"},
    }
    params = tuned_params(base, pairs="title,ict", epochs=2)
    assert params["base"] == "all-MiniLM-L6-v2" and params["max_seq_length"] == 200
    assert params["precision"] == "int8" and params["epochs"] == 2 and "model" not in params
    with pytest.raises(EmbedscopeError, match="not from encoder 'bm25'"):
        tuned_params({"name": "bm25", "params": {}})


def test_tuned_follows_precision_auto_and_always_trains() -> None:
    """`tuned` runs the arithmetic `precision=auto` picks for MiniLM on this CPU (the same OpenVINO
    and ONNX Runtime paths), yet training stays its fit whatever the plan: on an f32 or bf16 plan
    MiniLM needs no fit, and a tuned encoder that skipped it would encode with no model."""
    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.runtime import Plan

    enc, minilm = TunedEncoder(), create_encoder("minilm")
    assert (enc.plan.runtime, enc.plan.precision) == (minilm.plan.runtime, minilm.plan.precision)
    for plan in (Plan("openvino", "f32", "t"), Plan("openvino", "bf16", "t"), Plan("openvino", "int8", "t")):
        enc._set_plan(plan)
        assert enc.requires_fit and not enc.fitted
    # the reuse rule compares configs: never MiniLM's vectors for a tuned version, and the
    # parameters spelt alike compare equal
    assert not enc.same_vectors(minilm.config())
    assert enc.same_vectors(TunedEncoder(pairs="ict").config())
    assert not enc.same_vectors(TunedEncoder(seed=1).config())


def test_tune_starts_from_the_versions_model_settings_and_document() -> None:
    """`tune --from V` takes V's encoder settings and its document template (the tuned version
    encodes what V encodes, so the two differ in the model alone); a bare encoder name its defaults."""
    from types import SimpleNamespace

    from embedscope.cli.tune_cmd import base_config

    minilm = {"name": "minilm", "params": {"model": "all-MiniLM-L6-v2", "max_seq_length": 200}}
    stored = SimpleNamespace(name="minilm", encoder=minilm, document="{categories}. {text}")
    col = SimpleNamespace(name="books", versions=lambda: [stored])
    assert base_config(col, "minilm") == (minilm, "{categories}. {text}")
    config, document = base_config(SimpleNamespace(name="books", versions=list), "minilm")
    assert config["name"] == "minilm" and document is None


@pytest.fixture(scope="module")
def tuned_books(books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """48 real books with a tiny tuned version (and the 6 books added later by the re-embed test)."""
    from embedscope import Collection

    frame = books_frame.dropna(subset=["description"]).head(54)
    root = tmp_path_factory.mktemp("tuned")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EMBEDSCOPE_STORE", raising=False)
        col = Collection.create("books", root=root)
    col.ingest(frame.head(48), id_field="isbn13", template="{title}. {description}", metadata=META)
    info = col.embed("tuned", TINY, index="exact")
    return col, root, frame, info


@pytest.mark.slow
def test_tuned_version_records_its_training_and_stores_its_model(tuned_books) -> None:  # noqa: ANN001
    col, root, _, info = tuned_books
    params = info.encoder["params"]
    assert info.encoder["name"] == "tuned"
    recorded = {"base": "all-MiniLM-L6-v2", "pairs": "title,categories,ict", "epochs": 1}
    recorded.update({"loss": "mnrl", "batch_size": 16, "lr": 2e-5, "warmup": 0.1, "seed": 0})
    recorded["train_layers"] = 3
    assert {k: params[k] for k in recorded} == recorded
    enc = col.encoder("tuned")
    record = enc.training
    assert record["items"] == 48 and sum(record["pairs"].values()) == 48
    assert set(record["pairs"]) == {"title", "categories", ICT} and record["steps"] == 3
    # the fitted state lives with the version (like LSA's), named by its weights in the machine cache
    folder = next((root / "books" / "versions").glob("tuned*"))
    saved = next(folder.rglob("model.safetensors")).parent
    assert json.loads((saved.parent / "training.json").read_text())["digest"] == Path(enc._model_path()).name
    # the tuned weights differ from the base model's: the export caches cannot mix them up
    from embedscope.encoders import onnx_query
    from embedscope.encoders import openvino_backend as ovb
    from embedscope.encoders.transformer import resolve_model_path

    base = resolve_model_path("all-MiniLM-L6-v2")
    assert ovb.fp32_path(enc._model_path()) != ovb.fp32_path(base)
    assert onnx_query.export_path(enc._model_path()) != onnx_query.export_path(base)
    # train_layers=3: the embeddings and MiniLM's three lower layers are the base's, bit for bit;
    # every tensor of the three top layers moved
    from safetensors.numpy import load_file

    tuned, untouched = load_file(str(saved / "model.safetensors")), load_file(f"{base}/model.safetensors")
    assert record["layers_trained"] == 3 and record["layers"] == 6
    names = [n for n in tuned if n in untouched or f"bert.{n}" in untouched]
    lower = [n for n in names if "embeddings" in n or any(f"layer.{i}." in n for i in range(3))]
    top = [n for n in names if any(f"layer.{i}." in n for i in range(3, 6))]
    assert len(lower) > 20 and len(top) > 40
    original = {n: untouched.get(n, untouched.get(f"bert.{n}")) for n in names}
    assert all(np.array_equal(tuned[n], original[n]) for n in lower)
    assert all(not np.array_equal(tuned[n], original[n]) for n in top)


@pytest.mark.slow
def test_tuned_version_survives_a_restart_and_a_re_embed(tuned_books, run_cli, home: Path) -> None:  # noqa: ANN001
    import shutil

    from embedscope import Collection
    from embedscope.encoders.registry import create_encoder

    col, root, frame, info = tuned_books
    query = "a family saga in a small town"
    before = col.search(query, 5, version="tuned")
    # a restart: another process opens the stored version and answers the same
    shutil.copytree(root / "books", home / "books")
    out = run_cli("search", "books", query, "-v", "tuned", "-k", "5", "--json")
    assert out.returncode == 0, out.stderr
    assert [h["id"] for h in json.loads(out.stdout)] == [h.id for h in before]

    # a re-embed: new items are encoded with the stored tuned model, nothing is re-tuned
    col = Collection.open("books", root=root)
    old = col.encoder("tuned").training["digest"]
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=META)
    again = col.embed("tuned", TINY)
    assert again.stats["encoded"] == 6 and again.stats["reused"] == 48
    enc = col.encoder("tuned")
    assert enc.training["digest"] == old
    # another version with the same config copies the rows and the tuned model (the reuse rule)
    copy = col.embed("tuned", TINY, version="tuned-copy", index="exact")
    assert copy.stats["encoded"] == 0 and copy.stats["reused_from"] == "tuned"
    assert col.encoder("tuned-copy").training["digest"] == old
    ids, vectors = col.vectors("tuned")
    new = [str(i) for i in frame.isbn13.tail(6)]
    rows = [ids.index(i) for i in new]
    texts = [col.get(i).text for i in new]
    assert np.allclose(vectors[rows], enc.encode(texts), atol=1e-5)
    base = create_encoder("minilm", {"precision": "fp32"}).encode(texts)
    assert not np.allclose(vectors[rows], base, atol=1e-3)  # the tuned model, not the base


@pytest.mark.slow
def test_tuning_is_reproducible_with_its_seed(tuned_books) -> None:  # noqa: ANN001
    col, _, frame, _ = tuned_books
    first = {str(i) for i in frame.isbn13.head(48)}
    items = [i for i in col.items() if i.id in first]  # in the order the fit saw them
    texts, meta = [i.text for i in items], [i.metadata for i in items]
    record = col.encoder("tuned").training
    same = TunedEncoder(**TINY).fit_items(texts, meta)
    assert same.training["digest"] == record["digest"]  # the same weights, byte for byte
    assert same.training["losses"] == record["losses"]


@pytest.mark.slow
def test_tune_from_clicks(books_frame: pd.DataFrame, run_cli, home: Path) -> None:  # noqa: ANN001
    """`tune --from-clicks`: an experiment's (query, clicked item) pairs join the self-supervised
    ones (16 books: one training step)."""
    import random

    from embedscope import Collection
    from embedscope.experiments import Experiments

    col = Collection.create("books")
    frame = books_frame.dropna(subset=["description"]).head(16)
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=META)
    exps = Experiments.of(col)
    exp = exps.start("minilm", "tuned", name="loop")
    ids = [i.id for i in col.items()]
    coin = random.Random(0)
    for n, query in enumerate(["a book about god", "a novel of the sea", "a book about god"]):
        shown = exps.present(exp, query, lambda q: ids[:5], lambda q: ids[5:10], k=10, rng=coin)
        exps.click(exp.name, shown.id, position=n)
    exps.click(exp.name, shown.id, position=2)  # the same (query, item) again: one pair
    args = ["tune", "books", "--pairs", "title", "--from-clicks", "loop", "--batch-size", "32"]
    args += ["-p", "train_seq_length=32", "-p", "precision=fp32", "--version", "clicked", "--json"]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["version"]["encoder"]["params"]["clicks"] == "loop"
    assert result["training"]["pairs"] == {"title": 16, "clicks": 3}
    bad = run_cli("tune", "books", "--from", "nope")
    assert bad.returncode == 2 and "no version 'nope' to tune from" in bad.stderr


@pytest.mark.slow
def test_tuned_version_in_postgresql(tuned_books, pg_server, tmp_path: Path) -> None:  # noqa: ANN001
    """The PostgreSQL store keeps the tuned model in the database (the version's packed encoder):
    a fitted encoder object is embedded as is (nothing re-tuned), and a reopened collection
    searches with the same model."""
    from conftest import new_database

    from embedscope import Collection

    col, _, frame, _ = tuned_books
    enc = col.encoder("tuned")
    pg = Collection.create("books", root=tmp_path, store=new_database(pg_server))
    pg.ingest(frame.head(48), id_field="isbn13", template="{title}. {description}", metadata=META)
    info = pg.embed(enc, index="exact")
    assert info.encoder == enc.config() and info.stats["fit_seconds"] < 5
    again = Collection.open("books", root=tmp_path)
    assert again.encoder("tuned").training["digest"] == enc.training["digest"]
    ids, vectors = again.vectors("tuned")
    stored_ids, stored = col.vectors("tuned")  # the embedded store's vectors of the same books
    assert np.allclose(vectors, stored[[stored_ids.index(i) for i in ids]], atol=1e-5)
    query = enc.encode_queries(["a family saga in a small town"])[0]
    expected = [ids[r] for r in np.argsort(-(vectors @ query))[:5]]
    hits = again.search("a family saga in a small town", 5, version="tuned", collapse=False)
    assert [h.id for h in hits] == expected
