"""MiniLM on the CPU: sentence-transformers' fp32 `encode` against embedscope's runtimes, measured
side by side, with the CPU's features, the load, SciFact quality and the first-build cost beside.

    python bench/bench_embed.py                  # encode loop, every candidate (~10 min on 2 idle cores)
    python bench/bench_embed.py --no-quality     # speed only
    python bench/bench_embed.py --end-to-end     # `embedscope embed` of 2,000 books vs a plain script
    python bench/bench_embed.py --queries        # query encoding: one at a time and in batches, both runtimes
    python bench/bench_embed.py --padding        # padded tokens per batching scheme (tokenizer only, seconds)
    python bench/bench_embed.py --busy ...       # any mode beside a competing process spinning on one core
    OMP_NUM_THREADS=1 python bench/bench_embed.py ...   # one thread per candidate (per-core comparison)
    python bench/bench_embed.py --device cuda    # GPU: sentence-transformers vs embedscope's precisions

Every mode prints the CPU, its features (AMX / AVX-512 BF16 / VNNI / AVX2), what `precision=auto`
resolves to, and the load average before and after, and writes JSON to
bench/results/embed[-MODE]-CPUKIND[-busy].json (CPUKIND: amx, avx512bf16, vnni, avx2).

Encode loop (default). Texts: books.csv as embedscope ingests it ("{title}. {description}"), a
fixed random sample, cut into rounds of --chunk texts (256: what `embed` hands the encoder at a
time); in each round every candidate encodes the same texts, in alternating order, so machine
noise hits all of them alike. `speedup`: median over rounds of (baseline time / candidate time),
the lowest and highest round beside it; `cpu_speedup`: the same for the process's CPU time (all
threads), which other jobs disturb less than wall time; `docs_per_s`: the candidate's total;
`min_cosine`: worst cosine to the baseline's vectors. Quality: nDCG@10 and Recall@100 on SciFact's
300 test queries from the evaluation harness (`embedscope evaluate ../shared/data/beir/scifact
-e minilm -p minilm.precision=P`). `build_s`: first builds, timed in a fresh cache folder.

End to end (--end-to-end). A collection of the first --n books (default 2,000) is ingested into a
temporary home; each round runs, as fresh processes, a sentence-transformers script (import, load
the model, `encode` every text: what a user would write) and `embedscope embed COLLECTION
--refit` (import, load, encode, index, write the version) per precision, interleaved. Warm-up
runs first, so exports and calibrations are cached: model load, not first conversion, is timed.

Queries (--queries). p50 of one query at a time (short SciFact claims; the long requests of
bench/data/vibe/long-queries.jsonl, 100-250 words) and ms per query for a batch (all 40 long
requests, all 300 claims: what `evaluate` sends), through ONNX Runtime, through the documents'
path, and through `encode_queries` (the choice), against `encode` of the same texts as documents.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, report  # noqa: E402

SCIFACT = SHARED_DATA / "beir" / "scifact"
LONG_REQUESTS = Path(__file__).resolve().parent / "data" / "vibe" / "long-queries.jsonl"
Encode = Callable[[list[str]], np.ndarray]
BASELINE = "sentence-transformers encode() fp32 (baseline)"


# --- the machine -----------------------------------------------------------------------------------
def cpu_kind(features: frozenset[str]) -> str:
    """The row of docs/design.md's table this CPU belongs to."""
    if "amx_bf16" in features:
        return "amx"
    if "avx512_bf16" in features:
        return "avx512bf16"
    if features & {"avx512_vnni", "avx_vnni"}:
        return "vnni"
    return "avx2" if "avx2" in features else "other"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_facts() -> dict[str, Any]:
    from embedscope.encoders.runtime import choose_plan, cpu_features, cpu_name

    features = cpu_features()
    plan = choose_plan("auto", features)
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "cpu_features": sorted(features),
        "cpu_kind": cpu_kind(features),
        "auto": {"runtime": plan.runtime, "precision": plan.precision, "reason": plan.reason},
        "load_average_start": load_average(),
        # OMP_NUM_THREADS=1 gives every candidate one thread (torch and embedscope's runtimes read
        # it): a per-core comparison that other jobs distort less than two threads' barriers
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def facts_line(facts: dict[str, Any]) -> str:
    auto = facts["auto"]
    return (
        f"{facts['cpu']}, {facts['cores']} cores, features {','.join(facts['cpu_features']) or 'none'}; "
        f"auto = {auto['runtime']} {auto['precision']}; load average {facts['load_average_start'][0]} "
        f"at the start, {load_average()[0]} at the end"
        + (f"; OMP_NUM_THREADS={facts['omp_num_threads']}" if facts.get("omp_num_threads") else "")
        + ("; beside a competing process spinning on one core" if facts.get("busy") else "")
    )


