"""`Collection.check`: whether every embedding version can answer, and how to repair one that
cannot; and the health columns of `Collection.info`.

`Store.inspect_version` looks at the stored files or tables without loading them; `check_loaded`
then loads the version as a search would and asks it questions (finite vectors, one row per id, the
index finding the version's own vectors, the encoder making vectors of the version's dimension).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Collection as Collection_

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.collection.items import stored_spec
from embedscope.encoders.base import Vectors, is_sparse
from embedscope.encoders.document import Document, document_hash
from embedscope.encoders.registry import encoder_class
from embedscope.errors import DamagedError, EmbedscopeError
from embedscope.index.quantized import StoredVectors
from embedscope.jsontypes import JSONObject
from embedscope.search.recipe import Recipe
from embedscope.search.versions import LoadedVersion, repair_hint
from embedscope.store.base import Store, VersionInfo, fingerprint

#: item id -> the hash of its document as a version builds it now (`ItemViews.document_hashes`)
DocumentHashes = Callable[[VersionInfo], dict[str, str]]


def legacy_hashes(store: Store, info: VersionInfo) -> dict[str, str]:
    """The one rule for rows written before documents existed (`info.document` is None): they hold
    the item's content hash (`Item.hash`: text and metadata), which a row may then match instead of
    its document hash. Empty for every other version, so the store's hashes are read only then."""
    return store.item_hashes() if info.document is None else {}


def is_current(store: Store, info: VersionInfo, document_hashes: DocumentHashes) -> bool:
    """The version encodes every item's document as it is now (no item added, changed or deleted in a
    way its document sees)."""
    if encoder_class(info.encoder["name"]).encodes_text:
        if info.fingerprint == fingerprint(document_hashes(info).items()):  # cached per data revision
            return True
        if info.document is not None:
            return False
    # behavioural versions (their rows are the items, not documents), and text versions written
    # before documents existed (their rows hold item hashes): read the store's item hashes only then
    return info.fingerprint == fingerprint(store.item_hashes().items())


def changes(store: Store, v: LoadedVersion, document_hashes: DocumentHashes) -> dict[str, list[str]]:
    """`Collection.changes_since`: ids added, changed and deleted since `v` was written."""
    then = dict(zip(v.data.ids, v.data.hashes, strict=True))
    now = document_hashes(v.info)
    legacy = legacy_hashes(store, v.info)
    return {
        "added": [i for i in now if i not in then],
        "changed": [i for i, h in now.items() if i in then and then[i] not in (h, legacy.get(i))],
        "deleted": [i for i in then if i not in now],
    }


def version_rows(store: Store, active: str | None, document_hashes: DocumentHashes) -> list[JSONObject]:
    """`info`'s versions: each record, whether it is stale (the items changed since) or active, and
    what `Store.inspect_version` finds wrong with its files (cheap: `check` goes further)."""
    versions = []
    for v in store.list_versions():
        d = v.to_dict()
        d["stale"] = not is_current(store, v, document_hashes)
        d["active"] = v.name == active
        d["problems"] = store.inspect_version(v.name)
        versions.append(d)
    return versions


def describe(
    name: str,
    store: Store,
    frame: pd.DataFrame,
    recipes: Mapping[str, Recipe],
    stored: Collection_[str],
    default_search: Callable[[], str],
    document_hashes: DocumentHashes,
) -> JSONObject:
    """`Collection.info`: items, metadata types, versions (`version_rows`) and recipes."""
    active = store.get_setting("active_version")
    spec = stored_spec(store)
    types = spec.types if spec else {}
    return {
        "name": name,
        "path": str(store.path),
        "store": store.location,
        "items": store.count(),
        "id_field": store.get_setting("id_field"),
        "text": store.get_setting("text_spec"),
        "metadata_fields": {c: types.get(c) or str(frame[c].dtype) for c in frame.columns},
        "active_version": active,
        "default_search": default_search() if active else None,
        "versions": version_rows(store, active, document_hashes),
        "recipes": [{**r.to_dict(), "stored": n in stored} for n, r in recipes.items()],
    }


