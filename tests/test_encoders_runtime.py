"""Which runtime and arithmetic run MiniLM: `precision=auto` by the CPU's features, queries by batch
size (pure functions, checked on given flag sets), what a version records of it, and that what the
choice runs agrees with sentence-transformers' fp32 on real books."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.encoders import runtime
from embedscope.encoders.registry import create_encoder, load_encoder
from embedscope.encoders.runtime import Plan, choose_plan, choose_query_runtime, parse_cpu_flags

# flags lines as /proc/cpuinfo prints them (shortened), one per kind of CPU in docs/design.md's table
SAPPHIRE_RAPIDS = "fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"
COOPER_LAKE_OR_ZEN4 = "fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16"
CASCADE_LAKE = "fpu sse2 avx avx2 fma avx512f avx512_vnni"
ALDER_LAKE = "fpu sse2 avx avx2 fma avx_vnni"
EPYC_ZEN3 = "fpu sse2 avx avx2 fma vaes vpclmulqdq"
OLD = "fpu sse2 avx"


def flags(line: str) -> frozenset[str]:
    return parse_cpu_flags(f"processor\t: 0\nmodel name\t: some CPU\nflags\t\t: {line}\n\nprocessor\t: 1\n")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    assert flags(SAPPHIRE_RAPIDS) == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
    assert flags(EPYC_ZEN3) == {"avx2"}
    assert flags(OLD) == frozenset()
    assert parse_cpu_flags("") == frozenset()  # not Linux, or no flags line: nothing known
    # "avx512_vnni" must not be mistaken for a substring of another flag, nor "avx2" of "avx")
    assert flags("avx avx512_vnnix") == frozenset()


def test_auto_picks_the_arithmetic_by_cpu_features() -> None:
    picked = {
        name: (plan.runtime, plan.precision)
        for name, line in {
            "amx": SAPPHIRE_RAPIDS,
            "avx512_bf16": COOPER_LAKE_OR_ZEN4,
            "avx512_vnni": CASCADE_LAKE,
            "avx_vnni": ALDER_LAKE,
            "avx2": EPYC_ZEN3,
            "older": OLD,
        }.items()
        for plan in [choose_plan("auto", flags(line))]
    }
    assert picked == {
        "amx": ("openvino", "bf16"),
        "avx512_bf16": ("openvino", "bf16"),
        "avx512_vnni": ("openvino", "int8"),
        "avx_vnni": ("openvino", "int8"),
        "avx2": ("openvino", "f32"),
        "older": ("openvino", "f32"),
    }
    # explicit choices keep running where they ran; bf16 without bf16 hardware says it runs f32
    assert choose_plan("fp32", flags(SAPPHIRE_RAPIDS)) == Plan("torch", "fp32", "fp32 asked: PyTorch")
    assert choose_plan("int8", flags(EPYC_ZEN3)).precision == "int8"
    assert choose_plan("bf16", flags(SAPPHIRE_RAPIDS)).precision == "bf16"
    assert choose_plan("bf16", flags(EPYC_ZEN3)).precision == "f32"
    # on a GPU, auto is PyTorch bf16 (the previous default) whatever the CPU
    assert choose_plan("auto", flags(CASCADE_LAKE), "cuda") == Plan("torch", "bf16", "cuda: PyTorch")


def test_query_runtime_by_batch_size() -> None:
    bf16 = Plan("openvino", "bf16", "")
    f32 = Plan("openvino", "f32", "")
    fp32 = Plan("torch", "fp32", "")
    int8 = Plan("openvino", "int8", "")
    limit = runtime.QUERY_ONNX_MAX_TEXTS
    # a search's one query, the server's micro-batches: ONNX Runtime
    assert [choose_query_runtime(n, p) for n in (1, limit) for p in (bf16, f32, fp32)] == ["onnx"] * 6
    # evaluate's batches: the documents' OpenVINO path; PyTorch documents keep ONNX Runtime
    assert choose_query_runtime(limit + 1, bf16) == choose_query_runtime(300, f32) == "documents"
    assert choose_query_runtime(300, fp32) == "onnx"
    # int8 queries share their documents' arithmetic; query_backend=torch turns ONNX Runtime off
    assert choose_query_runtime(1, int8) == choose_query_runtime(300, int8) == "documents"
    assert choose_query_runtime(1, bf16, onnx_allowed=False) == "documents"
    assert choose_query_runtime(0, bf16) == "documents"


def test_auto_is_the_default_and_its_plan_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedscope.encoders import transformer

    assert create_encoder("minilm").params["precision"] == "auto"
    monkeypatch.setattr(transformer, "cpu_features", lambda: flags(CASCADE_LAKE))
    vnni = create_encoder("minilm")
    assert vnni.plan.precision == "int8" and vnni.requires_fit and not vnni.fitted  # calibrates first
    monkeypatch.setattr(transformer, "cpu_features", lambda: flags(EPYC_ZEN3))
    avx2 = create_encoder("minilm")
    assert avx2.plan == Plan("openvino", "f32", avx2.plan.reason) and avx2.fitted


@pytest.fixture(scope="module")
def few_books(books_frame: pd.DataFrame) -> list[str]:
    """20 real books of every length (the longest are cut at 256 word pieces)."""
    frame = books_frame.dropna(subset=["description"])
    frame = frame.iloc[np.argsort(frame.description.str.len().to_numpy())[:: len(frame) // 20]].head(20)
    return [f"{t}. {d}" for t, d in zip(frame.title, frame.description, strict=True)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.mark.slow
def test_the_chosen_runtime_agrees_with_fp32(few_books: list[str]) -> None:
    reference = create_encoder("minilm", {"precision": "fp32"}).encode(few_books)  # sentence-transformers
    for precision in ("auto", "bf16"):
        enc = create_encoder("minilm", {"precision": precision})
        vectors = enc.encode(few_books)
        assert cosines(vectors, reference).min() >= 0.999, (precision, enc.plan)
        # queries: one (ONNX Runtime) or a batch (the documents' path) land in the same space
        one = enc.encode_queries(few_books[:1])
        batch = enc.encode_queries(few_books * 2)  # more than QUERY_ONNX_MAX_TEXTS
        assert cosines(one, reference[:1]).min() >= 0.999
        np.testing.assert_allclose(batch, np.vstack([vectors, vectors]), atol=1e-5)  # the documents' path


@pytest.mark.slow
def test_a_version_records_what_ran_and_keeps_it(
    tmp_path: Path, books_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedscope.encoders import transformer

    col = Collection.create("few", root=tmp_path)
    col.ingest(books_frame.head(40), id_field="isbn13", template="{title}. {description}")
    info = col.embed("minilm", version="auto", index="exact")
    here = choose_plan("auto", runtime.cpu_features())
    ran = info.stats["runtime"]
    assert info.encoder["params"]["precision"] == "auto"
    assert (ran["runtime"], ran["precision"], ran["asked"]) == (here.runtime, here.precision, "auto")
    assert ran["cpu_features"] == sorted(runtime.cpu_features()) and ran["cpu"]
    assert ran["threads"] >= 1 and ran["streams"] >= 1 and ran["pinned"] is False  # shared cores: unpinned
    # the order the local engine sorts texts into does not leak into the rows
    texts = [i.text for i in col.items()]
    stored = col.load_version("auto").data
    direct = create_encoder("minilm").encode(texts)
    pos = {i: n for n, i in enumerate(stored.ids)}
    rows = np.asarray(stored.vectors)[[pos[i.id] for i in col.items()]]
    assert cosines(rows, direct).min() > 0.9999
    # on a machine where auto would pick bf16, the version keeps the arithmetic it was made with
    monkeypatch.setattr(transformer, "cpu_features", lambda: flags(SAPPHIRE_RAPIDS))
    assert create_encoder("minilm").plan.precision == "bf16"
    folder = tmp_path / "saved"
    col.load_version("auto").encoder.save(folder)
    assert json.loads((folder / "runtime.json").read_text()) == {
        "runtime": here.runtime,
        "precision": here.precision,
    }
    assert load_encoder(folder).plan.precision == here.precision


@pytest.mark.slow
def test_a_version_of_the_previous_default_is_kept_by_a_default_embed(
    tmp_path: Path, books_frame: pd.DataFrame
) -> None:
    """bf16 was the default; on this CPU `auto` runs what bf16 runs (bf16 where the CPU has it,
    f32 where it has neither bf16 nor VNNI), so embedding again with the defaults keeps every row
    and the version's config; fp32 (PyTorch) is another arithmetic and is encoded again."""
    col = Collection.create("few", root=tmp_path)
    col.ingest(books_frame.head(20), id_field="isbn13", template="{title}. {description}")
    col.embed("minilm", {"precision": "bf16"}, version="v", index="exact")
    again = col.embed("minilm", version="v")
    if create_encoder("minilm").plan.precision == "int8":  # a VNNI CPU: auto is another arithmetic
        assert again.stats["encoded"] == 20
        return
    assert again.stats["encoded"] == 0 and again.stats["reused"] == 20
    assert again.encoder["params"]["precision"] == "bf16"
    col.delete_version("v")  # else `auto` would copy v's rows into w: the same arithmetic as v's
    col.embed("minilm", {"precision": "fp32"}, version="w", index="exact")
    assert col.embed("minilm", version="w").stats["encoded"] == 20
