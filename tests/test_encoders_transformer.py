"""MiniLM's precisions: the choice is part of the version's config, and the fast ones (OpenVINO bf16,
calibrated int8) retrieve what fp32 retrieves on real books."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.encoders.registry import create_encoder, encoder_from_bytes, load_encoder
from embedscope.errors import EmbedscopeError


def test_precision_is_recorded_and_rebuilds_the_encoder(tmp_path: Path) -> None:
    for precision in ("fp32", "bf16", "int8"):
        enc = create_encoder("minilm", {"precision": precision})
        cfg = enc.config()
        assert cfg["params"]["precision"] == precision
        assert create_encoder(cfg["name"], cfg["params"]).config() == cfg
        # int8 learns (its calibration); fp32/bf16 do not
        assert enc.requires_fit == (precision == "int8") and enc.fitted == (precision != "int8")
    with pytest.raises(EmbedscopeError, match="precision must be one of auto, fp32, bf16, int8"):
        create_encoder("minilm", {"precision": "int4"})
    with pytest.raises(EmbedscopeError, match="CPU only"):
        create_encoder("minilm", {"precision": "int8", "device": "cuda"})
    # a config stored without `precision` was made when bf16 was the default: it runs bf16's plan
    # (not whatever `auto` would pick here, which could be int8 and need a calibration it lacks)
    (tmp_path / "encoder.json").write_text(json.dumps({"name": "minilm", "params": {"pooling": "mean"}}))
    loaded = load_encoder(tmp_path)
    assert loaded.plan.runtime == "openvino" and loaded.plan == loaded._choose_plan("bf16")


def test_int8_must_be_calibrated_before_encoding() -> None:
    from embedscope.encoders.base import NotFittedError

    with pytest.raises(NotFittedError, match="fitted"):
        create_encoder("minilm", {"precision": "int8"}).encode(["a text"])


@pytest.fixture(scope="module")
def precisions(books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """300 real books embedded in fp32, bf16 and int8 (int8 calibrated on them, cached per machine)."""
    col = Collection.create("books", root=tmp_path_factory.mktemp("precisions"))
    col.ingest(
        books_frame.head(300), id_field="isbn13", template="{title}. {description}", metadata=["title"]
    )
    for precision in ("fp32", "bf16", "int8"):
        col.embed("minilm", {"precision": precision}, version=precision, index="exact")
    return col


@pytest.mark.slow
def test_fast_precisions_retrieve_what_fp32_retrieves(
    precisions: Collection, books_frame: pd.DataFrame
) -> None:
    # queries: the first sentence of 60 books that are not in the collection (short, real, and with
    # no exact duplicate to find, so the ranking among near neighbours is what is compared)
    queries = [str(d).split(". ")[0] for d in books_frame.description.dropna().iloc[400:460]]
    top = {
        v: [[h.id for h in precisions.search(q, k=10, version=v)] for q in queries]
        for v in ("fp32", "bf16", "int8")
    }
    for version, floor in (("bf16", 0.95), ("int8", 0.85)):
        top1 = sum(a[0] == b[0] for a, b in zip(top["fp32"], top[version], strict=True)) / len(queries)
        overlap = sum(len(set(a) & set(b)) / 10 for a, b in zip(top["fp32"], top[version], strict=True))
        # bf16 agrees to cosine > 0.9999, so only exact ties may swap; int8 (cosine ~0.995) may swap
        # neighbours whose scores are within ~0.01, which a few of 60 queries have. A broken model
        # (wrong pooling, unquantised scales, per-tensor int8 at cosine 0.88) agrees on far fewer.
        assert top1 >= floor, f"{version}: top-1 agrees with fp32 on {top1:.0%} of queries"
        assert overlap / len(queries) >= floor, f"{version}: top-10 overlap {overlap / len(queries):.2f}"


@pytest.mark.slow
def test_int8_version_keeps_its_calibrated_model(precisions: Collection) -> None:
    info = {v.name: v for v in precisions.versions()}["int8"]
    assert info.encoder["params"]["precision"] == "int8"
    loaded = precisions.load_version("int8").encoder
    assert loaded._int8_xml is not None and loaded._int8_xml.exists()  # copied into the version
    # re-embedding with the same config reuses every row (and the calibrated model)
    again = precisions.embed("minilm", {"precision": "int8"}, version="int8")
    assert again.stats["encoded"] == 0 and again.stats["reused"] == 300
    # packed and unpacked as the PostgreSQL store and Ray actors do: the folder it was loaded from
    # is gone, yet it encodes as before and can be saved again (it had kept a path into the folder)
    texts = [i.text for i in precisions.items()[:5]]
    moved = encoder_from_bytes(loaded.to_bytes())
    np.testing.assert_allclose(moved.encode(texts), loaded.encode(texts), atol=1e-6)
    moved.save(Path(precisions.store.path).parent / "resaved")


@pytest.mark.slow
def test_drift_between_precisions_is_one_command(
    precisions: Collection, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from embedscope.cli import main

    monkeypatch.setenv("EMBEDSCOPE_HOME", str(Path(precisions.store.path).parent))
    monkeypatch.setattr(sys, "argv", ["embedscope", "drift", "books", "fp32", "int8", "--json"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert (exc.value.code or 0) == 0
    out = json.loads(capsys.readouterr().out)["versions"]
    assert out["vector"]["mean_cosine"] > 0.98 and out["neighbour_jaccard"]["mean"] > 0.6


@pytest.mark.slow
def test_embed_precision_flag(
    tmp_path: Path, books_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from embedscope.cli import main

    monkeypatch.setenv("EMBEDSCOPE_HOME", str(tmp_path))
    col = Collection.create("few", root=tmp_path)
    col.ingest(books_frame.head(20), id_field="isbn13", template="{title}. {description}")

    def cli(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["embedscope", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        return int(exc.value.code or 0), capsys.readouterr().err

    code, err = cli("embed", "few", "--precision", "fp32", "-p", "precision=bf16")
    assert code == 2 and "error:" in err and "contradicts" in err
    code, err = cli("embed", "few", "--encoder", "bm25", "--precision", "int8")
    assert code == 2 and "no parameter 'precision'" in err
    code, err = cli("embed", "few", "--precision", "fp32", "--version", "exact32")
    assert code == 0, err
    version = Collection.open("few", root=tmp_path).store.get_version("exact32")
    assert version.encoder["params"]["precision"] == "fp32"


def test_fast_tokenizer_gives_the_ids_of_sentence_transformers_tokenizer(books_frame: pd.DataFrame) -> None:
    """The OpenVINO and ONNX paths tokenise with `tokenizers` alone; every real book (and odd
    text: empty, accents, ligatures, CJK, special-token text, a text past 256 word pieces) gets
    the same model inputs as through sentence-transformers' tokenizer, in batches of mixed length."""
    from embedscope.encoders.runtime import tokenize
    from embedscope.encoders.transformer import (
        fast_tokenizer,
        load_sentence_transformer,
        resolve_model_path,
    )

    fast = fast_tokenizer(resolve_model_path("all-MiniLM-L6-v2"), 256)
    assert fast is not None
    reference = load_sentence_transformer("all-MiniLM-L6-v2", 256).tokenizer
    books = books_frame.dropna(subset=["description"])
    texts = [f"{t}. {d}" for t, d in zip(books.title, books.description, strict=True)]
    texts += ["", "  ", "Ünïcödé ﬁne café — 東京の本", "[SEP] [CLS] [PAD] x", "word " * 400]
    for size in (1, 64):
        for start in range(0, len(texts), size if size > 1 else 97):
            batch = texts[start : start + size]
            ours, theirs = tokenize(fast, batch, 256), tokenize(reference, batch, 256)
            assert ours.keys() == theirs.keys()
            for name, ids in ours.items():
                assert np.array_equal(ids, theirs[name]), (name, batch[0][:60])


