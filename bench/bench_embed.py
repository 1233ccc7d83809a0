"""MiniLM documents/s on the CPU: sentence-transformers' default fp32 `encode` vs every candidate,
measured in one run, with SciFact retrieval quality beside each and the first-build cost.

    python bench/bench_embed.py                 # ~10 min on 2 idle cores (cold caches)
    python bench/bench_embed.py --no-quality    # speed only
    python bench/bench_embed.py --device cuda   # GPU: sentence-transformers vs embedscope's precisions

Texts: books.csv as embedscope ingests it ("{title}. {description}"), a fixed random sample. The
sample is cut into rounds of --chunk texts; in each round every candidate encodes the same chunk,
in alternating order, so machine noise hits all of them alike. `speedup` is the median over rounds
of (baseline time / candidate time), with the lowest and highest round beside it; `docs_per_s` is
the candidate's total. `min_cosine` is the worst cosine to the baseline's vectors.

Quality is retrieval, not cosine: nDCG@10 and Recall@100 on SciFact's 300 test queries, from the
evaluation harness (`embedscope evaluate ../shared/data/beir/scifact -e minilm -p minilm.precision=P`),
whose corpus vectors are cached in the collection beir-scifact under $EMBEDSCOPE_HOME.

First builds (OpenVINO conversion, int8 calibration, ONNX export and quantisation) are timed in a
fresh cache folder, so `build_s` is what a user's first run pays. `query_p50_ms`: one SciFact query
at a time through the encoder's query path (what the server runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, report  # noqa: E402

SCIFACT = SHARED_DATA / "beir" / "scifact"
Encode = Callable[[list[str]], np.ndarray]


def books_texts(path: Path, n: int, seed: int = 0) -> list[str]:
    import pandas as pd

    frame = pd.read_csv(path).dropna(subset=["description"])
    texts = [f"{t}. {d}" for t, d in zip(frame.title, frame.description, strict=True)]
    rows = np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False)
    return [texts[r] for r in rows]


def unit(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def interleaved(candidates: dict[str, Encode], texts: list[str], chunk: int) -> dict[str, dict[str, Any]]:
    """Per-round times of every candidate on the same chunk; the first candidate is the baseline."""
    for fn in candidates.values():
        fn(texts[:8])  # warm-up: lazy loading and compilation stay out of the timing
    names = list(candidates)
    times: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rounds = [texts[s : s + chunk] for s in range(0, len(texts), chunk)]
    for r, part in enumerate(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            out = candidates[name](part)
            times[name].append(time.perf_counter() - started)
            vectors[name].append(unit(out))
        base = times[names[0]][-1]
        print(f"round {r + 1}/{len(rounds)}: " + " ".join(f"{n}={base / times[n][-1]:.2f}x" for n in names))
    base_t = np.array(times[names[0]])
    base_v = np.concatenate(vectors[names[0]])
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        ratio = base_t / np.array(times[name])
        out[name] = {
            "docs_per_s": round(len(texts) / sum(times[name]), 1),
            "speedup": round(float(np.median(ratio)), 2),
            "speedup_range": f"{ratio.min():.2f}-{ratio.max():.2f}",
            "min_cosine": round(float((np.concatenate(vectors[name]) * base_v).sum(1).min()), 5),
        }
    return out


def query_latency(encoders: dict[str, Any], n: int = 200) -> dict[str, float]:
    """p50 ms of encode_queries([q]) per encoder, interleaved query by query."""
    queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()][:n]
    for enc in encoders.values():
        enc.encode_queries(queries[:5])
    ms: dict[str, list[float]] = {k: [] for k in encoders}
    for i, q in enumerate(queries):
        for name in list(encoders) if i % 2 == 0 else list(encoders)[::-1]:
            started = time.perf_counter()
            encoders[name].encode_queries([q])
            ms[name].append((time.perf_counter() - started) * 1000)
    return {k: round(float(np.median(v)), 2) for k, v in ms.items()}


def scifact_quality(precisions: list[str]) -> dict[str, dict[str, float]]:
    """nDCG@10 and Recall@100 per precision from the evaluation harness (vectors cached)."""
    from embedscope.evaluate.ir import evaluate_beir

    out = {}
    for p in precisions:
        started = time.perf_counter()
        res = evaluate_beir(SCIFACT, "minilm", params={"minilm": {"precision": p}}).result("minilm")
        out[p] = {
            "ndcg10": round(res.metrics["nDCG@10"], 4),
            "recall100": round(res.metrics["Recall@100"], 4),
        }
        print(f"SciFact precision={p}: {out[p]} ({time.perf_counter() - started:.0f} s)")
    return out


# --- candidates that embedscope does not ship (measured so the choice is visible) -----------------
def ort_int8_static(st: Any, calibration: list[str], max_len: int) -> tuple[Any, float]:
    """ONNX Runtime static int8 (QDQ, per-channel weights), calibrated on `calibration`. Only
    MatMuls with a constant weight are quantised: the attention products (activation x activation)
    stay in fp32, the layers that hurt most when quantised."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from embedscope.encoders import onnx_query
    from embedscope.encoders.runtime import tokenize
    from embedscope.encoders.transformer import resolve_model_path

    started = time.perf_counter()
    fp32 = onnx_query.export_path(resolve_model_path("all-MiniLM-L6-v2"))
    if not fp32.exists():
        onnx_query.export(st, fp32)
    pre = fp32.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    weights = {i.name for i in graph.initializer}
    with_weight = [n.name for n in graph.node if n.op_type == "MatMul" and any(i in weights for i in n.input)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.texts = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            text = next(self.texts, None)
            return None if text is None else tokenize(st.tokenizer, [text], max_len)

    target = fp32.with_name("int8-static.onnx")
    quantize_static(
        str(pre),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=with_weight,
    )
    build_s = round(time.perf_counter() - started, 1)
    return onnx_query.session(target), build_s


def ort_encoder(session: Any, tokenizer: Any, max_len: int, batch: int = 32) -> Encode:
    from embedscope.encoders.runtime import pool, tokenize

    def run(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts])
        for s in range(0, len(texts), batch):
            rows = order[s : s + batch]
            feed = tokenize(tokenizer, [texts[r] for r in rows], max_len)
            out[rows] = pool(session.run(None, feed)[0], feed["attention_mask"])
        return out

    return run


