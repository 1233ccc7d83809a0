"""What the two CPU runtimes of the transformer encoder share, and which one runs what.

ONNX Runtime (onnx_query.py, short queries) and OpenVINO (openvino_backend.py, documents and
batches) run the same exported graph (`last_hidden`), fed by the same tokenisation (`tokenize`),
pooled the same way (`pool`), cached under the same folder (`model_cache_dir`), with the same
thread count (`cpu_threads`), never pinned to cores unless asked (`pin_threads`).

The choices are pure functions of what they depend on, so they are tested on given flag sets:
`choose_plan` (the arithmetic and runtime of `precision=auto`, from the CPU's features:
`cpu_features`) and `choose_query_runtime` (ONNX Runtime or the documents' path, from the batch's
size). docs/design.md ("Embedding speed on the CPU") has the table and the measurements.

transformer.py picks a runtime and imports both lazily; they import only this module, never the
encoder, so nothing here imports torch, OpenVINO or ONNX Runtime at module level.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, cast

import numpy as np

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

#: what feeds an exported graph: `fast_tokenizer`'s (the tokenizers library) or a transformers one
TextTokenizer: TypeAlias = "Tokenizer | PreTrainedTokenizerBase"

#: the inputs an exported graph takes, in this order (token_type_ids where the tokenizer makes them)
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: where set to "1", OpenVINO pins its threads to cores (`pin_threads`); by default it does not.
#: Pinning suits one process alone on a machine; beside other processes it costs: several encoding
#: processes (Ray actors) each pinned to the same first cores took 10.4 s each for 600 books
#: pinned, 5.2 s not (2 cores), and a pinned thread sharing its core with another job cannot move
#: to a free one.
PIN_THREADS_ENV = "EMBEDSCOPE_OPENVINO_PIN_THREADS"

#: CPU flags (as /proc/cpuinfo names them) that decide the transformer's arithmetic on the CPU:
#: bf16 matrix units (AMX) or instructions (AVX-512 BF16), int8 dot products (VNNI, AVX-512 or
#: AVX), and the vector widths below them
CPU_FEATURES = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
#: texts up to which a query batch goes through ONNX Runtime rather than the documents' path: one
#: OpenVINO request (16 texts) runs on one stream, one core, where ONNX Runtime spreads a batch
#: over every core, and two requests only draw level; 32 also keeps the server's micro-batches
#: (serve/batching.py, at most 32) in ONNX Runtime, so a server never compiles the OpenVINO model
QUERY_ONNX_MAX_TEXTS = 32


def model_cache_dir(kind: str, *key: str) -> Path:
    """Per-machine cache of models built locally (exports, distillations): $EMBEDSCOPE_CACHE/kind,
    and with `key` (what the build depends on: model folder, library versions, parameters) the
    folder of that one build, named by a hash of the parts joined with "|"."""
    base = Path(os.environ.get("EMBEDSCOPE_CACHE") or Path.home() / ".cache" / "embedscope") / kind
    return base / hashlib.sha1("|".join(key).encode()).hexdigest()[:16] if key else base


@functools.cache
def torch_version() -> str:
    """torch's version from its package metadata (the same string as `torch.__version__`), read
    once per process: cache keys need it, and importing torch to ask costs ~1.4 s."""
    return version("torch")


#: threads given by `set_cpu_threads` (serve --torch-threads, Ray actors), else `cpu_threads`'
#: first answer; None: neither yet
_THREADS: int | None = None


def cpu_threads() -> int:
    """Threads an encoding runtime (OpenVINO, ONNX Runtime) may use in this process: what
    `set_cpu_threads` gave, else torch's count where torch is loaded, else MKL_NUM_THREADS or
    OMP_NUM_THREADS (what torch would read), else 0: both runtimes' own default, the physical
    cores, as torch's. Not by importing torch: that costs ~1.4 s of every start, and the OpenVINO
    and ONNX paths need nothing else of it. The first answer stays for the process (torch loaded
    later must not change it: OpenVINO compiles once per thread count)."""
    global _THREADS
    if _THREADS is None:
        torch = sys.modules.get("torch")
        env = [os.environ.get(name, "") for name in ("MKL_NUM_THREADS", "OMP_NUM_THREADS")]
        if torch is not None:
            _THREADS = int(torch.get_num_threads())
        else:
            _THREADS = next((int(v) for v in env if v.isdigit() and int(v) > 0), 0)
    return _THREADS


def set_cpu_threads(n: int) -> None:
    """Give this process's encoders n threads: torch at once where it is loaded, through
    OMP_NUM_THREADS where it is loaded later, and OpenVINO and ONNX Runtime through `cpu_threads`."""
    global _THREADS
    _THREADS = n
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def pin_threads() -> bool:
    """Whether OpenVINO may pin its threads to cores: only where EMBEDSCOPE_OPENVINO_PIN_THREADS=1
    (one encoding process alone on a machine). Not by default, because whether the cores are
    shared cannot be known ahead: a load average read at start says nothing of the jobs that start
    during a long `embed` (see PIN_THREADS_ENV for what pinning cost when they were shared)."""
    return os.environ.get(PIN_THREADS_ENV, "0") == "1"


@functools.cache
def cpu_features() -> frozenset[str]:
    """The CPU_FEATURES this machine has: the flags line of /proc/cpuinfo (Linux), else what
    OpenVINO reports (OPTIMIZATION_CAPABILITIES lists BF16 where the CPU computes in bf16; it cannot
    tell VNNI from plain AVX2, so that case reads as avx2)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = parse_cpu_flags(text)
    if flags or text:
        return flags
    try:  # macOS, Windows: ask the runtime that will run the model
        import openvino as ov

        caps = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - no OpenVINO or no CPU plugin: nothing known
        return frozenset()
    return frozenset({"avx2"} | ({"avx512_bf16"} if "BF16" in caps else set()))


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """CPU_FEATURES present in /proc/cpuinfo's text (its first `flags` line: every core of one
    machine has the same)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(CPU_FEATURES) & set(value.split())
    return frozenset()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass

    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Plan:
    """What runs a transformer's documents: `runtime` (openvino | torch) computing in `precision`
    (bf16 | int8 | f32 for OpenVINO; the PyTorch precision for torch), and why."""

    runtime: str
    precision: str
    reason: str


def choose_plan(precision: str, features: frozenset[str] | set[str], device: str = "cpu") -> Plan:
    """The runtime and arithmetic for a requested `precision` on a CPU with `features`.

    `auto` on the CPU, by the best arithmetic the CPU has (docs/design.md, "Embedding speed on the
    CPU", has the measurements):
    - bf16 hardware (AMX, AVX-512 BF16): OpenVINO bf16. Measured on AMX: 3.55x sentence-transformers
      fp32, SciFact nDCG@10 +0.0001.
    - int8 dot products but no bf16 (AVX-512 VNNI, AVX-VNNI): OpenVINO int8 (NNCF, calibrated on
      the collection). Not measured on such a CPU: on AMX int8 ran 3.11x at nDCG@10 -0.0049.
    - neither (AVX2 only): OpenVINO f32. Measured on an AVX2 EPYC: int8 (OpenVINO or ONNX Runtime)
      was no faster than f32 there, and bf16 has no hardware, so OpenVINO would compute in f32
      anyway; what OpenVINO gains over PyTorch there is less padding, not arithmetic.
    On a GPU `auto` is PyTorch bf16 (the previous default). Explicit precisions run where they
    always ran: fp32 and the GPU ones in PyTorch, bf16 and int8 on the CPU in OpenVINO (bf16 on a
    CPU without bf16 hardware computes in f32: OpenVINO falls back by itself)."""
    if device != "cpu":
        return Plan("torch", "bf16" if precision == "auto" else precision, f"{device}: PyTorch")
    if precision == "auto":
        if features & {"amx_bf16", "avx512_bf16"}:
            return Plan("openvino", "bf16", "CPU computes in bf16 (AMX or AVX-512 BF16)")
        if features & {"avx512_vnni", "avx_vnni", "amx_int8"}:
            return Plan("openvino", "int8", "CPU has int8 dot products (VNNI) but no bf16")
        return Plan("openvino", "f32", "no bf16 or VNNI on this CPU: int8 was not faster than f32 there")
    if precision in ("bf16", "int8"):
        bf16_hw = bool(features & {"amx_bf16", "avx512_bf16"})
        if precision == "bf16" and not bf16_hw:
            return Plan("openvino", "f32", "bf16 asked, but this CPU has no bf16: OpenVINO computes in f32")
        return Plan("openvino", precision, f"{precision} asked")
    return Plan("torch", precision, f"{precision} asked: PyTorch")


def choose_query_runtime(n_texts: int, plan: Plan, *, onnx_allowed: bool = True) -> str:
    """Where a batch of queries goes: "onnx" (ONNX Runtime's fp32 export) or "documents" (the
    documents' own path).

    ONNX Runtime serves a few queries at a time for versions whose documents are fp32 or bf16 (its
    vectors are at cosine >= 0.9999 to theirs): one short query costs 3.8 ms there against 6.2 ms
    through OpenVINO. Where the documents run in OpenVINO, larger batches (`evaluate` sends all
    its queries at once) take the documents' path, length-sorted and on every stream, so a query
    costs what a document of its length costs. fp32 documents (PyTorch) keep their queries in ONNX
    Runtime at any size: the same arithmetic, without importing torch into a server. int8 versions
    always use the documents' path: their queries must share their arithmetic. Length does not
    enter: one long query is faster in ONNX Runtime too, which spreads it over every core where
    one OpenVINO request runs on one stream (bench/bench_embed.py --queries)."""
    if not onnx_allowed or plan.precision == "int8" or n_texts == 0:
        return "documents"
    if plan.runtime == "openvino" and n_texts > QUERY_ONNX_MAX_TEXTS:
        return "documents"
    return "onnx"


def tokenize(tokenizer: TextTokenizer, texts: list[str], max_seq_length: int) -> dict[str, np.ndarray]:
    """int64 model inputs for an exported graph, padded to the longest text of the batch, from a
    transformers tokenizer or from `fast_tokenizer`'s."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        # `fast_tokenizer` set its truncation once; changing it here could race another thread
        if (tokenizer.truncation or {}).get("max_length") != max_seq_length:
            raise ValueError(f"this tokenizer truncates at {tokenizer.truncation}, not {max_seq_length}")
        encodings = tokenizer.encode_batch_fast(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
    # explicit padding/truncation: the packaged tokenizer.json would otherwise pad to a fixed 128
    features = tokenizer(
        texts, return_tensors="np", padding="longest", truncation=True, max_length=max_seq_length
    )
    return {name: features[name].astype(np.int64) for name in TOKEN_INPUTS if name in features}


def last_hidden(st: SentenceTransformer) -> torch.nn.Module:
    """A sentence-transformer's transformers model as a torch module returning its last hidden state:
    what the ONNX and OpenVINO exports trace (pooling stays outside the graph, in `pool`)."""
    import torch

    # torch types a submodule's attribute as `Tensor | Module`; this one is the transformers model
    model = cast(torch.nn.Module, st[0].auto_model)

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    return LastHidden().eval()


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """Sentence vectors from token vectors, as sentence-transformers' Pooling module computes them."""
    if pooling == "cls":
        return np.asarray(hidden[:, 0], dtype=np.float32)
    mask = attention_mask[..., None].astype(np.float32)
    return (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)


def configure_worker(threads: int = 0, *, pin: bool = True) -> None:
    """Set up a process that encodes: `threads` > 0 gives its runtimes that many threads
    (`set_cpu_threads`); `pin=False` keeps OpenVINO from pinning threads to cores, for processes
    that share a machine (Ray actors)."""
    if not pin:
        os.environ[PIN_THREADS_ENV] = "0"
    if threads:
        set_cpu_threads(threads)
