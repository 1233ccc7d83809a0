"""An encoder tuned to the collection: a sentence-transformers model (all-MiniLM-L6-v2 by default)
fine-tuned on the collection's own items with self-supervised pairs, then used like MiniLM.

Pairs (`pairs=`, comma-separated kinds; each item gives one pair per epoch, of a kind drawn among
the kinds it has, so the cost grows with the items, not with the number of kinds):
- `ict`: the Inverse Cloze Task (Lee, Chang & Toutanova, ACL 2019): a sentence of the item's text
  is the query, the rest of the text the document (the sentence is left in 10% of the time, as
  there, so the model still rewards word overlap);
- any metadata field name (`title`, `categories`, ...): that field's value is the query, the text
  the document (the value cut from its start where the template put it there);
- pairs given by the caller (`add_pairs`): `embedscope tune --from-clicks` adds an experiment's
  (query, clicked item) pairs.
The loss is sentence-transformers' MultipleNegativesRankingLoss (the default) or its cached variant:
in-batch negatives, the same gradients (CachedMNRL is GradCache: it embeds the batch without
gradients, then back-propagates 16 texts at a time), but MNRL holds the whole batch's activations:
5.7 GB peak at batch 64 and 128 word pieces on the CPU training all layers, against about 2 GB for
CachedMNRL, which costs one more forward pass (~1/3 more compute). Only the top `train_layers`
layers are trained (3 of MiniLM's 6 by default): the lower ones keep the base's general training
(training all of them on the books' self-supervised pairs was slower and worse), take no backward
pass and hold no activations.
Batches never hold two pairs with the same query or document text (a duplicate would be its own
false negative) and are grouped by length (the padding of a batch of short and long texts is
compute spent on nothing); the defaults are the literature's: one epoch, learning rate 2e-5,
batch 64, 10% linear warm-up, then linear decay.

The loop is plain PyTorch over the sentence-transformers loss, not SentenceTransformerTrainer: the
trainer needs the `datasets`/`accelerate` extra and brings nothing this small loop lacks.

The result is an ordinary embedding version. Its config records base model, pairs, loss, epochs,
batch size, learning rate, warm-up, seed; its fitted state is the tuned model folder (saved with the
version in both stores, like LSA's or word2vec's state) plus `training.json` (what the fit did). On
load the folder is copied once into the machine cache under a name that is a hash of its files, so
the OpenVINO (documents) and ONNX Runtime (queries) export caches, keyed by the model folder, are
keyed by the tuned weights too: searching a tuned version runs exactly MiniLM's path and speed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import numpy as np

from embedscope.encoders.base import check_corpus
from embedscope.encoders.runtime import Plan, model_cache_dir
from embedscope.encoders.transformer import (
    DEFAULT_MODEL,
    TransformerEncoder,
    resolve_device,
    resolve_model_path,
)
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONMapping, JSONObject, JSONValue

if TYPE_CHECKING:
    import torch

ICT = "ict"
LOSSES = ("mnrl", "cached_mnrl")
#: ICT leaves the query sentence in the document this often (Lee et al. 2019 found 10% best)
ICT_KEEP = 0.1
#: shorter sentences say too little to be a query (headings, "Read more.")
ICT_MIN_WORDS = 5
#: batches of `batch_size` drawn from groups of this many batches sorted by length (as
#: transformers' LengthGroupedSampler): short texts train with short texts, little padding
_GROUP_BATCHES = 50
#: GradCache mini-batch of cached_mnrl
_CACHED_MINI_BATCH = 16
_MODEL_DIR = "model"
_TRAINING_FILE = "training.json"
_WEIGHT_DECAY = 0.01  # sentence-transformers' `fit` default
_MAX_GRAD_NORM = 1.0  # sentence-transformers' `fit` default
# a sentence ends at . ! or ? followed by space and a capital, a digit or an opening quote; written
# here (not nltk's punkt, not a dependency) because ICT needs only a fair cut, not perfect sentences
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_LEADING_PUNCT = " \t\n.:;,-\u2013\u2014|"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Pair:
    """A training pair: the query side, the document side, and where it came from."""

    anchor: str
    positive: str
    kind: str


# --- pairs ------------------------------------------------------------------------------------------
def parse_kinds(pairs: str | Sequence[str]) -> list[str]:
    """'title, ict' or ['title', 'ict'] -> ['title', 'ict'] (order kept, duplicates dropped)."""
    raw = pairs.split(",") if isinstance(pairs, str) else list(pairs)
    kinds = list(dict.fromkeys(str(k).strip() for k in raw if str(k).strip()))
    if not kinds:
        raise EmbedscopeError("pairs is empty: name 'ict' and/or metadata fields, e.g. pairs=title,ict")
    return kinds


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def ict_pair(text: str, rng: np.random.Generator) -> Pair | None:
    """A sentence of `text` -> the rest of it (with the sentence kept in ICT_KEEP of the draws)."""
    parts = sentences(text)
    candidates = [i for i, s in enumerate(parts) if len(s.split()) >= ICT_MIN_WORDS]
    # two real sentences at least: with one, the rest is only what a template put around it (a
    # genre, "Fiction."), and the pair would teach "any plot -> Fiction"
    if len(candidates) < 2:
        return None
    pick = candidates[int(rng.integers(len(candidates)))]
    keep = rng.random() < ICT_KEEP
    rest = " ".join(s for i, s in enumerate(parts) if keep or i != pick)
    return Pair(parts[pick], rest, ICT)


def field_value(metadata: JSONMapping | None, field: str) -> str | None:
    value = (metadata or {}).get(field)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def field_pair(text: str, value: str, kind: str) -> Pair | None:
    """A metadata field's value -> the item's text, without the value where the text starts with it
    (a template such as "{title}. {description}" puts it there, and a query that the document
    begins with teaches nothing)."""
    rest = text[len(value) :].lstrip(_LEADING_PUNCT) if text.startswith(value) else text
    return Pair(value, rest, kind) if rest else None


def build_pairs(
    texts: Sequence[str],
    metadata: Sequence[JSONMapping] | None,
    kinds: Sequence[str],
    rng: np.random.Generator,
    batch_size: int | None = None,
) -> list[Pair]:
    """One pair per item that can give one, of a kind drawn among the kinds it has (in corpus order).

    With `batch_size`, one query text serves at most one pair per batch's worth of items: a batch
    never holds the same query twice, so the surplus of a value that many items share (a genre,
    "Fiction" on 40% of the books) became hundreds of batches of two or three pairs each, steps that
    cost a full optimiser step and have almost no negatives to learn from; those items give a pair
    of another kind instead. A metadata field no item has is the user's mistake (a misspelt field
    name), said in one line."""
    fields = [k for k in kinds if k != ICT]
    if fields:
        if metadata is None:
            raise EmbedscopeError(
                f"pairs {', '.join(map(repr, fields))} need the items' metadata: fit through the "
                "collection (`embedscope tune` / `embed`), or use pairs=ict"
            )
        present = {key for meta in metadata for key, v in meta.items() if v is not None}
        missing = [f for f in fields if f not in present]
        if missing:
            have = ", ".join(sorted(present)) or "none"
            raise EmbedscopeError(
                f"no item has metadata field {', '.join(map(repr, missing))} (fields: {have}); "
                "pairs take 'ict' and metadata field names"
            )
    per_query = math.ceil(len(texts) / batch_size) if batch_size else None
    used: dict[str, int] = {}
    out: list[Pair] = []
    for row, text in enumerate(texts):
        order = rng.permutation(len(kinds))
        for k in order:  # the first kind, in a random order, that this item can give
            kind = kinds[int(k)]
            if kind == ICT:
                pair = ict_pair(text, rng)
            else:
                value = field_value(metadata[row] if metadata is not None else None, kind)
                pair = field_pair(text, value, kind) if value else None
            if pair is not None and per_query is not None and used.get(pair.anchor, 0) >= per_query:
                continue
            if pair is not None:
                used[pair.anchor] = used.get(pair.anchor, 0) + 1
                out.append(pair)
                break
    return out


def make_batches(pairs: Sequence[Pair], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of pair indices, grouped by length, with no query or document text twice in
    a batch; a pair that no batch can take is left out, and a batch of one (no negative) is dropped.

    A pair with a repeated query or document goes first to its slot in length order or, where that
    batch already holds the text or is full, to the next batch that can take it; the other pairs
    then fill the room left, in length order. So repeats (a genre shared by many items)
    spread over all the batches instead of piling up at the end as batches of two or three, each of
    which would cost an optimiser step with almost nothing to learn from. Written here rather than
    taken from sentence-transformers' NoDuplicatesBatchSampler, which lives in the trainer extra
    (datasets) and does not group by length."""
    order = rng.permutation(len(pairs))
    group = batch_size * _GROUP_BATCHES
    grouped: list[int] = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        grouped.extend(sorted(chunk.tolist(), key=lambda i: -len(pairs[i].positive)))
    count = math.ceil(len(grouped) / batch_size)
    batches: list[list[int]] = [[] for _ in range(count)]
    seen: list[set[str]] = [set() for _ in range(count)]
    repeats = Counter(text for p in pairs for text in {p.anchor, p.positive})
    shared = {i for i in grouped if max(repeats[pairs[i].anchor], repeats[pairs[i].positive]) > 1}
    # first the pairs with a repeated text, each at its slot in length order or the next batch that
    # can take it; then the others fill what room is left in length order (they conflict with none)
    for position, i in enumerate(grouped):
        if i not in shared:
            continue
        texts = (pairs[i].anchor, pairs[i].positive)
        for step in range(count):
            slot = (position // batch_size + step) % count
            if len(batches[slot]) < batch_size and not seen[slot].intersection(texts):
                batches[slot].append(i)
                seen[slot].update(texts)
                break
    slot = 0
    for i in grouped:
        if i in shared:
            continue
        while len(batches[slot]) >= batch_size:
            slot += 1
        batches[slot].append(i)
    kept = [b for b in batches if len(b) > 1]
    return [kept[int(i)] for i in rng.permutation(len(kept))]


# --- the model folder, named by its content -----------------------------------------------------------
def folder_digest(folder: Path) -> str:
    """sha1 over the folder's files (relative names and bytes), in name order."""
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def install_model(folder: Path, digest: str | None = None) -> Path:
    """The model folder copied into the machine cache as tuned/<hash of its files>, once (written
    atomically: a reader never sees half a model). `digest`, when the caller recorded it at save,
    spares hashing the ~90 MB again on every load where the copy is already there."""
    target_of = model_cache_dir("tuned")
    if digest and (target_of / digest / "config.json").exists():
        return target_of / digest
    digest = folder_digest(folder)
    target = target_of / digest
    if not (target / "config.json").exists():
        target_of.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target_of, prefix=f".{digest}-"))
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / "config.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- the encoder ----------------------------------------------------------------------------------------
class TunedEncoder(TransformerEncoder):
    """A sentence-transformers model fine-tuned on the collection (`fit`), then run as MiniLM is."""

    name: ClassVar[str] = "tuned"
    description: ClassVar[str] = (
        "MiniLM (or another sentence-transformers model) fine-tuned on the collection's own items "
        "with self-supervised pairs (ICT, metadata field -> text; in-batch negatives)"
    )
    requires_fit: bool = True
    defaults: ClassVar[JSONObject] = {
        "base": DEFAULT_MODEL,  # the sentence-transformers model tuned (name or local folder)
        "pairs": ICT,  # comma-separated: ict and/or metadata field names, e.g. "title,categories,ict"
        # the same gradients either way (GradCache is exact); cached_mnrl holds 16 texts' activations
        # at a time, for one more forward pass (~1/3 more compute): 2 GB at batch 64 and 128 word
        # pieces where mnrl took 5.7 GB training all layers (less with the lower layers frozen)
        "loss": "mnrl",  # mnrl | cached_mnrl
        "epochs": 1,
        "batch_size": 64,
        "lr": 2e-5,
        "warmup": 0.1,  # fraction of the steps with a linear warm-up
        "seed": 0,
        # word pieces per training text: 128 covers three quarters of the books' descriptions and
        # halves the cost of training at 256 (documents are still encoded at max_seq_length)
        "train_seq_length": 128,
        # the top transformer layers trained, the embeddings and the layers below kept as the base
        # has them (0: all): no backward pass through the lower half; on the 5,197 books 400 s of
        # training where all six of MiniLM's layers take 570 s, and better (bench/bench_tune.py)
        "train_layers": 3,
        "train_device": "auto",  # auto (a GPU when present) | cpu | cuda
        "clicks": None,  # the experiment whose (query, clicked item) pairs were added, if any
        **{k: v for k, v in TransformerEncoder.defaults.items() if k != "model"},
    }

    def __init__(self, **params: JSONValue) -> None:
        super().__init__(**params)
        p = self.params
        p["pairs"] = ",".join(parse_kinds(p["pairs"]))  # one spelling, so equal configs compare equal
        if p["loss"] not in LOSSES:
            raise EmbedscopeError(f"loss must be one of {', '.join(LOSSES)}, not {p['loss']!r}")
        if int(p["epochs"]) < 1 or int(p["batch_size"]) < 2 or int(p["train_seq_length"]) < 8:
            raise EmbedscopeError("epochs must be >= 1, batch_size >= 2 and train_seq_length >= 8")
        if int(p["train_layers"]) < 0:
            raise EmbedscopeError("train_layers must be >= 0 (the top layers trained; 0 trains all)")
        if not float(p["lr"]) > 0 or not 0 <= float(p["warmup"]) < 1:
            raise EmbedscopeError("lr must be > 0 and warmup a fraction in [0, 1)")
        self.fitted = False
        self._tuned: Path | None = None
        self._extra: list[Pair] = []
        #: called with (steps done, steps in all) after each training step (the CLI's progress bar)
        self.progress: Progress | None = None
        #: what the last fit did: pairs per kind, steps, losses, seconds (saved as training.json)
        self.training: JSONObject = {}

    def add_pairs(self, pairs: Sequence[tuple[str, str]], kind: str = "clicks") -> None:
        """(query, document text) pairs learned from on top of the self-supervised ones, every epoch."""
        self._extra.extend(Pair(str(q), str(d), kind) for q, d in pairs if str(q).strip() and str(d).strip())

    # --- fit ------------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str]) -> TunedEncoder:
        return self.fit_items(texts, None)

    def fit_items(self, texts: Sequence[str], metadata: Sequence[JSONMapping] | None) -> TunedEncoder:
        texts = check_corpus(texts)
        if metadata is not None and len(metadata) != len(texts):
            raise ValueError("metadata must hold one mapping per text")
        if self.params["clicks"] and not self._extra:
            raise EmbedscopeError(
                f"this encoder learns from experiment '{self.params['clicks']}''s clicks too: tune it "
                f"with `embedscope tune COLLECTION --from-clicks {self.params['clicks']}`"
            )
        self._model = self._onnx = self._tokenizer = self._compiled = None
        self._int8_xml = None
        folder, self.training = train(
            resolve_model_path(self.params["base"]), texts, metadata, self._extra, self.params, self.progress
        )
        self._tuned = folder
        self.training["digest"] = folder.name
        self.fitted = True
        super().fit(texts)  # calibrates an OpenVINO int8 plan (auto on a VNNI CPU) on the tuned weights
        return self

    def _set_plan(self, plan: Plan) -> None:
        """The parent's plan (precision=auto as for MiniLM: the same OpenVINO/ONNX Runtime paths),
        but training is this encoder's fit whatever the arithmetic: it always requires one."""
        super()._set_plan(plan)
        self.requires_fit = True
        self.fitted = getattr(self, "_tuned", None) is not None

    def _model_path(self) -> str:
        self._check_fitted()
        assert self._tuned is not None
        return str(self._tuned)

    # --- persistence -------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        super().save(directory)
        if self._tuned is not None:
            shutil.copytree(self._tuned, Path(directory) / _MODEL_DIR, dirs_exist_ok=True)
            (Path(directory) / _TRAINING_FILE).write_text(json.dumps(self.training, indent=1))

    def _load_state(self, directory: Path) -> None:
        super()._load_state(directory)
        directory = Path(directory)
        if not (directory / _MODEL_DIR / "config.json").exists():
            raise EmbedscopeError(
                f"the tuned encoder's model is missing from {directory}; re-tune with `embedscope tune`"
            )
        record = directory / _TRAINING_FILE
        self.training = json.loads(record.read_text()) if record.exists() else {}
        self._tuned = install_model(directory / _MODEL_DIR, self.training.get("digest"))


