"""Static embeddings distilled from MiniLM (model2vec): a token lookup table, no transformer at run time.

model2vec's own `model2vec.distill` needs the `distill` extra (skeletoken), which pins
transformers < 5.4 and would downgrade this environment's transformers 5.x, so it is not installed.
`distill_static` below re-implements the same recipe (model2vec.distill.distill_from_model, v0.10):

1. run every vocabulary token alone through the transformer ([CLS] token [SEP]) and mean-pool the
   output: one contextual-free vector per token;
2. PCA to `pca_dims` dimensions (centres the space and drops noisy directions);
3. weight each token by SIF, a / (a + p(token)), so common word pieces count less in the mean.

model2vec estimates p(token) from the token's rank in the vocabulary (a Zipf law, `weighting=zipf`,
a = 1e-4). A BERT WordPiece vocabulary is not ordered by frequency in any one domain, so
`weighting=corpus` (the default) counts the tokens of the collection itself at `fit`, the
estimate SIF was defined with (Arora et al. 2017, "A Simple but Tough-to-Beat Baseline for Sentence
Embeddings", a = 1e-3). On SciFact this moved nDCG@10 from 0.367 to 0.401 (docs/design.md).

The table goes to model2vec's `StaticModel` (installed, no extra needed) for storage and for
inference, with one change for speed: the tokenisation (all of model2vec's encode time) goes
through a word-level cache of the same tokenizer (encoders/word_tokens.py) that yields the same
token counts, truncation included, so the vectors and the fitted weights are model2vec's
(tests/test_encoders_static.py checks it on every books and SciFact text); texts it cannot take
(special-token text such as "[SEP]") and non-BERT tokenizers go through model2vec's encode. The
distilled table is cached under ~/.cache/embedscope/static/ (or $EMBEDSCOPE_CACHE); the fitted,
weighted model is copied into the encoder's save dir, so nothing is downloaded, ever.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embedscope.encoders.base import Encoder, check_corpus, l2_normalize
from embedscope.encoders.runtime import model_cache_dir
from embedscope.encoders.transformer import DEFAULT_MODEL, resolve_model_path
from embedscope.encoders.word_tokens import WordPieceCounter
from embedscope.errors import EmbedscopeError

_MODEL_DIR = "static_model"
# texts counted per sparse product: bounds the (texts x words) matrices of one step
_CHUNK = 16_384


def distill_static(model: str, pca_dims: int, zipf_sif: float | None, batch_size: int = 512) -> Any:
    """Distill a model2vec StaticModel from a local transformer (see the module docstring); with
    `zipf_sif=None` the table is left unweighted, for weights fitted on a collection."""
    import torch
    from sklearn.decomposition import PCA
    from tokenizers import Tokenizer
    from transformers import AutoModel

    path = resolve_model_path(model)
    if not Path(path).is_dir():
        raise EmbedscopeError(f"static distillation needs a local model folder, got {model!r}")
    tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    backbone = AutoModel.from_pretrained(path, local_files_only=True).eval()
    vocab = tokenizer.get_vocab()
    ids = np.array(sorted(vocab.values()), dtype=np.int64)
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    out = np.zeros((len(ids), backbone.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = torch.from_numpy(ids[start : start + batch_size])
            n = len(chunk)
            input_ids = torch.stack([torch.full((n,), cls_id), chunk, torch.full((n,), sep_id)], dim=1)
            hidden = backbone(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids)
            ).last_hidden_state
            out[start : start + n] = hidden.mean(1).numpy()  # every position is real: plain mean
    out = np.nan_to_num(out)
    if pca_dims and pca_dims < out.shape[1]:
        out = PCA(n_components=int(pca_dims), random_state=0).fit_transform(out).astype(np.float32)
    if zipf_sif is not None:
        # Zipf frequency by vocabulary rank (model2vec's compute_weights), then SIF weighting
        inv_rank = 1 / np.arange(2, len(out) + 2)
        out *= sif_weights(inv_rank / inv_rank.sum(), zipf_sif)[:, None]
    return static_model(out, tokenizer, model)


def static_model(vectors: np.ndarray, tokenizer: Any, base_model: str) -> Any:
    from model2vec import StaticModel

    return StaticModel(
        vectors=np.asarray(vectors, dtype=np.float32),
        tokenizer=tokenizer,
        config={"model_type": "model2vec", "architectures": ["StaticModel"], "normalize": True},
        normalize=True,
        base_model_name=base_model,
    )


def sif_weights(proba: np.ndarray, a: float) -> np.ndarray:
    """Smooth inverse frequency: a / (a + p(token))."""
    return (a / (a + proba)).astype(np.float32)


def token_counts(tokenizer: Any, texts: list[str], vocabulary_size: int) -> np.ndarray:
    """How often each token occurs in the texts (as the static model tokenises them)."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64)
    return np.bincount(ids, minlength=vocabulary_size).astype(np.float64)