@contextlib.contextmanager
def competing(busy: bool) -> Iterator[None]:
    """A second process spinning on one core for the duration, not pinned (the scheduler places
    it, as it would a user's other job)."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


# --- texts -------------------------------------------------------------------------------------------
def books_texts(path: Path, n: int, seed: int = 0) -> list[str]:
    import pandas as pd

    frame = pd.read_csv(path).dropna(subset=["description"])
    texts = [f"{t}. {d}" for t, d in zip(frame.title, frame.description, strict=True)]
    rows = np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False)
    return [texts[r] for r in rows]


def unit(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- the encode loop ---------------------------------------------------------------------------------
def interleaved(candidates: dict[str, Encode], texts: list[str], chunk: int) -> dict[str, dict[str, Any]]:
    """Per-round wall and CPU times of every candidate on the same chunk; the first is the baseline."""
    for fn in candidates.values():
        fn(texts[:8])  # warm-up: lazy loading and compilation stay out of the timing
    names = list(candidates)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rounds = [texts[s : s + chunk] for s in range(0, len(texts), chunk)]
    for r, part in enumerate(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            out = candidates[name](part)
            wall[name].append(time.perf_counter() - wall0)
            cpu[name].append(time.process_time() - cpu0)
            vectors[name].append(unit(out) if out.ndim == 2 else np.zeros((len(part), 0), np.float32))
        base = wall[names[0]][-1]
        print(
            f"round {r + 1}/{len(rounds)} (load {os.getloadavg()[0]:.1f}): "
            + " ".join(f"{n[:28]}={base / wall[n][-1]:.2f}x" for n in names),
            flush=True,
        )
    base_v = np.concatenate(vectors[names[0]])
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        ratio = np.array(wall[names[0]]) / np.array(wall[name])
        cpu_ratio = np.array(cpu[names[0]]) / np.array(cpu[name])
        v = np.concatenate(vectors[name])
        out[name] = {
            "docs_per_s": round(len(texts) / sum(wall[name]), 1),
            "speedup": round(float(np.median(ratio)), 2),
            "speedup_range": f"{ratio.min():.2f}-{ratio.max():.2f}",
            "cpu_speedup": round(float(np.median(cpu_ratio)), 2),
            "min_cosine": round(float((v * base_v).sum(1).min()), 5) if v.shape[1] else "",
        }
    return out


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


def candidate_quality(encode: Encode) -> dict[str, float]:
    """nDCG@10 and Recall@100 on SciFact's test queries for an encoder the harness cannot build
    (not a shipped precision): documents as the harness writes them ("{title} {text}"), queries
    and documents through `encode`, exact cosine search, trec_eval through evaluate.ir.score_run."""
    from embedscope.evaluate.ir import read_qrels, score_run

    qrels = read_qrels(SCIFACT / "qrels" / "test.tsv")
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    queries = {
        q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open()) if q["_id"] in qrels
    }
    docs = unit(encode([f"{d.get('title', '')} {d['text']}".strip() for d in corpus]))
    qids = list(queries)
    scores = unit(encode([queries[q] for q in qids])) @ docs.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: {corpus[j]["_id"]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    metrics = score_run(qrels, run)
    return {"ndcg10": round(metrics["nDCG@10"], 4), "recall100": round(metrics["Recall@100"], 4)}


def ort_int8_dynamic(fp32_onnx: Path, folder: Path) -> tuple[Path, float]:
    """ONNX Runtime's dynamic int8 (weights per channel, activations quantised per batch) on the
    graph its transformer optimiser fused (LayerNorm, GELU): no calibration. Not shipped: on an
    AVX2 CPU it was no faster than OpenVINO f32, at cosine 0.984 to fp32 (docs/design.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    started = time.perf_counter()
    fused = optimizer.optimize_model(str(fp32_onnx), model_type="bert", num_heads=12, hidden_size=384)
    fused_path = folder / "fused.onnx"
    fused.save_model_to_file(str(fused_path))
    target = folder / "int8-dynamic.onnx"
    quantize_dynamic(
        str(fused_path),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return target, round(time.perf_counter() - started, 1)


def ort_encoder(path: Path, tokenizer: Any, max_len: int) -> Encode:
    from embedscope.encoders import onnx_query

    session = onnx_query.session(path)
    return lambda texts: onnx_query.encode_mean_pooled(session, tokenizer, texts, max_len, 16)


def openvino_variant(
    xml: Path,
    tokenizer: Any,
    max_len: int,
    *,
    hint: str,
    performance: str = "THROUGHPUT",
    pin: bool = False,
    batch: int = 16,
    by_chars: bool = False,
) -> Encode:
    """The shipped OpenVINO path with one setting changed: precision hint, performance hint
    (THROUGHPUT: one stream per core; LATENCY: one stream on every core), pinning, texts per
    request, or batches sorted by characters (the previous code) instead of word pieces."""
    import openvino as ov

    from embedscope.encoders import openvino_backend as ovb
    from embedscope.encoders.runtime import cpu_threads, pool, tokenize

    compiled = ov.Core().compile_model(
        str(xml),
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": performance,
            "INFERENCE_NUM_THREADS": cpu_threads(),
            "ENABLE_CPU_PINNING": pin,
        },
    )
    if not by_chars:

        def run(texts: list[str]) -> np.ndarray:
            shipped, ovb.REQUEST_BATCH = ovb.REQUEST_BATCH, batch
            try:
                return ovb.encode(compiled, tokenizer, texts, max_seq_length=max_len, batch_size=batch)
            finally:
                ovb.REQUEST_BATCH = shipped

        return run

    def char_sorted(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

        def done(request: Any, rows: np.ndarray) -> None:
            out[rows] = pool(request.get_output_tensor(0).data, request.get_tensor("attention_mask").data)

        queue.set_callback(done)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for s in range(0, len(texts), batch):
            rows = order[s : s + batch]
            queue.start_async(tokenize(tokenizer, [texts[r] for r in rows], max_len), rows)
        queue.wait_all()
        return out

    return char_sorted


def cpu_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from sentence_transformers import SentenceTransformer

    from embedscope.encoders import onnx_query
    from embedscope.encoders import openvino_backend as ovb
    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.runtime import choose_plan, cpu_features, tokenize
    from embedscope.encoders.transformer import fast_tokenizer, resolve_model_path

    path = resolve_model_path(args.model)
    texts = books_texts(args.books, args.n)
    st = SentenceTransformer(path, device="cpu")
    max_len = int(st.max_seq_length)
    tokenizer = fast_tokenizer(path, max_len) or st.tokenizer
    builds: dict[str, float] = {}
    features = cpu_features()
    auto = choose_plan("auto", features)
    hint = "bf16" if auto.precision == "bf16" else "f32"
    shipped: dict[str, Any] = {}

    def embedscope_encoder(precision: str) -> Encode:
        enc = create_encoder("minilm", {"model": args.model, "precision": precision})
        if not builds.get("OpenVINO conversion"):
            started = time.perf_counter()
            enc._fp32_xml()
            builds["OpenVINO conversion"] = round(time.perf_counter() - started, 1)
        if enc.requires_fit:
            started = time.perf_counter()
            enc.fit(ovb.calibration_sample(books_texts(args.books, 10_000, seed=1)))
            builds[f"{precision}: OpenVINO int8 calibration (300 books)"] = round(
                time.perf_counter() - started, 1
            )
        shipped[precision] = enc
        return lambda t: enc.encode(t)

    def fp32_xml() -> Path:
        return ovb.fp32_path(path) if ovb.fp32_path(path).exists() else create_encoder("minilm")._fp32_xml()

    def fp32_onnx() -> Path:
        target = onnx_query.export_path(path)
        if not target.exists():
            started = time.perf_counter()
            onnx_query.export(st, target)
            builds["ONNX export"] = round(time.perf_counter() - started, 1)
        return target

    def ort_int8() -> Encode:
        target, builds["ONNX Runtime int8 dynamic (fuse + quantise)"] = ort_int8_dynamic(
            fp32_onnx(), Path(os.environ["EMBEDSCOPE_CACHE"])
        )
        return ort_encoder(target, tokenizer, max_len)

    def variant(**kwargs: Any) -> Callable[[], Encode]:
        return lambda: openvino_variant(fp32_xml(), tokenizer, max_len, hint=hint, **kwargs)

    label = f"OpenVINO {auto.precision}"
    factories: dict[str, Callable[[], Encode]] = {
        BASELINE: lambda: lambda t: st.encode(t),
        f"embedscope precision=auto ({auto.runtime} {auto.precision}, sorted by word pieces)": lambda: (
            embedscope_encoder("auto")
        ),
    }
    # explicit precisions only where they run something else than auto does on this CPU
    for p in ("bf16", "int8"):
        plan = choose_plan(p, features)
        if plan.precision != auto.precision:
            factories[f"embedscope precision={p} ({plan.runtime} {plan.precision})"] = lambda p=p: (
                embedscope_encoder(p)
            )
    factories.update(
        {
            f"{label}, batches sorted by characters (before)": variant(by_chars=True),
            f"{label}, LATENCY hint (1 stream on every core)": variant(performance="LATENCY"),
            f"{label}, threads pinned to cores": variant(pin=True),
            f"{label}, 8 texts per request": variant(batch=8),
            f"{label}, 32 texts per request": variant(batch=32),
            "ONNX Runtime fp32, sorted": lambda: ort_encoder(fp32_onnx(), tokenizer, max_len),
            "ONNX Runtime int8 dynamic (fused graph, per-channel)": ort_int8,
            "tokenizer alone (its share of the work)": lambda: (
                lambda t: tokenize(tokenizer, t, max_len)["input_ids"][:, :0].astype(np.float32)
            ),
        }
    )
    if args.only:
        words = [w.strip().lower() for w in args.only.split(",")]
        factories = {
            k: f for i, (k, f) in enumerate(factories.items()) if i == 0 or any(w in k.lower() for w in words)
        }
    candidates = {name: make() for name, make in factories.items()}
    speed = interleaved(candidates, texts, args.chunk)
    quality = scifact_quality(["fp32", *shipped]) if args.quality else {}
    ort_name = "ONNX Runtime int8 dynamic (fused graph, per-channel)"
    if args.quality and ort_name in candidates:  # the one unshipped candidate whose quality was asked
        quality["ort-int8"] = candidate_quality(candidates[ort_name])
        print(f"SciFact {ort_name}: {quality['ort-int8']}")
    rows = []
    for name, s in speed.items():
        p = "fp32" if name == BASELINE else next((p for p in shipped if f"precision={p} " in name), None)
        p = "ort-int8" if name == ort_name else p
        q = quality.get(p, {}) if p else {}
        rows.append(
            {"candidate": name, **s, "ndcg10": q.get("ndcg10", ""), "recall100": q.get("recall100", "")}
        )
    extra = {
        "builds_s": builds,
        "texts": len(texts),
        "chunk": args.chunk,
        "runtime": {p: enc.runtime_info() for p, enc in shipped.items()},
        "quality": quality,
    }
    return rows, extra


# --- end to end ----------------------------------------------------------------------------------------
ST_SCRIPT = """
import json, sys
import numpy as np
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1]))
model = SentenceTransformer(sys.argv[2], device="cpu")
np.save(sys.argv[3], model.encode(texts))
"""


def timed_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the process and its threads) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def end_to_end_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import pandas as pd

    from embedscope import Collection
    from embedscope.encoders.transformer import resolve_model_path

    home = Path(tempfile.mkdtemp(prefix="embedscope-bench-e2e-"))
    frame = pd.read_csv(args.books).head(args.n)
    col = Collection.create("e2e", root=home)
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=["title"])
    items = col.items()
    ids, texts = [i.id for i in items], [i.text for i in items]
    (home / "texts.json").write_text(json.dumps(texts))
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home)}
    cli = [sys.executable, "-m", "embedscope.cli"]
    commands = {
        BASELINE: [
            sys.executable,
            "-c",
            ST_SCRIPT,
            str(home / "texts.json"),
            resolve_model_path(args.model),
            str(home / "st.npy"),
        ]
    }
    for p in args.precisions.split(","):
        commands[f"embedscope embed --precision {p}"] = [
            *cli,
            "embed",
            "e2e",
            "--encoder",
            "minilm",
            "--version",
            p,
            "--precision",
            p,
            "--refit",
        ]
    for name, cmd in commands.items():  # warm-up: exports, calibrations and file caches
        print(f"warm-up: {name}", flush=True)
        timed_process(cmd, env)
    wall: dict[str, list[float]] = {k: [] for k in commands}
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    names = list(commands)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            w, c = timed_process(commands[name], env)
            wall[name].append(w)
            cpu[name].append(c)
        print(
            f"round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.1f}): "
            + " ".join(f"{n}={wall[names[0]][-1] / wall[n][-1]:.2f}x" for n in names),
            flush=True,
        )
    st_vectors = unit(np.load(home / "st.npy"))
    col = Collection.open("e2e", root=home)
    rows = []
    for name in names:
        ratio = np.array(wall[names[0]]) / np.array(wall[name])
        cpu_ratio = np.array(cpu[names[0]]) / np.array(cpu[name])
        row: dict[str, Any] = {
            "candidate": name,
            "wall_s": round(float(np.median(wall[name])), 1),
            "cpu_s": round(float(np.median(cpu[name])), 1),
            "speedup": round(float(np.median(ratio)), 2),
            "speedup_range": f"{ratio.min():.2f}-{ratio.max():.2f}",
            "cpu_speedup": round(float(np.median(cpu_ratio)), 2),
        }
        if name != BASELINE:
            version = name.rsplit(" ", 1)[-1]
            data = col.load_version(version).data
            pos = {i: n for n, i in enumerate(data.ids)}
            v = unit(np.asarray(data.vectors)[[pos[i] for i in ids]])
            row["min_cosine"] = round(float((v * st_vectors).sum(1).min()), 5)
            row["ran"] = {
                k: col.store.get_version(version).stats.get("runtime", {}).get(k)
                for k in ("runtime", "precision", "streams", "threads", "pinned")
            }
        rows.append(row)
    return rows, {"texts": len(texts), "rounds": args.rounds, "home": str(home)}


