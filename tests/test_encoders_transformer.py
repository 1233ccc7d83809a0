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
from embedscope.encoders.base import Encoder
from embedscope.encoders.registry import create_encoder
from embedscope.errors import EmbedscopeError


def test_precision_is_recorded_and_rebuilds_the_encoder(tmp_path: Path) -> None:
    for precision in ("fp32", "bf16", "int8"):
        enc = create_encoder("minilm", {"precision": precision})
        cfg = enc.config()
        assert cfg["params"]["precision"] == precision
        assert create_encoder(cfg["name"], cfg["params"]).config() == cfg
        # int8 learns (its calibration); fp32/bf16 do not
        assert enc.requires_fit == (precision == "int8") and enc.fitted == (precision != "int8")
    with pytest.raises(EmbedscopeError, match="precision must be one of fp32, bf16, int8"):
        create_encoder("minilm", {"precision": "int4"})
    with pytest.raises(EmbedscopeError, match="CPU only"):
        create_encoder("minilm", {"precision": "int8", "device": "cuda"})
    # a config stored without `precision` (or with the previous default) loads as today's default
    (tmp_path / "encoder.json").write_text(json.dumps({"name": "minilm", "params": {"pooling": "mean"}}))
    assert Encoder.load(tmp_path).params["precision"] == "bf16"


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
    moved = Encoder.from_bytes(loaded.to_bytes())
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