class StaticEncoder(Encoder):
    """model2vec static embeddings distilled locally from MiniLM: ~100x faster than the transformer."""

    name: ClassVar[str] = "static"
    description: ClassVar[str] = "model2vec static token embeddings distilled offline from MiniLM (dense)"
    defaults: ClassVar[dict[str, Any]] = {
        "model": DEFAULT_MODEL,
        "pca_dims": 256,  # model2vec's default
        # corpus: SIF over the collection's own token counts (fitted); zipf: model2vec's rank estimate
        "weighting": "corpus",
        # SIF's a: 1e-3 is Arora et al.'s value for corpus frequencies; model2vec uses 1e-4 with zipf
        "sif_coefficient": 1e-3,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not 0 < float(self.params["sif_coefficient"]) < 1:
            raise EmbedscopeError("sif_coefficient must be in (0, 1)")
        if int(self.params["pca_dims"]) < 1:
            raise EmbedscopeError("pca_dims must be >= 1")
        if self.params["weighting"] not in ("corpus", "zipf"):
            raise EmbedscopeError(f"weighting must be 'corpus' or 'zipf', not {self.params['weighting']!r}")
        # corpus weighting counts the collection's tokens: it learns, so it must see them first
        self.requires_fit = self.params["weighting"] == "corpus"  # type: ignore[misc]
        self.fitted = not self.requires_fit
        self._static: Any = None
        # the word cache, shared by fit and encode: the fitted model keeps the base's tokenizer
        self._words: WordPieceCounter | None = None
        self._words_checked = False

    def _zipf_sif(self) -> float | None:
        return float(self.params["sif_coefficient"]) if self.params["weighting"] == "zipf" else None

    def _cache_path(self) -> Path:
        sif = self._zipf_sif()
        weighting = "unweighted" if sif is None else str(sif)
        return model_cache_dir("static", str(self.params["model"]), str(self.params["pca_dims"]), weighting)

    def _distilled(self) -> Any:
        """The distilled table (Zipf-weighted, or unweighted for corpus weighting), cached per machine."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from model2vec import StaticModel

        path = self._cache_path()
        if not (path / "config.json").exists():
            model = distill_static(self.params["model"], int(self.params["pca_dims"]), self._zipf_sif())
            tmp = path.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)  # atomic: a concurrent reader never sees half a model
        return StaticModel.from_pretrained(str(path))

    @property
    def static_model(self) -> Any:
        """The model that encodes: fitted (weighted) once `fit` ran or a saved one was loaded."""
        if self._static is None:
            self._static = self._distilled()
        return self._static

    def _word_counter(self, model: Any) -> WordPieceCounter | None:
        """The word-level tokenizer cache for `model`, or None where it does not apply (a tokenizer
        that is not BERT WordPiece, or a table with separate weights or a token mapping)."""
        if model.weights is not None or model.token_mapping is not None:
            return None
        if self._words is None and not self._words_checked:
            self._words_checked = True  # one look at the tokenizer's JSON, not one per query
            try:
                self._words = WordPieceCounter(model.tokenizer)
            except ValueError:  # not a BERT WordPiece tokenizer: model2vec's own encode
                self._words = None
        return self._words

    def fit(self, texts: Sequence[str]) -> StaticEncoder:
        if self.params["weighting"] == "corpus":
            base = self._distilled()
            texts = check_corpus(texts)
            counter = self._word_counter(base)
            if counter is None:
                counts = token_counts(base.tokenizer, texts, len(base.embedding))
            else:
                counts = np.zeros(len(base.embedding), dtype=np.float64)
                for start in range(0, len(texts), _CHUNK):
                    chunk = texts[start : start + _CHUNK]
                    # truncated to max_length tokens, as the base model's tokenizer is set to
                    matrix, aside = counter.counts(chunk, base.max_length)
                    counts += np.asarray(matrix.sum(axis=0)).ravel()  # `aside` rows are empty
                    if len(aside):  # special-token text: the tokenizer counts these
                        counts += token_counts(base.tokenizer, [chunk[i] for i in aside], len(counts))
            weights = sif_weights(counts / max(counts.sum(), 1.0), float(self.params["sif_coefficient"]))
            vectors = np.asarray(base.embedding, dtype=np.float32) * weights[:, None]
            self._static = static_model(vectors, base.tokenizer, self.params["model"])
        self.fitted = True
        return self

    @property
    def dim(self) -> int:
        return int(self.static_model.dim)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 1024, show_progress: bool = False
    ) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._check_fitted()
        model = self.static_model
        counter = self._word_counter(model)
        if counter is None:
            out = model.encode(texts, batch_size=max(batch_size, 64), use_multiprocessing=False)
            return l2_normalize(out)  # texts with no known token stay all-zero
        texts_cut = texts
        if model.max_length is not None:
            # model2vec's own cut before tokenising (max_length tokens of median length)
            limit = model.max_length * model.median_token_length
            texts_cut = [text[:limit] for text in texts]
        table = np.asarray(model.embedding, dtype=np.float32)
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            counts, aside = counter.counts(texts_cut[start : start + _CHUNK], model.max_length)
            if model.unk_token_id is not None:
                counts.data[counts.indices == model.unk_token_id] = 0  # model2vec drops [UNK]
            # the sum of the token vectors: model2vec's mean up to a length that the norm removes
            out[start : start + counts.shape[0]] = counts @ table
            if len(aside):
                rows = start + aside
                out[rows] = model.encode([texts[i] for i in rows], use_multiprocessing=False)
        return l2_normalize(out)  # texts with no known token stay all-zero

    def save(self, directory: Path) -> None:
        super().save(directory)
        self.static_model.save_pretrained(str(Path(directory) / _MODEL_DIR))

    def _load_state(self, directory: Path) -> None:
        # a saved model is complete (weights applied), also for versions made before `weighting`
        from model2vec import StaticModel

        path = Path(directory) / _MODEL_DIR
        if path.exists():
            self._static = StaticModel.from_pretrained(str(path))