def test_fast_tokenizer_declines_models_it_does_not_match(tmp_path: Path) -> None:
    """A folder without sentence-transformers' files, or with lower-casing, accents or padding
    of its own that transformers would apply, keeps the model's own tokenizer (None here)."""
    import shutil

    from embedscope.encoders.transformer import fast_tokenizer, resolve_model_path

    assert fast_tokenizer(str(tmp_path), 256) is None
    model = Path(resolve_model_path("all-MiniLM-L6-v2"))
    copy = tmp_path / "model"
    copy.mkdir()
    for name in ("modules.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(model / name, copy / name)
    config = copy / "sentence_bert_config.json"
    config.write_text(json.dumps({"max_seq_length": 256, "do_lower_case": True}))
    assert fast_tokenizer(str(copy), 256) is None
    config.write_text(json.dumps({"max_seq_length": 256}))
    assert fast_tokenizer(str(copy), 256) is not None
    # settings transformers takes from tokenizer_config.json over tokenizer.json's
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    for key, value in (("do_lower_case", False), ("strip_accents", False), ("padding_side", "left")):
        (copy / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, key: value}))
        assert fast_tokenizer(str(copy), 256) is None, key


@pytest.mark.slow
def test_a_search_process_does_not_load_torch(tmp_path: Path, books_frame: pd.DataFrame) -> None:
    """A bf16 version's documents (OpenVINO) and queries (ONNX Runtime) need no PyTorch once the
    exports are cached: a fresh process that searches imports neither torch nor
    sentence-transformers (~5 s of start-up), and gets the same hits as this process."""
    import subprocess

    col = Collection.create("few", root=tmp_path)
    col.ingest(books_frame.head(40), id_field="isbn13", template="{title}. {description}")
    col.embed("minilm")
    here = [h.id for h in col.search("a story of war and soldiers", k=5)]  # caches the exports
    script = (
        "import sys; from embedscope import Collection; "
        f"c = Collection.open('few', root={str(tmp_path)!r}); "
        "c.embed('minilm', refit=True); "  # documents again, through OpenVINO
        "print([h.id for h in c.search('a story of war and soldiers', k=5)]); "
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    hits, loaded = out.stdout.strip().splitlines()[-2:]
    assert loaded == "[]" and hits == str(here)