def check_collection(
    name: str, store: Store, load: Callable[[str], LoadedVersion], document_hashes: DocumentHashes
) -> JSONObject:
    """`Collection.check`'s report on the collection `name`, each version loaded with `load`: whether
    every version can answer (its files present and loadable, ids, vectors and index of one size,
    the index finding the version's own vectors, the encoder producing vectors of the version's
    dimension), each damaged version with the commands that repair it.

    Returns {"name", "ok", "problems" (collection-level), "versions": [{"name", "ok", "problems",
    "repair"}]}."""
    versions = []
    for v in store.list_versions():
        problems = store.inspect_version(v.name) or check_loaded(store, load, v, document_hashes)
        versions.append(
            {
                "name": v.name,
                "ok": not problems,
                "problems": problems,
                "repair": repair_hint(name, v) if problems else None,
            }
        )
    problems = []
    active = store.get_setting("active_version")
    if active is not None and active not in {v["name"] for v in versions}:
        problems.append(f"the active version '{active}' does not exist: `embedscope activate {name} VERSION`")
    ok = not problems and all(v["ok"] for v in versions)
    return {"name": name, "ok": ok, "problems": problems, "versions": versions}


def check_loaded(
    store: Store,
    load: Callable[[str], LoadedVersion],
    info: VersionInfo,
    document_hashes: DocumentHashes,
    sample: int = 20,
) -> list[str]:
    """The deep half of `check`: load the version as a search would (which runs `load_problems`),
    then ask it questions."""
    try:
        v = load(info.name)
    except DamagedError as exc:
        return exc.problems
    except EmbedscopeError as exc:
        return [str(exc)]
    problems = []
    vectors, n = v.data.vectors, v.data.vectors.shape[0]
    values = vectors.data if is_sparse(vectors) else np.asarray(vectors)
    if not np.isfinite(values).all():
        problems.append("some vectors hold NaN or infinite values")
    if vectors.shape != (len(v.data.ids), info.dim):  # a store that reads vectors on demand
        problems.append(f"vectors of shape {vectors.shape} for {len(v.data.ids)} ids of dimension {info.dim}")
    else:
        problems += index_problems(v, sample)
    if encoder_class(info.encoder["name"]).encodes_text and n:
        problems += encoding_problems(store, v, document_hashes)
    return problems


def load_problems(store: Store, v: LoadedVersion, document_hashes: DocumentHashes) -> list[str]:
    """What must stop a version from answering, checked when it is loaded (cheap: sizes, a
    dictionary pass over the ids, and, where the vectors are in memory, 20 index lookups).
    `check` runs these and more (`check_loaded`)."""
    info, data = v.info, v.data
    n = len(data.ids)
    problems = []
    if not n == len(data.hashes) == info.count:
        problems.append(f"counts disagree: {n} ids, {len(data.hashes)} hashes, the record says {info.count}")
    shape = data.loaded_shape()
    if shape is not None and (shape[0] != n or len(shape) != 2 or shape[1] != info.dim):
        problems.append(f"vectors of shape {shape} for {n} ids of dimension {info.dim}")
    if v.index.size != n:
        problems.append(f"the index holds {v.index.size} vectors, the version {n}")
    if len(v.row_of) != n:
        problems.append(f"{n - len(v.row_of)} duplicate id(s) among the vectors")
    misplaced = misplaced_rows(data.ids, data.hashes, *row_hashes_now(store, info, document_hashes))
    if misplaced:
        problems.append(
            f"{len(misplaced)} row(s) hold another item's content (ids swapped or misaligned), e.g. "
            f"{', '.join(map(repr, misplaced[:3]))}"
        )
    if not problems and shape is not None:
        problems += index_problems(v)
    return problems


def index_problems(v: LoadedVersion, sample: int = 20) -> list[str]:
    """Whether the index finds the version's own vectors (a sample of rows)."""
    vectors, n = v.data.vectors, v.data.vectors.shape[0]
    if not n or v.index.size != n:
        return []
    rows = np.unique(np.linspace(0, n - 1, num=min(n, sample)).astype(np.int64))
    queries = vectors[rows] if is_sparse(vectors) else np.asarray(vectors[rows])
    own = (
        np.asarray(queries.multiply(queries).sum(axis=1)).ravel()
        if is_sparse(queries)
        else np.einsum("ij,ij->i", queries, queries)
    )
    try:
        found_rows, scores = v.index.search(queries, 1)
    except Exception as exc:  # check reports any failure of the index, whatever raised it
        return [f"the index cannot search: {exc.__class__.__name__}: {exc}"]
    # itself, or a row with the same score (duplicate texts have identical vectors)
    found = (found_rows[:, 0] == rows) | (scores[:, 0] >= own - 1e-2)
    if found.mean() < 0.9:
        return [
            f"the index does not find the version's own vectors ({int((~found).sum())} of "
            f"{len(rows)} sampled rows missed): it does not match the vectors"
        ]
    return []


