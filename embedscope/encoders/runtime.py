"""What the two CPU runtimes of the transformer encoder share: ONNX Runtime (onnx_query.py, the
query encoder) and OpenVINO (openvino_backend.py, bf16/int8 documents) run the same exported graph
(`last_hidden`), fed by the same tokenisation (`tokenize`), pooled the same way (`pool`), cached
under the same folder (`model_cache_dir`), with the same thread count (`cpu_threads`).

transformer.py picks a runtime and imports both lazily; they import only this module, never the
encoder, so nothing here imports torch, OpenVINO or ONNX Runtime at module level.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

#: the inputs an exported graph takes, in this order (token_type_ids where the tokenizer makes them)
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: where set to "0", OpenVINO does not pin its threads to cores. Pinning suits one process per
#: machine; several encoding processes on one machine (Ray actors) each pinned to the same first
#: cores: two 1-thread processes took 10.4 s each for 600 books pinned, 5.2 s not (2 cores).
PIN_THREADS_ENV = "EMBEDSCOPE_OPENVINO_PIN_THREADS"


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


def tokenize(tokenizer: Any, texts: list[str], max_seq_length: int) -> dict[str, np.ndarray]:
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


def last_hidden(model: Any) -> Any:
    """A transformers model as a torch module returning its last hidden state: what the ONNX and
    OpenVINO exports trace (pooling stays outside the graph, in `pool`)."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
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
