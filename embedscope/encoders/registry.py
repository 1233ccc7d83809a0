"""Name -> encoder class. Adding an encoder = one module + one line in `_BUILTIN`."""

from __future__ import annotations

import importlib
from typing import Any

from embedscope.encoders.base import Encoder
from embedscope.errors import EmbedscopeError, NotFoundError

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
    "item2vec": "embedscope.recommend.behavioural:Item2VecEncoder",
    "als": "embedscope.recommend.behavioural:ALSEncoder",
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


def create_encoder(name: str, params: dict[str, Any] | None = None) -> Encoder:
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


def describe_encoders() -> list[dict[str, Any]]:
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


def parse_params(pairs: list[str] | None, option: str = "--param") -> dict[str, Any]:
    """Parse CLI `--param key=value` pairs; values are read as JSON when they parse, else strings."""
    import json

    params: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise EmbedscopeError(f"{option} '{pair}' must look like key=value")
        key, raw = pair.split("=", 1)
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params
