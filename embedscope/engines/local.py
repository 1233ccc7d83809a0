"""The default engine: encode in this process, a chunk at a time so progress can be shown."""

from __future__ import annotations

import numpy as np

from embedscope.encoders.base import Encoder, Vectors
from embedscope.engines.base import Engine, ProgressFn, chunk_size, length_order


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
        order = length_order(texts)
        parts = []
        for start in range(0, len(texts), chunk):
            rows = order[start : start + chunk]
            parts.append(encoder.encode([texts[r] for r in rows], batch_size=batch_size))
            if progress:
                progress(min(start + chunk, len(texts)), len(texts))
        out = np.zeros((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return out