# --- queries --------------------------------------------------------------------------------------------
def query_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from embedscope.encoders import onnx_query
    from embedscope.encoders.registry import create_encoder

    enc = create_encoder("minilm", {"model": args.model})
    max_len = int(enc.params["max_seq_length"])
    claims = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()][:300]
    long = [json.loads(line)["text"] for line in LONG_REQUESTS.open() if line.strip()]
    session = enc._onnx_session()

    def onnx(texts: list[str]) -> np.ndarray:
        return onnx_query.encode_mean_pooled(session, enc.tokenizer, texts, max_len, 16)

    def onnx_before(texts: list[str]) -> np.ndarray:  # the previous query path: corpus order, 64 a batch
        return np.concatenate(
            [
                onnx_query.encode_mean_pooled(session, enc.tokenizer, texts[s : s + 64], max_len, 64)
                for s in range(0, len(texts), 64)
            ]
        )

    paths: dict[str, Callable[[list[str]], Any]] = {
        "encode_queries (the choice)": enc.encode_queries,
        "ONNX Runtime fp32": onnx,
        "documents' path (encode)": enc.encode,
        "ONNX Runtime, corpus order, 64 a batch (before)": onnx_before,
    }
    for fn in paths.values():
        fn(claims[:20])
    rows = []

    def timed(fn: Callable[[list[str]], Any], texts: list[str]) -> tuple[float, float]:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        fn(texts)
        return (time.perf_counter() - wall0) * 1000, (time.process_time() - cpu0) * 1000

    singles = (("one short query (SciFact claim)", claims[:100]), ("one long request (100-250 words)", long))
    for label, texts in singles:
        ms: dict[str, list[tuple[float, float]]] = {k: [] for k in list(paths)[:3]}
        for i, text in enumerate(texts):
            for name in list(ms) if i % 2 == 0 else list(ms)[::-1]:
                ms[name].append(timed(paths[name], [text]))
        for name, values in ms.items():
            wall, cpu = np.median(np.array(values), axis=0)
            rows.append(
                {"case": label, "path": name, "ms_per_query": round(wall, 2), "cpu_ms": round(cpu, 2)}
            )
    batches = ((f"batch of {len(long)} long requests", long), (f"batch of {len(claims)} claims", claims))
    for label, texts in batches:
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
        for r in range(args.rounds):
            for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:
                wall, cpu = timed(paths[name], texts)
                times[name].append((wall / len(texts), cpu / len(texts)))
        doc_wall, doc_cpu = np.median(np.array(times["documents' path (encode)"]), axis=0)
        for name, values in times.items():
            wall, cpu = np.median(np.array(values), axis=0)
            rows.append(
                {
                    "case": label,
                    "path": name,
                    "ms_per_query": round(wall, 2),
                    "cpu_ms": round(cpu, 2),
                    "vs_document": round(wall / doc_wall, 2),
                    "cpu_vs_document": round(cpu / doc_cpu, 2),
                }
            )
    return rows, {"runtime": enc.runtime_info(), "rounds": args.rounds}


