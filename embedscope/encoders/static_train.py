"""Training a static token table so that pooled token vectors match a teacher's text vectors:
model2vec's Tokenlearn recipe (github.com/MinishLab/tokenlearn), fitted on one collection.

Each training text is a row of token counts, already multiplied by the pooling weights (SIF), so
a text's static vector is `counts @ table`: the weighted mean of its tokens' vectors up to a length
that the cosine ignores, exactly what `StaticEncoder.encode` computes. The table starts from the
distilled vectors and is fitted with Adam on the cosine distance between those pooled vectors and
the teacher's vectors of the same texts; a held-out slice of the texts stops the training when its
loss stops falling (the best epoch's table is kept). Only the tokens that occur in the training
texts are parameters: the others get no gradient and keep their distilled vectors.

Why by hand and not `model2vec.train.StaticModelForSimilarity` (the same recipe in model2vec
0.10): that needs the `datasets` package (four new packages), tokenises every batch again with
the full tokenizer, learns a per-token weight in place of the fitted SIF weights and seeds the
process's global random generators; here the counts come once from the word cache the encoder
encodes with, and the seed drives a private generator. Measured choices (docs/design.md): cosine
beat in-batch contrastive and a linear head; training in the transformer's own 384 dimensions
beat training in the PCA space.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    import torch

#: batches per epoch at least, however few the texts
_MIN_STEPS = 8


@dataclass(frozen=True)
class TrainSettings:
    """The knobs of one training run (all recorded in the encoder's config)."""

    epochs: int = 20  # at most; the held-out slice usually stops it earlier
    learning_rate: float = 1e-2
    batch_size: int = 256
    patience: int = 2  # epochs without a better held-out loss before stopping
    validation_fraction: float = 0.1
    seed: int = 0


def _torch_rows(matrix: sp.csr_matrix) -> torch.Tensor:
    """A scipy CSR block as a torch sparse COO tensor (what `torch.sparse.mm` differentiates)."""
    import torch

    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        indices,
        torch.from_numpy(coo.data.astype(np.float32)),
        coo.shape,
        is_coalesced=True,
        check_invariants=False,  # built from canonical CSR: sorted, no duplicates
    )


def train_table(
    table: np.ndarray, counts: sp.csr_matrix, targets: np.ndarray, settings: TrainSettings
) -> tuple[np.ndarray, JSONObject]:
    """The table fitted so that `normalise(counts @ table)` matches `targets` row by row (cosine).

    `counts`: (texts x vocabulary) pooling-weighted token counts; `targets`: (texts x dim) teacher
    vectors, dim equal to the table's. Returns the trained table (a new array) and a report."""
    import torch
    import torch.nn.functional as F

    if counts.shape[0] != len(targets) or table.shape[1] != targets.shape[1]:
        raise ValueError(
            f"counts {counts.shape}, targets {targets.shape} and table {table.shape} do not match"
        )
    started, cpu_started = time.perf_counter(), time.process_time()
    generator = torch.Generator().manual_seed(int(settings.seed))
    counts = sp.csr_matrix(counts, dtype=np.float32)
    keep = np.flatnonzero(np.diff(counts.indptr) > 0)  # a text with no known token teaches nothing
    counts, targets = counts[keep], targets[keep]
    # mean pooling keeps the activations at the table's scale whatever the text's length
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    counts = (sp.diags(1 / lengths) @ counts).tocsr()
    active = np.unique(counts.indices)  # only these rows ever get a gradient
    counts = counts[:, active].tocsr()
    counts.sum_duplicates()  # canonical (sorted, unique): the COO blocks below are coalesced as they are
    n = counts.shape[0]
    order = torch.randperm(n, generator=generator).numpy()
    n_val = min(max(1, round(n * settings.validation_fraction)), n - 1) if n > 1 else 0
    val, train = order[:n_val], order[n_val:]
    if len(train) == 0:
        raise ValueError("training the static table needs at least 2 texts with known tokens")
    # a small collection still takes several steps per epoch (one batch of 256 would be one step)
    batch_size = max(1, min(int(settings.batch_size), -(-len(train) // _MIN_STEPS)))
    weights = torch.nn.Parameter(torch.from_numpy(np.array(table[active], dtype=np.float32)))
    goal = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    optimiser = torch.optim.Adam([weights], lr=float(settings.learning_rate))
    held_out = _torch_rows(counts[val]) if n_val else None

    def loss(rows: torch.Tensor, batch: np.ndarray) -> torch.Tensor:
        return (1 - F.cosine_similarity(torch.sparse.mm(rows, weights), goal[batch])).mean()

    def validate() -> float:
        with torch.no_grad():
            return float(loss(held_out, val)) if held_out is not None else float("nan")

    first = best = validate()
    best_table, best_epoch, epochs_run, stale = weights.detach().clone(), 0, 0, 0
    for epoch in range(1, int(settings.epochs) + 1):
        shuffled = train[torch.randperm(len(train), generator=generator).numpy()]
        for start in range(0, len(shuffled), batch_size):
            batch = shuffled[start : start + batch_size]
            optimiser.zero_grad()
            loss(_torch_rows(counts[batch]), batch).backward()
            optimiser.step()
        epochs_run = epoch
        current = validate()
        if held_out is None or current < best - 1e-4:
            best, best_table, best_epoch, stale = current, weights.detach().clone(), epoch, 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    trained = np.array(table, dtype=np.float32)
    trained[active] = best_table.numpy()
    report = {
        **asdict(settings),
        "texts": int(n),
        "batch_size_used": batch_size,
        "held_out": int(n_val),
        "tokens_trained": int(len(active)),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "held_out_cosine_before": round(1 - first, 4),
        "held_out_cosine_after": round(1 - best, 4),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
    }
    return trained, report
