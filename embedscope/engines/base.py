"""The Engine contract: `encode(encoder, texts) -> vectors`, row-aligned with `texts`."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from embedscope.encoders.base import Encoder, Vectors
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject

ProgressFn = Callable[[int, int], None]

# name -> "module:Class"; imported lazily so the local path never imports Ray
ENGINES: dict[str, str] = {
    "local": "embedscope.engines.local:LocalEngine",
    "ray": "embedscope.engines.ray_data:RayEngine",
}


def chunk_size(batch_size: int) -> int:
    """Texts handed to one `encoder.encode` call: a few model batches, so progress moves and
    sentence-transformers' length sorting has enough texts to group (same for every engine, so
    their vectors come from the same batches)."""
    return max(batch_size * 4, 256)


def length_order(texts: list[str]) -> np.ndarray:
    """The order every engine hands texts to the encoder in: longest first across the whole corpus,
    not only inside each chunk, so a chunk holds texts of about one length and a transformer's
    batches carry almost no padding (books, OpenVINO's batches of 16 from chunks of 256: 6% padding
    in corpus order, 1.4% sorted; bench/bench_embed.py --padding). A text's vector does not depend
    on its neighbours, so only the order changes, and both engines then encode the same batches."""
    return np.argsort([-len(t) for t in texts], kind="stable")


class Engine(ABC):
    """Encodes texts with an already fitted encoder; `stats` describes the last `encode`."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.stats: JSONObject = {"engine": self.name}

    def check(self, encoder: Encoder) -> None:
        """Refuse an encoder this engine cannot run, before anything is fitted or encoded."""
        return None

    @abstractmethod
    def encode(
        self, encoder: Encoder, texts: list[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> Vectors:
        """Vectors for `texts` in their order: float32 (n, d), or CSR for sparse encoders."""


def create_engine(name: str = "local", *, address: str | None = None) -> Engine:
    target = ENGINES.get(name)
    if target is None:
        raise EmbedscopeError(f"unknown engine '{name}'; valid: {', '.join(ENGINES)}")
    if address and name != "ray":
        raise EmbedscopeError(f"--address joins a Ray cluster: it needs --engine ray, not '{name}'")
    module, cls = target.split(":")
    engine_class = getattr(importlib.import_module(module), cls)
    return engine_class(address=address) if name == "ray" else engine_class()