def encoding_problems(
    store: Store, v: LoadedVersion, document_hashes: DocumentHashes, sample: int = 8
) -> list[str]:
    """Encode a sample of items again: the encoder must make vectors of the version's dimension,
    and each sampled row must hold its own item's vector (an id and its hash swapped together
    with another row's escape the hash comparison; the vectors do not lie)."""
    info, data = v.info, v.data
    n = len(data.ids)
    rows = np.unique(np.linspace(0, n - 1, num=min(n, sample)).astype(np.int64)).tolist()
    items = store.get_items([data.ids[r] for r in rows])
    document = Document.parse(info.document)
    docs = {r: document.render(it.text, it.fields) for r, it in zip(rows, items, strict=True) if it}
    legacy = legacy_hashes(store, info)
    # rows of items unchanged since embedding (a stale row's vector is of older text)
    pairs = [
        (r, docs[r])
        for r in rows
        if r in docs and data.hashes[r] in (document_hash(docs[r]), legacy.get(data.ids[r]))
    ]
    try:
        fresh = v.encoder.encode([d for _, d in pairs] or ["check"])
    except Exception as exc:  # the point is to say what fails, whatever raised it
        return [f"the encoder cannot encode: {exc.__class__.__name__}: {exc}"]
    if fresh.shape[1] != info.dim:
        return [f"the encoder makes vectors of dimension {fresh.shape[1]}, the version has {info.dim}"]
    if not pairs:
        return []
    stored = _rows_of(data.vectors, [r for r, _ in pairs])
    similarity = _row_cosines(stored, fresh)
    wrong = [data.ids[r] for (r, _), s in zip(pairs, similarity, strict=True) if s < 0.9]
    if wrong:
        return [
            f"{len(wrong)} of {len(pairs)} sampled rows do not hold their item's vector (rows "
            f"misaligned with ids), e.g. {', '.join(map(repr, wrong[:3]))}"
        ]
    return []


def row_hashes_now(
    store: Store, info: VersionInfo, document_hashes: DocumentHashes
) -> tuple[Mapping[str, str], Mapping[str, str]]:
    """What each row's hash may be now for the version's rows to be its items' own: the hash of the
    item's document as the version builds it, and for a version written before documents existed
    (its rows hold `Item.hash`, text and metadata) the item's hash."""
    return document_hashes(info), legacy_hashes(store, info)


def misplaced_rows(
    ids: Sequence[str], hashes: Sequence[str], stored: Mapping[str, str], legacy: Mapping[str, str]
) -> list[str]:
    """Ids whose row holds another item's content: the row's content hash is not the item's (its
    document hash in `stored`, or its `legacy` item hash) and is the current hash of another item
    whose row is also wrong (two ids swapped, rows shifted). A stale row (its item changed since
    embedding, or was deleted) is not misplaced: its old hash is no other item's current one."""
    wrong = {
        i: h for i, h in zip(ids, hashes, strict=False) if i in stored and h not in (stored[i], legacy.get(i))
    }
    current = {stored[i] for i in wrong} | {legacy[i] for i in wrong if i in legacy}
    return [i for i, h in wrong.items() if h in current]


def _rows_of(matrix: StoredVectors, rows: list[int]) -> Vectors:
    picked = matrix[rows]
    return picked.tocsr() if is_sparse(picked) else np.asarray(picked, dtype=np.float32)


def _row_cosines(a: Vectors, b: Vectors) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b` (dense or sparse); 1 where both are zero."""
    if is_sparse(a) or is_sparse(b):
        a, b = sp.csr_matrix(a), sp.csr_matrix(b)
        dot = np.asarray(a.multiply(b).sum(axis=1)).ravel()
        na = np.sqrt(np.asarray(a.multiply(a).sum(axis=1)).ravel())
        nb = np.sqrt(np.asarray(b.multiply(b).sum(axis=1)).ravel())
    else:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        dot, na, nb = np.einsum("ij,ij->i", a, b), np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(both_zero, 1.0, dot / (na * nb))
    return np.nan_to_num(cos, nan=0.0)


def summary(store: Store, name: str, items: int, default_search: Callable[[], str]) -> JSONObject:
    """`Collection.summary`: what a listing shows of a collection (no default search before a version)."""
    active = store.get_setting("active_version")
    default = default_search() if active else None
    return {
        "name": name,
        "items": items,
        "versions": [v.name for v in store.list_versions()],
        "active_version": active,
        "default_search": default,
        "store": store.location,
    }
