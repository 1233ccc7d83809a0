"""Name -> encoder class, and rebuilding a saved encoder by the name its config gives.

Adding an encoder = one module + one line in `_BUILTIN` (or a `register` call from a package above
this one: `embedscope.recommend` registers its behavioural encoders itself, so this module never
names a package that depends on it).
"""

from __future__ import annotations

import importlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from embedscope.encoders.base import Encoder
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.jsontypes import JSONObject

# name -> "module:Class"; imported lazily so `embedscope --help` does not import torch.
_BUILTIN: dict[str, str] = {
    "minilm": "embedscope.encoders.transformer:MiniLMEncoder",
    "onehot": "embedscope.encoders.sparse:OneHotEncoder",
    "bow": "embedscope.encoders.sparse:BagOfWordsEncoder",
    "tfidf": "embedscope.encoders.sparse:TfidfEncoder",
    "bm25": "embedscope.encoders.bm25:BM25Encoder",
    "lsa": "embedscope.encoders.reduced:LSAEncoder",
    "lda": "embedscope.encoders.reduced:LDAEncoder",
    "word2vec": "embedscope.encoders.word2vec:Word2VecEncoder",
    "torch_word2vec": "embedscope.encoders.torch_word2vec:TorchWord2VecEncoder",
    "static": "embedscope.encoders.static:StaticEncoder",
    "tuned": "embedscope.encoders.tune:TunedEncoder",
}


def register(name: str, target: str) -> None:
    """Register an encoder class given as 'package.module:ClassName'."""
    _BUILTIN[name] = target


def encoder_names() -> list[str]:
    return list(_BUILTIN)


def encoder_class(name: str) -> type[Encoder]:
    target = _BUILTIN.get(name)
    if target is None:
        raise NotFoundError(f"unknown encoder '{name}'; valid encoders: {', '.join(encoder_names())}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_encoder(name: str, params: JSONObject | None = None) -> Encoder:
    cls = encoder_class(name)
    if params is not None and not isinstance(params, dict):
        raise EmbedscopeError(f"encoder parameters must be an object of name: value, not {params!r}")
    try:
        return cls(**(params or {}))
    except (TypeError, ValueError, AttributeError) as exc:
        # a constructor sees nothing but the user's parameters: a value of the wrong shape that the
        # encoder's own checks let through (a list where a library wants a word) fails here
        valid = ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items()) or "none"
        raise EmbedscopeError(f"encoder '{name}': invalid parameter value ({exc}); valid: {valid}") from None


def load_encoder(directory: Path) -> Encoder:
    """The encoder `Encoder.save` wrote to `directory`: rebuilt by the name and parameters of its
    config, then its learned state read (`Encoder._load_state`)."""
    directory = Path(directory)
    cfg = json.loads((directory / "encoder.json").read_text())
    enc = create_encoder(cfg["name"], cfg.get("params", {}))
    enc._load_state(directory)
    enc.fitted = True
    return enc


def encoder_from_bytes(blob: bytes) -> Encoder:
    """The encoder `Encoder.to_bytes` packed."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            _extract(tar, Path(tmp))
        return load_encoder(Path(tmp) / "encoder")


def _extract(tar: tarfile.TarFile, into: Path) -> None:
    """Unpack with tarfile's "data" filter (nothing outside `into`, no links, devices or odd
    modes). Python 3.11.0-3.11.3 lack the filter (Debian 12's system python3 is 3.11.2, and
    `requires-python` is >= 3.11), so there the rule `Encoder.to_bytes` packs by is checked
    instead: plain files and folders under `into`, nothing else."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    root = into.resolve()
    members = tar.getmembers()
    for m in members:
        inside = (root / m.name).resolve()
        if not (m.isfile() or m.isdir()) or (inside != root and root not in inside.parents):
            raise EmbedscopeError(f"packed encoder holds {m.name!r}, which is not a file or folder inside it")
    tar.extractall(into, members=members)  # every member checked above


def describe_encoders() -> list[JSONObject]:
    """One row per encoder: name, description, parameters with defaults, sparse or dense."""
    rows = []
    for name in encoder_names():
        cls = encoder_class(name)
        rows.append(
            {
                "name": name,
                "description": cls.description,
                "params": dict(cls.defaults),
                "sparse": cls.sparse,
                "requires_fit": cls.requires_fit,
            }
        )
    return rows


def parse_params(pairs: list[str] | None, option: str = "--param") -> JSONObject:
    """Parse CLI `--param key=value` pairs; values are read as JSON when they parse, else strings."""

    params: JSONObject = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise EmbedscopeError(f"{option} '{pair}' must look like key=value")
        key, raw = pair.split("=", 1)
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params