def openvino_variant(
    xml: Path, tokenizer: Any, max_len: int, *, hint: str, streams: str, sort: bool
) -> Encode:
    """The shipped OpenVINO path with one setting changed (precision hint, streams, length sorting)."""
    import openvino as ov
    import torch

    from embedscope.encoders import openvino_backend as ovb
    from embedscope.encoders.runtime import pool, tokenize

    compiled = ov.Core().compile_model(
        str(xml),
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        },
    )
    if sort:
        return lambda texts: ovb.encode(compiled, tokenizer, texts, max_seq_length=max_len)

    def unsorted(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

        def done(request: Any, rows: np.ndarray) -> None:
            mask = request.get_tensor("attention_mask").data
            out[rows] = pool(request.get_output_tensor(0).data, mask)

        queue.set_callback(done)
        for s in range(0, len(texts), ovb.REQUEST_BATCH):
            rows = np.arange(s, min(s + ovb.REQUEST_BATCH, len(texts)))
            queue.start_async(tokenize(tokenizer, [texts[r] for r in rows], max_len), rows)
        queue.wait_all()
        return out

    return unsorted


def cpu_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import torch
    from sentence_transformers import SentenceTransformer

    from embedscope.encoders import openvino_backend as ovb
    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.transformer import resolve_model_path

    path = resolve_model_path(args.model)
    texts = books_texts(args.books, args.n)
    calibration = ovb.calibration_sample(books_texts(args.books, 10_000, seed=1))
    st = SentenceTransformer(path, device="cpu")
    st_bf16 = SentenceTransformer(path, device="cpu", model_kwargs={"dtype": torch.bfloat16})
    max_len = int(st.max_seq_length)
    builds: dict[str, float] = {}

    shipped = {
        p: create_encoder("minilm", {"model": args.model, "precision": p}) for p in ("fp32", "bf16", "int8")
    }
    started = time.perf_counter()
    fp32_xml = shipped["bf16"]._fp32_xml()
    builds["OpenVINO conversion"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    shipped["int8"].fit(calibration)
    builds["OpenVINO int8 calibration (300 texts)"] = round(time.perf_counter() - started, 1)
    ort_int8, builds["ONNX export + ORT static int8"] = ort_int8_static(st, calibration, max_len)

    from embedscope.encoders import onnx_query

    ort_fp32 = onnx_query.session(onnx_query.export_path(path))
    candidates: dict[str, Encode] = {
        "sentence-transformers encode() fp32 (baseline)": lambda t: st.encode(t),
        "PyTorch bf16 weights (previous default; length-sorted)": lambda t: (
            st_bf16.encode(t, batch_size=64, convert_to_tensor=True).float().numpy()
        ),
        "ONNX Runtime fp32, length-sorted": ort_encoder(ort_fp32, st.tokenizer, max_len),
        "ONNX Runtime static int8 (QDQ, per-channel)": ort_encoder(ort_int8, st.tokenizer, max_len),
        "OpenVINO fp32 (f32 hint), 2 streams": openvino_variant(
            fp32_xml, st.tokenizer, max_len, hint="f32", streams="2", sort=True
        ),
        "OpenVINO bf16, 1 stream x 2 threads": openvino_variant(
            fp32_xml, st.tokenizer, max_len, hint="bf16", streams="1", sort=True
        ),
        "OpenVINO bf16, 2 streams, batches in corpus order": openvino_variant(
            fp32_xml, st.tokenizer, max_len, hint="bf16", streams="2", sort=False
        ),
        "embedscope precision=bf16 (OpenVINO, 2 streams, sorted)": lambda t: shipped["bf16"].encode(t),
        "embedscope precision=int8 (OpenVINO + NNCF)": lambda t: shipped["int8"].encode(t),
    }
    speed = interleaved(candidates, texts, args.chunk)
    latency = query_latency(shipped)
    quality = scifact_quality(["fp32", "bf16", "int8"]) if args.quality else {}
    source = {
        "sentence-transformers encode() fp32 (baseline)": "fp32",
        "embedscope precision=bf16 (OpenVINO, 2 streams, sorted)": "bf16",
        "embedscope precision=int8 (OpenVINO + NNCF)": "int8",
    }
    build_of = {
        "embedscope precision=bf16 (OpenVINO, 2 streams, sorted)": "OpenVINO conversion",
        "embedscope precision=int8 (OpenVINO + NNCF)": "OpenVINO int8 calibration (300 texts)",
        "ONNX Runtime static int8 (QDQ, per-channel)": "ONNX export + ORT static int8",
    }
    rows = []
    for name, s in speed.items():
        p = source.get(name)
        q = quality.get(p, {}) if p else {}
        rows.append(
            {
                "candidate": name,
                **s,
                "ndcg10": q.get("ndcg10", ""),
                "recall100": q.get("recall100", ""),
                "query_p50_ms": latency.get(p, "") if p else "",
                "build_s": builds.get(build_of.get(name, ""), ""),
            }
        )
    extra = {"builds_s": builds, "texts": len(texts), "chunk": args.chunk, "threads": torch.get_num_threads()}
    return rows, extra


def gpu_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """On a GPU: sentence-transformers fp32 vs embedscope's PyTorch precisions, several batch sizes."""
    from sentence_transformers import SentenceTransformer

    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.transformer import resolve_model_path

    texts = books_texts(args.books, args.n)
    st = SentenceTransformer(resolve_model_path(args.model), device=args.device)
    candidates: dict[str, Encode] = {"sentence-transformers encode() fp32 (baseline)": lambda t: st.encode(t)}
    for precision in ("fp32", "fp16", "bf16"):
        enc = create_encoder("minilm", {"model": args.model, "precision": precision, "device": args.device})
        for batch in (64, 256, 1024):
            candidates[f"embedscope precision={precision} batch={batch}"] = lambda t, enc=enc, batch=batch: (
                enc.encode(t, batch_size=batch)
            )
    return [{"candidate": k, **v} for k, v in interleaved(candidates, texts, args.chunk).items()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--books", type=Path, default=SHARED_DATA / "books" / "books.csv")
    parser.add_argument("--n", type=int, default=512, help="books texts timed (default 512)")
    parser.add_argument("--chunk", type=int, default=128, help="texts per interleaved round (default 128)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or local path")
    parser.add_argument("--no-quality", dest="quality", action="store_false", help="skip SciFact quality")
    parser.add_argument("--out", default="embed")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    if args.device.startswith("cuda"):
        rows = gpu_rows(args)
        report(f"{args.out}-cuda", f"MiniLM on {torch.cuda.get_device_name()}", rows, {"device": args.device})
        return
    # a fresh model cache: build_s is what a first run pays (the user's cache is left alone)
    with tempfile.TemporaryDirectory(prefix="embedscope-bench-cache-") as cache:
        os.environ["EMBEDSCOPE_CACHE"] = cache
        rows, extra = cpu_rows(args)
    load = os.getloadavg()
    title = (
        f"MiniLM on books.csv, CPU ({os.cpu_count()} cores, torch {torch.__version__}, "
        f"{extra['threads']} threads; load average {load[0]:.1f} at the end)"
    )
    report(args.out, title, rows, {"device": "cpu", "load_average": [round(x, 2) for x in load], **extra})


if __name__ == "__main__":
    main()