# --- padding ---------------------------------------------------------------------------------------------
def padding_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Tokens a model computes per token the texts hold, for each way of cutting batches (all the
    books; the tokenizer alone, so seconds)."""
    from embedscope.encoders.transformer import fast_tokenizer, resolve_model_path

    tokenizer = fast_tokenizer(resolve_model_path(args.model), 256)
    tokenizer.no_padding()
    texts = books_texts(args.books, 10**9)
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch_fast(texts)])
    chars = np.array([len(t) for t in texts])

    def padded(global_sort: bool, key: np.ndarray, batch: int, chunk: int) -> float:
        idx = np.argsort(-chars, kind="stable") if global_sort else np.arange(len(texts))
        total = 0
        for s in range(0, len(idx), chunk):
            part = idx[s : s + chunk]
            part = part[np.argsort(-key[part], kind="stable")]
            total += sum(
                len(part[i : i + batch]) * lengths[part[i : i + batch]].max()
                for i in range(0, len(part), batch)
            )
        return round(total / lengths.sum(), 3)

    whole = len(texts)
    schemes = {
        "sentence-transformers encode(all texts): by characters, batches of 32": (False, chars, 32, whole),
        "embed before: chunks of 256 in corpus order, by characters, batches of 16": (False, chars, 16, 256),
        "chunks of 256 in corpus order, by word pieces, batches of 16": (False, lengths, 16, 256),
        "embed now: corpus sorted, chunks of 256 by word pieces, batches of 16": (True, lengths, 16, 256),
        "no sorting, batches of 32": (False, np.zeros_like(lengths), 32, whole),
    }
    rows = [{"scheme": k, "padded_tokens_per_token": padded(*v)} for k, v in schemes.items()]
    return rows, {
        "texts": len(texts),
        "tokens_mean": round(float(lengths.mean()), 1),
        "tokens_median": float(np.median(lengths)),
    }


def gpu_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """On a GPU: sentence-transformers fp32 vs embedscope's PyTorch precisions, several batch sizes."""
    from sentence_transformers import SentenceTransformer

    from embedscope.encoders.registry import create_encoder
    from embedscope.encoders.transformer import resolve_model_path

    texts = books_texts(args.books, args.n)
    st = SentenceTransformer(resolve_model_path(args.model), device=args.device)
    candidates: dict[str, Encode] = {BASELINE: lambda t: st.encode(t)}
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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--end-to-end",
        action="store_true",
        help="fresh `embedscope embed` processes vs a sentence-transformers script",
    )
    mode.add_argument("--queries", action="store_true", help="query encoding, one at a time and in batches")
    mode.add_argument("--padding", action="store_true", help="padded tokens per batching scheme")
    parser.add_argument("--busy", action="store_true", help="run beside a process spinning on one core")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--books", type=Path, default=SHARED_DATA / "books" / "books.csv")
    parser.add_argument("--n", type=int, default=None, help="books: 1024 (encode loop), 2000 (end to end)")
    parser.add_argument("--chunk", type=int, default=256, help="texts per interleaved round (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --end-to-end and --queries batches")
    parser.add_argument(
        "--precisions", default="auto", help="--end-to-end: embedscope precisions, comma-separated"
    )
    parser.add_argument("--only", help="encode loop: only candidates whose name contains one of these words")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or local path")
    parser.add_argument("--no-quality", dest="quality", action="store_false", help="skip SciFact quality")
    parser.add_argument("--out", default=None, help="results name (default embed[-MODE]-CPUKIND[-busy])")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    if args.device.startswith("cuda"):
        import torch

        args.n = args.n or 1024
        rows = gpu_rows(args)
        report(
            args.out or "embed-cuda",
            f"MiniLM on {torch.cuda.get_device_name()}",
            rows,
            {"device": args.device},
        )
        return
    facts = {**machine_facts(), "busy": args.busy}
    kind = (
        "end-to-end" if args.end_to_end else "queries" if args.queries else "padding" if args.padding else ""
    )
    threads = f"{facts['omp_num_threads']}thread" if facts["omp_num_threads"] else ""
    parts = ("embed", kind, facts["cpu_kind"], threads, "busy" if args.busy else "")
    name = args.out or "-".join(p for p in parts if p)
    print(facts_line(facts), flush=True)
    with competing(args.busy):
        if args.padding:
            rows, extra = padding_rows(args)
            title = "padded tokens per real token, all books (tokenizer only)"
        elif args.queries:
            rows, extra = query_rows(args)
            title = "MiniLM query encoding, ms per query"
        elif args.end_to_end:
            args.n = args.n or 2000
            rows, extra = end_to_end_rows(args)
            title = f"embed end to end with model load, {args.n} books"
        else:
            args.n = args.n or 1024
            # a fresh model cache: build_s is what a first run pays (the user's cache is left alone)
            with tempfile.TemporaryDirectory(prefix="embedscope-bench-cache-") as cache:
                os.environ["EMBEDSCOPE_CACHE"] = cache
                rows, extra = cpu_rows(args)
            title = f"MiniLM encode loop, {args.n} books in rounds of {args.chunk}"
    facts["load_average_end"] = load_average()
    report(name, f"{title}: {facts_line(facts)}", rows, {"device": "cpu", **facts, **extra})


if __name__ == "__main__":
    main()
