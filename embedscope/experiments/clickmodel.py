"""Simulated users, to check online methods offline: the cascade click model.

The user reads the list top-down; at each result they click with P(click | relevance), and after a
click they stop reading with P(stop | relevance). The three parameter sets are those of Hofmann,
Whiteson & de Rijke, "A probabilistic method for inferring preferences from clicks" (CIKM 2011),
used since for interleaving studies, for binary relevance:

| model         | P(click | not rel, rel) | P(stop | not rel, rel) |
|---------------|-------------------------|------------------------|
| perfect       | 0.0, 1.0                | 0.0, 0.0               |
| navigational  | 0.05, 0.95              | 0.2, 0.9               |
| informational | 0.4, 0.9                | 0.1, 0.5               |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CascadeClickModel:
    name: str
    click: tuple[float, float]  # P(click | not relevant), P(click | relevant)
    stop: tuple[float, float]  # P(stop after a click | not relevant), P(stop | relevant)

    def clicks(self, relevant: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clicked positions (bool) for a batch of impressions: `relevant` is (impressions, depth) bool."""
        rel = np.asarray(relevant, dtype=bool).astype(np.intp)
        clicked = rng.random(rel.shape) < np.take(self.click, rel)
        stops = clicked & (rng.random(rel.shape) < np.take(self.stop, rel))
        # a position is read when the user stopped at no earlier position
        stopped_before = (np.cumsum(stops, axis=1) - stops) > 0
        return clicked & ~stopped_before


CLICK_MODELS = {
    m.name: m
    for m in (
        CascadeClickModel("perfect", (0.0, 1.0), (0.0, 0.0)),
        CascadeClickModel("navigational", (0.05, 0.95), (0.2, 0.9)),
        CascadeClickModel("informational", (0.4, 0.9), (0.1, 0.5)),
    )
}