# --- training -------------------------------------------------------------------------------------------
def freeze_below(transformer: torch.nn.Module, train_layers: int) -> tuple[int, int]:
    """Leave only the top `train_layers` layers of a Hugging Face transformer trainable (and what
    follows them, a pooler or final norm); returns (layers trained, layers). The layer stack is the
    model's `ModuleList` named `layer` or `layers` (BERT, RoBERTa, MPNet, DistilBERT, ...); a model
    without one is trained whole. Frozen parameters take no gradient, so autograd keeps no
    activations for them and runs no backward pass through them."""
    import torch

    stacks = [
        (name, module)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers")
    ]
    if not stacks:
        return 0, 0
    prefix, layers = stacks[0]
    total = len(layers)
    if train_layers <= 0 or train_layers >= total:
        return total, total
    first_trained = f"{prefix}.{total - train_layers}."
    # parameters are registered in forward order: the embeddings, then the layers bottom up
    for name, param in transformer.named_parameters():
        if name.startswith(first_trained):
            break
        param.requires_grad_(False)
    return train_layers, total


def train(
    base_path: str,
    texts: Sequence[str],
    metadata: Sequence[JSONMapping] | None,
    extra: Sequence[Pair],
    params: JSONMapping,
    progress: Progress | None = None,
) -> tuple[Path, JSONObject]:
    """Fine-tune the model at `base_path`; returns its installed folder and a record of the run."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.util import batch_to_device

    seed = int(params["seed"])
    rng = np.random.default_rng(seed)
    kinds = parse_kinds(params["pairs"])
    batch_size = int(params["batch_size"])
    epochs: list[tuple[list[Pair], list[list[int]]]] = []
    for _ in range(int(params["epochs"])):  # new sentences and kinds drawn each epoch
        pairs = build_pairs(texts, metadata, kinds, rng, batch_size) + list(extra)
        epochs.append((pairs, make_batches(pairs, batch_size, rng)))
    total = sum(len(b) for _, b in epochs)
    if total == 0:
        raise EmbedscopeError(
            f"no training batch could be made from {len(texts)} items with pairs={params['pairs']} "
            "(ict needs texts of two sentences or more); give more items or other pairs"
        )
    transformers.logging.disable_progress_bar()
    torch.manual_seed(seed)
    device = resolve_device(str(params["train_device"]))
    model = SentenceTransformer(base_path, device=device)
    model.max_seq_length = int(params["train_seq_length"])
    # torch types a submodule's attribute as `Tensor | Module`; this one is the transformers model
    transformer = cast(torch.nn.Module, model[0].auto_model)
    layers_trained, layers = freeze_below(transformer, int(params["train_layers"]))
    if params["loss"] == "cached_mnrl":
        loss_fn: torch.nn.Module = CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=_CACHED_MINI_BATCH
        )
    else:
        loss_fn = MultipleNegativesRankingLoss(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=float(params["lr"]), weight_decay=_WEIGHT_DECAY)
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, int(float(params["warmup"]) * total), total
    )
    losses: list[float] = []
    started, cpu0 = time.perf_counter(), time.process_time()
    model.train()
    for pairs, batches in epochs:
        for batch in batches:
            features = [
                batch_to_device(
                    model.preprocess([getattr(pairs[i], side) for i in batch]), torch.device(device)
                )
                for side in ("anchor", "positive")
            ]
            loss = loss_fn(features, torch.empty(0))  # in-batch negatives: labels are implicit
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, _MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(round(float(loss.item()), 4))
            if progress:
                progress(len(losses), total)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        # no model card: the base's would describe the base (and a card's text is not the model)
        model.save(tmp, create_model_card=False)
        (Path(tmp) / "README.md").unlink(missing_ok=True)
        folder = install_model(Path(tmp))
    counts: dict[str, int] = {}
    for pairs, _ in epochs:
        for pair in pairs:
            counts[pair.kind] = counts.get(pair.kind, 0) + 1
    used = sum(len(b) for _, batches in epochs for b in batches)
    first, last = losses[: max(1, len(losses) // 10)], losses[-max(1, len(losses) // 10) :]
    record = {
        "pairs": counts,
        "pairs_in_batches": used,
        "steps": total,
        "device": device,
        "layers_trained": layers_trained,
        "layers": layers,
        "loss_first_tenth": round(float(np.mean(first)), 4),
        "loss_last_tenth": round(float(np.mean(last)), 4),
        "losses": losses,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "torch_threads": int(torch.get_num_threads()),
        "items": len(texts),
    }
    return folder, record


def tuned_params(base: JSONMapping, **overrides: JSONValue) -> JSONObject:
    """The `tuned` parameters for tuning from a stored version's encoder config ({"name": "minilm",
    "params": {...}}): its model becomes `base`, its encoding settings (length, pooling, precision,
    ...) are kept, so the tuned version is searched exactly as its base is."""
    if base.get("name") not in ("minilm", "transformer"):
        raise EmbedscopeError(
            f"tune starts from a sentence-transformers version (encoder minilm or transformer), "
            f"not from encoder '{base.get('name')}'"
        )
    params = dict(base.get("params") or {})
    kept = {k: v for k, v in params.items() if k in TunedEncoder.defaults}
    return {**kept, "base": params.get("model", DEFAULT_MODEL), **overrides}
