"""Drift over time: has the distribution of queries (or of items) moved?

Two sets of texts embedded in one space are compared three ways:
- centroid shift: 1 - cosine between the two mean vectors (cheap, coarse: a change that keeps the
  mean, such as a topic growing while another shrinks, can hide from it);
- MMD (maximum mean discrepancy, Gretton et al., JMLR 2012) with an RBF kernel whose bandwidth is
  the median pairwise distance (the median heuristic), tested with a permutation p-value: the
  chance that a random split of the pooled vectors differs as much as the real one;
- movers: the texts of the later set farthest from every text of the earlier one (nearest-neighbour
  cosine distance): new topics, by example.

Vectors are L2-normalised first, because search compares them by cosine.

MMD is written here on NumPy, over one kernel matrix computed once, with the permutations batched
into a matrix product: the libraries that ship it would downgrade NumPy and SciPy (frouros), bring
TensorFlow or PyTorch stacks (alibi-detect, torchdrift), or six packages and a numba JIT for one
statistic (hyppo).

Query drift reads the server's query log (`querylog.py`), windowed by UTC day or by N
queries, and compares each window with the one before. Data drift compares the items as a version
embedded them (its stored vectors) with the items now (unchanged items keep their vectors, new and
changed ones are encoded with the version's encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedscope.collection import Collection
from embedscope.display import show
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject
from embedscope.projection import resolve_version
from embedscope.search.loaded import LoadedVersion

PERMUTATIONS = 1000
MAX_SAMPLES = 1000  # per side: the kernel matrix is (2 x MAX_SAMPLES)^2 float64 = 32 MB
MOVERS = 5


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def centroid_shift(x: np.ndarray, y: np.ndarray) -> float:
    """1 - cosine of the mean (normalised) vectors: 0 = same direction."""
    cx, cy = _normalise(x).mean(0), _normalise(y).mean(0)
    denom = float(np.linalg.norm(cx) * np.linalg.norm(cy))
    return float(1.0 - cx @ cy / denom) if denom else 0.0


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    permutations: int = PERMUTATIONS,
    max_samples: int = MAX_SAMPLES,
    seed: int = 0,
) -> JSONObject:
    """Unbiased MMD^2 between two samples with an RBF kernel (median heuristic) and its permutation
    p-value, (1 + #{permuted >= observed}) / (1 + permutations). Each side is subsampled to at most
    `max_samples` rows (seeded)."""
    from sklearn.metrics.pairwise import euclidean_distances

    if len(x) < 2 or len(y) < 2:
        raise EmbedscopeError(f"MMD needs at least 2 vectors on each side (got {len(x)} and {len(y)})")
    rng = np.random.default_rng(seed)
    x, y = (
        _normalise(v[rng.choice(len(v), max_samples, replace=False)] if len(v) > max_samples else v)
        for v in (x, y)
    )
    m, n = len(x), len(y)
    z = np.vstack([x, y])
    d2 = euclidean_distances(z, squared=True)
    upper = d2[np.triu_indices(len(z), 1)]
    sigma2 = float(np.median(upper)) / 2  # RBF exp(-d^2 / (2 sigma^2)) with sigma = median distance
    sigma2 = sigma2 if sigma2 > 0 else 1.0  # all points equal: any bandwidth gives MMD 0
    kernel = np.exp(-d2 / (2 * sigma2))
    total, rowsum = kernel.sum(), kernel.sum(1)

    def mmd2(member: np.ndarray) -> np.ndarray:
        """MMD^2_u for each column of `member` (N x P, 1 where a row is in the first sample)."""
        kxx_all = (member * (kernel @ member)).sum(0)  # a'Ka, diagonal included
        kxy = (member * rowsum[:, None]).sum(0) - kxx_all  # a'K(1 - a)
        kyy_all = total - kxx_all - 2 * kxy
        # the kernel's diagonal is exp(0) = 1: removing it makes the estimate unbiased
        return (kxx_all - m) / (m * (m - 1)) + (kyy_all - n) / (n * (n - 1)) - 2 * kxy / (m * n)

    observed = float(mmd2(np.r_[np.ones(m), np.zeros(n)][:, None])[0])
    exceed, done = 0, 0
    while done < permutations:
        batch = min(200, permutations - done)
        member = np.zeros((m + n, batch))
        for j in range(batch):
            member[rng.permutation(m + n)[:m], j] = 1.0
        exceed += int((mmd2(member) >= observed - 1e-12).sum())
        done += batch
    return {
        "mmd2": round(observed, 6),
        "p": round((1 + exceed) / (1 + permutations), 4),
        "bandwidth": round(float(np.sqrt(sigma2)), 4),
        "sizes": [m, n],
        "permutations": permutations,
    }


def movers(
    texts: Sequence[str], vectors: np.ndarray, earlier: np.ndarray, top: int = MOVERS
) -> list[JSONObject]:
    """The texts farthest from all of `earlier`: 1 - cosine to their nearest earlier vector."""
    if len(texts) == 0 or len(earlier) == 0:
        return []
    distance = 1.0 - (_normalise(vectors) @ _normalise(earlier).T).max(1)
    out, seen = [], set()
    for i in np.argsort(-distance, kind="stable"):
        if texts[i] in seen:
            continue
        seen.add(texts[i])
        out.append({"text": texts[i], "distance": round(float(distance[i]), 4)})
        if len(out) == top:
            break
    return out


def compare_sets(
    earlier: np.ndarray,
    later: np.ndarray,
    later_texts: Sequence[str],
    *,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> JSONObject:
    return {
        "centroid_shift": round(centroid_shift(earlier, later), 6),
        **mmd_test(earlier, later, permutations=permutations, seed=seed),
        "movers": movers(later_texts, later, earlier),
    }


# --- what is compared ------------------------------------------------------------------------------
def dense_version(collection: Collection, version: str | None) -> LoadedVersion:
    """The loaded dense version whose encoder embeds the texts (hybrid: its dense part)."""
    name = resolve_version(collection, version)
    v = collection.load_version(name)
    if v.info.sparse:
        raise EmbedscopeError(
            f"drift over time needs a dense version; '{name}' is sparse: {dense_hint(collection)}"
        )
    return v


def dense_hint(collection: Collection) -> str:
    """What to do when a command needs a dense version: name the dense versions there are, or the
    command that makes one (after `delete-version` left only sparse ones, say)."""
    dense = [v.name for v in collection.versions() if not v.sparse]
    if dense:
        return f"pass --version {dense[0]} (dense versions: {', '.join(dense)})"
    return f"the collection has none; make one with `embedscope embed {collection.name} --encoder minilm`"


@dataclass
class Window:
    label: str
    texts: list[str]


def windows(searches: Sequence[JSONObject], by: str | int) -> list[Window]:
    """Group logged searches (time order) by UTC day (`by="day"`) or into runs of `by` queries."""
    if by == "day":
        groups: dict[str, list[str]] = {}
        for s in searches:
            groups.setdefault(s["ts"].date().isoformat(), []).append(s["query"])
        return [Window(day, texts) for day, texts in groups.items()]
    if isinstance(by, int) and by >= 2:
        out = []
        for start in range(0, len(searches), by):
            chunk = searches[start : start + by]
            first, last = chunk[0]["ts"], chunk[-1]["ts"]
            label = f"#{start + 1}-{start + len(chunk)} ({first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M})"
            out.append(Window(label, [s["query"] for s in chunk]))
        return out
    raise EmbedscopeError(f"window must be 'day' or a number of queries >= 2, not {by!r}")


def parse_window(text: str) -> str | int:
    if text == "day":
        return "day"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 2:
        raise EmbedscopeError(f"--window must be 'day' or a number of queries >= 2, not {text!r}")
    return n


def query_drift(
    collection: Collection,
    log: str | Path,
    *,
    version: str | None = None,
    window: str | int = "day",
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> JSONObject:
    """Each window of logged queries against the window before it."""
    from embedscope.querylog import read_searches

    v = dense_version(collection, version)
    searches, skipped = read_searches(log, collection.name)
    wins = windows(searches, window)
    if len(wins) < 2:
        raise EmbedscopeError(
            f"query drift needs two windows; the log has {len(searches)} searches of '{collection.name}' "
            f"in {len(wins)} window(s) of {window!r} (try a smaller --window N)"
        )
    vectors = [np.asarray(v.encoder.encode_queries(w.texts), dtype=np.float32) for w in wins]
    rows = [{"window": wins[0].label, "queries": len(wins[0].texts), "distinct": len(set(wins[0].texts))}]
    for i in range(1, len(wins)):
        row: JSONObject = {"window": wins[i].label, "queries": len(wins[i].texts)}
        row["distinct"] = len(set(wins[i].texts))
        if len(wins[i].texts) < 2 or len(wins[i - 1].texts) < 2:
            row["note"] = "fewer than 2 queries: not compared"
        else:
            row.update(
                compare_sets(vectors[i - 1], vectors[i], wins[i].texts, permutations=permutations, seed=seed)
            )
        rows.append(row)
    return {
        "version": v.info.name,
        "encoder": v.info.encoder["name"],
        "log": str(log),
        "searches": len(searches),
        "skipped_lines": skipped,
        "window": window,
        "windows": rows,
    }


def item_drift(
    collection: Collection,
    *,
    version: str | None = None,
    permutations: int = PERMUTATIONS,
    max_samples: int = MAX_SAMPLES,
    seed: int = 0,
) -> JSONObject:
    """The items as `version` embedded them against the items now, in that version's space."""
    v = dense_version(collection, version)
    hashes_then = dict(zip(v.data.ids, v.data.hashes, strict=True))
    ids_now = collection.ids()
    diff = collection.changes_since(v)  # changed: the document the encoder saw, not the metadata
    added, changed, deleted = diff["added"], diff["changed"], diff["deleted"]
    out: JSONObject = {
        "version": v.info.name,
        "encoder": v.info.encoder["name"],
        "embedded_at": v.info.updated_at,
        "items_then": len(hashes_then),
        "items_now": len(ids_now),
        "added": len(added),
        "changed": len(changed),
        "deleted": len(deleted),
    }
    if not (added or changed or deleted):
        out["note"] = "the items are exactly those the version embedded: no data drift"
        return out
    rng = np.random.default_rng(seed)

    def sample(ids: list[str]) -> list[str]:
        if len(ids) <= max_samples:
            return ids
        return [ids[i] for i in sorted(rng.choice(len(ids), max_samples, replace=False))]

    then_ids, now_ids = sample(list(hashes_then)), sample(ids_now)
    stored = v.data.vectors
    then = np.asarray(stored[[v.row_of[i] for i in then_ids]], dtype=np.float32)
    new_or_changed = set(added) | set(changed)
    items = {it.id: it for it in collection.get_items(now_ids) if it is not None}
    fresh = [i for i in now_ids if i in new_or_changed]
    document = collection.document(v.info)
    docs = [document.render(items[i].text, items[i].fields) for i in fresh]
    encoded = dict(zip(fresh, np.asarray(v.encoder.encode(docs)), strict=True))
    now = np.stack([encoded[i] if i in encoded else stored[v.row_of[i]] for i in now_ids]).astype(np.float32)
    fields = collection.display_fields()
    labels = [show(items[i].text, items[i].metadata, fields).title for i in now_ids]
    out.update(compare_sets(then, now, labels, permutations=permutations, seed=seed))
    out["encoded"] = len(encoded)
    return out
