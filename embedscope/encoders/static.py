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

`train=True` (the default) then fits the table itself (model2vec's Tokenlearn recipe, see
encoders/static_train.py): starting from the distilled vectors, the tokens' vectors are trained so
that each text's SIF-weighted mean matches MiniLM's vector of that text, on the collection's own
texts (MiniLM's vectors of them come from the collection's `minilm` version when there is one,
`Collection.vectors_made_by`, else MiniLM encodes them here) plus, with `general_sample`, ~9,700
passages of the English Wikipedia excerpt in gensim's test data (their MiniLM vectors cached per
machine). On SciFact this moved nDCG@10 from 0.401 to 0.624 (docs/evaluation.md).

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

import json
import os
import shutil
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.base import Encoder, check_corpus, l2_normalize
from embedscope.encoders.registry import create_encoder
from embedscope.encoders.runtime import model_cache_dir
from embedscope.encoders.static_train import TrainSettings, train_table
from embedscope.encoders.transformer import DEFAULT_MODEL, resolve_model_path
from embedscope.encoders.word_tokens import WordPieceCounter
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from model2vec import StaticModel
    from tokenizers import Tokenizer

_MODEL_DIR = "static_model"
_TRAINING_FILE = "training.json"
# texts counted per sparse product: bounds the (texts x words) matrices of one step
_CHUNK = 16_384
#: the teacher: MiniLM (the `minilm` encoder with the static encoder's `model`) with these
#: parameters, the ones that change its vectors (precision, device, backend only round them)
TEACHER = "minilm"
TEACHER_PARAMS: JSONObject = {"max_seq_length": 256, "pooling": "mean", "normalize": True}
GENERAL_SAMPLES = ("wikipedia", "none")


def distill_static(model: str, pca_dims: int, zipf_sif: float | None, batch_size: int = 512) -> StaticModel:
    """Distill a model2vec StaticModel from a local transformer (see the module docstring); with
    `zipf_sif=None` the table is left unweighted, for weights fitted on a collection; `pca_dims`
    0 (or the model's width or more) keeps the transformer's dimensions."""
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
        out *= zipf_weights(len(out), zipf_sif)[:, None]
    return static_model(out, tokenizer, model)


def static_model(vectors: np.ndarray, tokenizer: Tokenizer, base_model: str) -> StaticModel:
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


def zipf_weights(vocabulary_size: int, a: float) -> np.ndarray:
    """SIF over a Zipf frequency by vocabulary rank (model2vec's compute_weights)."""
    inv_rank = 1 / np.arange(2, vocabulary_size + 2)
    return sif_weights(inv_rank / inv_rank.sum(), a)


def token_counts(tokenizer: Tokenizer, texts: list[str], vocabulary_size: int) -> np.ndarray:
    """How often each token occurs in the texts (as the static model tokenises them)."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64)
    return np.bincount(ids, minlength=vocabulary_size).astype(np.float64)


def token_matrix(
    tokenizer: Tokenizer, texts: list[str], vocabulary_size: int, max_tokens: int | None
) -> sp.csr_matrix:
    """(texts x vocabulary) counts of each text's first `max_tokens` tokens, by the tokenizer."""
    rows = [e.ids[:max_tokens] for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(indptr[-1]))
    matrix = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(texts), vocabulary_size)
    )
    matrix.sum_duplicates()
    return matrix


def general_sample(model: str) -> tuple[list[str], np.ndarray]:
    """Passages of the English Wikipedia excerpt in gensim's test data and the teacher's vectors
    of them: general text beside a collection's own, so that words the collection rarely uses
    are trained too. Encoded once per machine (~9,700 passages: ~1-2 min of MiniLM on 2 cores)."""
    from embedscope.samples import wikipedia_passages

    path = model_cache_dir("static-general", model, "wikipedia-passages-v1", json.dumps(TEACHER_PARAMS))
    if not (path / "vectors.npy").exists():
        texts = wikipedia_passages()
        vectors = create_encoder(TEACHER, {"model": model, **TEACHER_PARAMS}).encode(texts)
        tmp = path.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "texts.json").write_text(json.dumps(texts))
        np.save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float32))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)  # atomic: a concurrent reader never sees half a sample
    return json.loads((path / "texts.json").read_text()), np.load(path / "vectors.npy")


