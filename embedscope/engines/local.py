"""The default engine: encode in this process, a chunk at a time so progress can be shown."""

from __future__ import annotations

import numpy as np

from embedscope.encoders.base import Encoder, Vectors
from embedscope.engines.base import Engine, ProgressFn, chunk_size


class LocalEngine(Engine):
    name = "local"

    def encode(
        self, encoder: Encoder, texts: list[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> Vectors:
        if not texts:
            return encoder.encode([])
        if encoder.sparse:
            # count-based encoders vectorise the whole corpus in one vectorised call
            out = encoder.encode(texts, batch_size=batch_size)
            if progress:
                progress(len(texts), len(texts))
            return out
        chunk = chunk_size(batch_size)
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(encoder.encode(texts[start : start + chunk], batch_size=batch_size))
            if progress:
                progress(min(start + chunk, len(texts)), len(texts))
        return np.concatenate(parts).astype(np.float32)
