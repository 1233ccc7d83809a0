"""Hybrid retrieval: a sparse encoder (BM25 by default) and a dense one (MiniLM) fused on ranked lists.

Fusion works on runs, not vectors: a run is {doc_id: score} for one query from one retriever.
`reciprocal_rank_fusion` and `weighted_fusion` are plain functions so the search layer and the
evaluation harness call them on whatever runs they have.

The one exception to the Encoder contract: `HybridEncoder.encode` (and `encode_queries`) return a
tuple `(sparse_part, dense_part)`: a CSR matrix from the sparse encoder and a float32 array from the
dense one, row i of each belonging to text i. A search layer stores/indexes each part in its own
index (sparse with the sparse encoder's metric, dense with cosine), retrieves a run from each, and
fuses them with `fuse(runs)`, which applies the encoder's configured fusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embedscope.encoders.base import Encoder
from embedscope.errors import EmbedscopeError

Run = Mapping[str, float]


def reciprocal_rank_fusion(runs: Sequence[Run], k: int = 60) -> dict[str, float]:
    """RRF (Cormack et al., 2009): score(d) = sum over runs of 1 / (k + rank of d), ranks from 1.
    Scale-free, so BM25 scores and cosines mix without calibration. Sorted best first."""
    fused: dict[str, float] = {}
    for run in runs:
        ranked = sorted(run.items(), key=lambda kv: (-kv[1], kv[0]))
        for rank, (doc, _) in enumerate(ranked, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return dict(sorted(fused.items(), key=lambda kv: (-kv[1], kv[0])))


def _minmax(run: Run) -> dict[str, float]:
    if not run:
        return {}
    lo, hi = min(run.values()), max(run.values())
    if hi == lo:
        return {d: 1.0 for d in run}  # one distinct score: every document is the run's best
    return {d: (s - lo) / (hi - lo) for d, s in run.items()}


def weighted_fusion(runs: Sequence[Run], alpha: float | Sequence[float] = 0.5) -> dict[str, float]:
    """Convex combination of min-max normalised scores; a document missing from a run gets 0 there.
    alpha is the weight of the first run (two runs: alpha and 1 - alpha) or one weight per run."""
    if isinstance(alpha, int | float):
        if len(runs) != 2:
            raise EmbedscopeError("a single alpha needs exactly two runs; pass one weight per run")
        if not 0 <= alpha <= 1:
            raise EmbedscopeError(f"alpha must be in [0, 1], not {alpha}")
        weights = [float(alpha), 1.0 - float(alpha)]
    else:
        weights = [float(a) for a in alpha]
        if len(weights) != len(runs):
            raise EmbedscopeError(f"{len(weights)} weights for {len(runs)} runs")
    fused: dict[str, float] = {}
    for w, run in zip(weights, runs, strict=True):
        for doc, s in _minmax(run).items():
            fused[doc] = fused.get(doc, 0.0) + w * s
    return dict(sorted(fused.items(), key=lambda kv: (-kv[1], kv[0])))


class HybridEncoder(Encoder):
    """Sparse + dense encoders side by side; see the module docstring for the tuple contract."""

    name: ClassVar[str] = "hybrid"
    description: ClassVar[str] = "Sparse (BM25) + dense (MiniLM), fused by RRF or weighted scores"
    defaults: ClassVar[dict[str, Any]] = {
        "sparse": "bm25",
        "sparse_params": {},
        "dense": "minilm",
        "dense_params": {},
        "fusion": "rrf",  # rrf | weighted
        "rrf_k": 60,
        "alpha": 0.5,  # weighted fusion: weight of the sparse run
    }
    requires_fit: ClassVar[bool] = True
    metric: ClassVar[str] = "fusion"

    def __init__(self, **params: Any) -> None:
        from embedscope.encoders.registry import create_encoder

        super().__init__(**params)
        p = self.params
        if p["fusion"] not in ("rrf", "weighted"):
            raise EmbedscopeError(f"fusion must be 'rrf' or 'weighted', not {p['fusion']!r}")
        if not 0 <= float(p["alpha"]) <= 1:
            raise EmbedscopeError("alpha must be in [0, 1]")
        if "hybrid" in (p["sparse"], p["dense"]):
            raise EmbedscopeError("a hybrid encoder cannot contain another hybrid")
        self.sparse_encoder = create_encoder(p["sparse"], p["sparse_params"])
        self.dense_encoder = create_encoder(p["dense"], p["dense_params"])
        if not self.sparse_encoder.sparse or self.dense_encoder.sparse:
            raise EmbedscopeError("hybrid needs a sparse encoder as 'sparse' and a dense one as 'dense'")

    def fit(self, texts: Sequence[str]) -> HybridEncoder:
        self.sparse_encoder.fit(texts)
        self.dense_encoder.fit(texts)
        self.fitted = True
        return self

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False) -> Any:
        """(sparse CSR, dense float32) for documents; see the module docstring."""
        self._check_fitted()
        return (
            self.sparse_encoder.encode(texts, batch_size=batch_size, show_progress=show_progress),
            self.dense_encoder.encode(texts, batch_size=batch_size, show_progress=show_progress),
        )

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 64) -> Any:
        self._check_fitted()
        return (
            self.sparse_encoder.encode_queries(texts, batch_size=batch_size),
            self.dense_encoder.encode_queries(texts, batch_size=batch_size),
        )

    def fuse(self, runs: Sequence[Run]) -> dict[str, float]:
        """Fuse [sparse_run, dense_run] with this encoder's configured method."""
        if self.params["fusion"] == "rrf":
            return reciprocal_rank_fusion(runs, k=int(self.params["rrf_k"]))
        return weighted_fusion(runs, float(self.params["alpha"]))

    def search(
        self,
        query_texts: Sequence[str],
        doc_ids: Sequence[str],
        sparse_docs: Any,
        dense_docs: np.ndarray,
        k: int = 10,
    ) -> list[list[tuple[str, float]]]:
        """Brute-force hybrid search over already-encoded documents (for small collections and tests)."""
        q_sparse, q_dense = self.encode_queries(query_texts)
        s_scores = (q_sparse @ sparse_docs.T).toarray()
        d_scores = q_dense @ np.asarray(dense_docs).T
        depth = max(k, 100)  # fuse deeper than k so documents ranked lower by one retriever can rise
        out = []
        for i in range(len(query_texts)):
            s_top = np.argsort(-s_scores[i], kind="stable")[:depth]
            d_top = np.argsort(-d_scores[i], kind="stable")[:depth]
            runs = [
                # a document sharing no term with the query is not in the sparse run at all
                {doc_ids[j]: float(s_scores[i, j]) for j in s_top if s_scores[i, j] > 0},
                {doc_ids[j]: float(d_scores[i, j]) for j in d_top},
            ]
            out.append(list(self.fuse(runs).items())[:k])
        return out

    @property
    def dim(self) -> int:
        return self.sparse_encoder.dim + self.dense_encoder.dim

    def save(self, directory: Path) -> None:
        super().save(directory)
        self.sparse_encoder.save(Path(directory) / "sparse")
        self.dense_encoder.save(Path(directory) / "dense")

    def _load_state(self, directory: Path) -> None:
        self.sparse_encoder = Encoder.load(Path(directory) / "sparse")
        self.dense_encoder = Encoder.load(Path(directory) / "dense")