class StaticEncoder(Encoder):
    """model2vec static embeddings distilled locally from MiniLM, then trained against MiniLM's
    vectors of the collection's texts: ~100x faster than the transformer."""

    name: ClassVar[str] = "static"
    description: ClassVar[str] = (
        "model2vec static token embeddings distilled offline from MiniLM and trained on the collection "
        "to match MiniLM's vectors (dense)"
    )
    defaults: ClassVar[JSONObject] = {
        "model": DEFAULT_MODEL,
        "pca_dims": 256,  # model2vec's default
        # corpus: SIF over the collection's own token counts (fitted); zipf: model2vec's rank estimate
        "weighting": "corpus",
        # SIF's a: 1e-3 is Arora et al.'s value for corpus frequencies; model2vec uses 1e-4 with zipf
        "sif_coefficient": 1e-3,
        # Tokenlearn: fit the token vectors to MiniLM's vectors of the collection's texts
        "train": True,
        # + general text: none | wikipedia (the excerpt in gensim's test data: measured lower on
        # SciFact, 0.609 vs 0.624, and it costs ~9,700 MiniLM passes once per machine)
        "general_sample": "none",
        # collection texts trained on at most (a seeded sample beyond): bounds the teacher's work
        "train_texts": 20_000,
        "epochs": 20,
        "learning_rate": 0.01,
        "batch_size": 256,
        "patience": 2,
        "validation_fraction": 0.1,
        "seed": 0,
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        p = self.params
        if not 0 < float(p["sif_coefficient"]) < 1:
            raise EmbedscopeError("sif_coefficient must be in (0, 1)")
        if int(p["pca_dims"]) < 1:
            raise EmbedscopeError("pca_dims must be >= 1")
        if p["weighting"] not in ("corpus", "zipf"):
            raise EmbedscopeError(f"weighting must be 'corpus' or 'zipf', not {p['weighting']!r}")
        if p["general_sample"] not in GENERAL_SAMPLES:
            raise EmbedscopeError(
                f"general_sample must be one of {', '.join(GENERAL_SAMPLES)}, not {p['general_sample']!r}"
            )
        for key in ("train_texts", "epochs", "batch_size", "patience"):
            if int(p[key]) < 1:
                raise EmbedscopeError(f"{key} must be >= 1")
        if not float(p["learning_rate"]) > 0:
            raise EmbedscopeError("learning_rate must be > 0")
        if not 0 < float(p["validation_fraction"]) < 1:
            raise EmbedscopeError("validation_fraction must be in (0, 1)")
        # corpus weighting counts the collection's tokens, training fits to its texts: both learn
        self.requires_fit = p["weighting"] == "corpus" or bool(p["train"])
        self.fitted = not self.requires_fit
        self._static: StaticModel | None = None
        #: what the last training did (epochs, held-out cosine, teacher vectors reused, seconds)
        self.training: JSONObject | None = None
        # the word cache, shared by fit and encode: the fitted model keeps the base's tokenizer
        self._words: WordPieceCounter | None = None
        self._words_checked = False

    def teacher(self) -> JSONObject | None:
        if not self.params["train"]:
            return None
        return {"name": TEACHER, "params": {"model": self.params["model"], **TEACHER_PARAMS}}

    def _zipf_sif(self) -> float | None:
        return float(self.params["sif_coefficient"]) if self.params["weighting"] == "zipf" else None

    def _distilled(self, full: bool = False) -> StaticModel:
        """The distilled table, cached per machine: PCA to `pca_dims` and Zipf-weighted (or
        unweighted for corpus weighting); `full`: unreduced and unweighted (what training starts from)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from model2vec import StaticModel

        dims = 0 if full else int(self.params["pca_dims"])
        sif = None if full else self._zipf_sif()
        weighting = "unweighted" if sif is None else str(sif)
        path = model_cache_dir("static", str(self.params["model"]), str(dims), weighting)
        if not (path / "config.json").exists():
            model = distill_static(self.params["model"], dims, sif)
            tmp = path.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)  # atomic: a concurrent reader never sees half a model
        return StaticModel.from_pretrained(str(path))

    @property
    def static_model(self) -> StaticModel:
        """The model that encodes: fitted (weighted) once `fit` ran or a saved one was loaded."""
        if self._static is None:
            self._static = self._distilled()
        return self._static

    def _word_counter(self, model: StaticModel) -> WordPieceCounter | None:
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

    def _count_matrix(self, model: StaticModel, texts: list[str], max_tokens: int | None) -> sp.csr_matrix:
        """(texts x vocabulary) token counts of each text's first `max_tokens` tokens (all: None)."""
        vocabulary = len(model.embedding)
        counter = self._word_counter(model)
        if counter is None:
            return token_matrix(model.tokenizer, texts, vocabulary, max_tokens)
        parts = []
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start : start + _CHUNK]
            matrix, aside = counter.counts(chunk, max_tokens)
            if len(aside):  # special-token text: the tokenizer counts these (their rows are empty)
                placed = sp.csr_matrix(
                    (np.ones(len(aside), dtype=np.float32), (aside, np.arange(len(aside)))),
                    shape=(len(chunk), len(aside)),
                )
                rest = token_matrix(model.tokenizer, [chunk[i] for i in aside], vocabulary, max_tokens)
                matrix = matrix + placed @ rest
            parts.append(matrix)
        return sp.vstack(parts).tocsr()

    def fit_to_teacher(self, texts: Sequence[str], targets: np.ndarray) -> StaticEncoder:
        return self.fit(texts, targets)

    def fit(self, texts: Sequence[str], targets: np.ndarray | None = None) -> StaticEncoder:
        """Count the collection's tokens for the SIF weights (weighting=corpus) and, with `train`,
        fit the table to the teacher's vectors of the texts: `targets` (one row per text, NaN rows
        where the teacher has none; `Collection.embed` passes the stored ones), the rest encoded
        by the teacher here."""
        texts = check_corpus(texts)
        train = bool(self.params["train"])
        if not self.requires_fit:
            self.fitted = True
            return self
        if targets is not None and len(targets) != len(texts):
            raise EmbedscopeError(f"{len(targets)} teacher vectors for {len(texts)} texts")
        base = self._distilled(full=train)
        vocabulary = len(base.embedding)
        if self.params["weighting"] == "corpus":
            counts = np.zeros(vocabulary, dtype=np.float64)
            for start in range(0, len(texts), _CHUNK):  # summed by chunk: bounded memory
                # truncated to max_length tokens, as the base model's tokenizer is set to
                chunk = self._count_matrix(base, texts[start : start + _CHUNK], base.max_length)
                counts += np.asarray(chunk.sum(axis=0)).ravel()
            weights = sif_weights(counts / max(counts.sum(), 1.0), float(self.params["sif_coefficient"]))
        elif train:  # zipf weights, left out of the full table
            weights = zipf_weights(vocabulary, float(self.params["sif_coefficient"]))
        else:
            weights = np.ones(vocabulary, dtype=np.float32)  # not reached: zipf needs no fit
        table = np.asarray(base.embedding, dtype=np.float32)
        if train:
            table, goal, own = self._train(base, texts, targets, weights)
            dims = int(self.params["pca_dims"])
            if own >= dims:
                goal = goal[:own]  # the collection's own texts: what this encoder will encode
            if dims < min(table.shape[1], len(goal)):
                # onto the teacher's own principal directions (uncentred: its vectors are compared
                # by cosine as they are): the table's PCA would centre it on the mean token, which
                # moves every trained text away from the teacher's vector
                basis = np.linalg.svd(goal, full_matrices=False)[2][:dims]
                table = np.ascontiguousarray(table @ basis.T, dtype=np.float32)
        self._static = static_model(table * weights[:, None], base.tokenizer, self.params["model"])
        self.fitted = True
        return self

    def _train(
        self, base: StaticModel, texts: list[str], targets: np.ndarray | None, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The full table trained on (a seeded sample of) the texts plus the general sample, the
        teacher's vectors it was trained towards (the collection's first) and how many are the
        collection's."""
        p = self.params
        rng = np.random.default_rng(int(p["seed"]))
        chosen = np.arange(len(texts))
        if len(texts) > int(p["train_texts"]):
            chosen = np.sort(rng.choice(len(texts), int(p["train_texts"]), replace=False))
        picked = [texts[i] for i in chosen]
        if targets is None:
            goal = np.full((len(picked), base.embedding.shape[1]), np.nan, dtype=np.float32)
        else:
            goal = np.array(targets[chosen], dtype=np.float32)
        missing = np.flatnonzero(np.isnan(goal).any(axis=1))
        if len(missing):
            from embedscope.encoders.registry import create_encoder

            teacher = create_encoder(TEACHER, {"model": p["model"], **TEACHER_PARAMS})
            goal[missing] = teacher.encode([picked[i] for i in missing])
        general: list[str] = []
        if p["general_sample"] == "wikipedia":
            general, general_goal = general_sample(str(p["model"]))
            goal = np.concatenate([goal, general_goal])
        # the teacher read the first max_seq_length word pieces, [CLS] and [SEP] included
        matrix = self._count_matrix(base, picked + general, int(TEACHER_PARAMS["max_seq_length"]) - 2)
        if base.unk_token_id is not None:
            matrix.data[matrix.indices == base.unk_token_id] = 0  # dropped at encode too
        settings = TrainSettings(**{k: p[k] for k in TrainSettings.__dataclass_fields__})
        table, report = train_table(
            np.asarray(base.embedding, dtype=np.float32), (matrix @ sp.diags(weights)).tocsr(), goal, settings
        )
        self.training = {
            **report,
            "collection_texts": len(picked),
            "general_texts": len(general),
            "teacher_vectors_reused": len(picked) - len(missing),
            "teacher_encoded": len(missing),
        }
        return table, goal, len(picked)

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
        if self.training is not None:
            (Path(directory) / _TRAINING_FILE).write_text(json.dumps(self.training, indent=2))

    def _load_state(self, directory: Path) -> None:
        # a saved model is complete (weights applied), also for versions made before `weighting`
        from model2vec import StaticModel

        path = Path(directory) / _MODEL_DIR
        if path.exists():
            self._static = StaticModel.from_pretrained(str(path))
        if (Path(directory) / _TRAINING_FILE).exists():
            self.training = json.loads((Path(directory) / _TRAINING_FILE).read_text())
