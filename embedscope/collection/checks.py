"""`Collection.check`: whether every embedding version can answer, and how to repair one that
cannot; and the health columns of `Collection.info`.

`Store.inspect_version` looks at the stored files or tables without loading them; `check_loaded`
then loads the version as a search would and asks it questions (finite vectors, one row per id, the
index finding the version's own vectors, the encoder making vectors of the version's dimension).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope.encoders.registry import encoder_class
from embedscope.errors import EmbedscopeError
from embedscope.search.versions import LoadedVersion
from embedscope.store.base import Store, VersionInfo


def version_rows(
    store: Store, active: str | None, is_stale: Callable[[VersionInfo], bool]
) -> list[dict[str, Any]]:
    """`info`'s versions: each record, whether it is stale (`is_stale`: items added, deleted or
    their documents changed since) or active, and what `Store.inspect_version` finds wrong with its
    files (cheap: `check` goes further)."""
    versions = []
    for v in store.list_versions():
        d = v.to_dict()
        d["stale"] = is_stale(v)
        d["active"] = v.name == active
        d["problems"] = store.inspect_version(v.name)
        versions.append(d)
    return versions


def check_collection(name: str, store: Store, load: Callable[[str], LoadedVersion]) -> dict[str, Any]:
    """`Collection.check`'s report on the collection `name`: each version loaded with `load`."""
    versions = []
    for v in store.list_versions():
        problems = store.inspect_version(v.name) or check_loaded(store, load, v)
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
    store: Store, load: Callable[[str], LoadedVersion], info: VersionInfo, sample: int = 20
) -> list[str]:
    """The deep half of `check`: load the version as a search would, then ask it questions."""
    try:
        v = load(info.name)
    except EmbedscopeError as exc:
        return [str(exc)]
    problems = []
    vectors, n = v.data.vectors, v.data.vectors.shape[0]
    values = vectors.data if sp.issparse(vectors) else np.asarray(vectors)
    if not np.isfinite(values).all():
        problems.append("some vectors hold NaN or infinite values")
    if len(v.row_of) != len(v.data.ids):
        problems.append(f"{len(v.data.ids) - len(v.row_of)} duplicate id(s) among the vectors")
    if v.index.size != n:
        problems.append(f"the index holds {v.index.size} vectors, the version {n}")
    elif n:
        rows = np.unique(np.linspace(0, n - 1, num=min(n, sample)).astype(np.int64))
        queries = vectors[rows] if sp.issparse(vectors) else np.asarray(vectors[rows])
        own = (
            np.asarray(queries.multiply(queries).sum(axis=1)).ravel()
            if sp.issparse(queries)
            else np.einsum("ij,ij->i", queries, queries)
        )
        try:
            found_rows, scores = v.index.search(queries, 1)
        except Exception as exc:  # check reports any failure of the index, whatever raised it
            problems.append(f"the index cannot search: {exc.__class__.__name__}: {exc}")
        else:
            # itself, or a row with the same score (duplicate texts have identical vectors)
            found = (found_rows[:, 0] == rows) | (scores[:, 0] >= own - 1e-2)
            if found.mean() < 0.9:
                problems.append(
                    f"the index does not find the version's own vectors ({int((~found).sum())} of "
                    f"{len(rows)} sampled rows missed): it does not match the vectors"
                )
    if encoder_class(info.encoder["name"]).encodes_text and v.data.ids:
        first = store.get_items(v.data.ids[:1])[0]
        try:
            width = v.encoder.encode([first.text if first else "check"]).shape[1]
        except Exception as exc:  # as above: the point is to say what fails
            problems.append(f"the encoder cannot encode: {exc.__class__.__name__}: {exc}")
        else:
            if width != info.dim:
                problems.append(f"the encoder makes vectors of dimension {width}, the version has {info.dim}")
    return problems


def repair_hint(collection: str, info: VersionInfo) -> str:
    """The commands that rebuild a version from the items, or remove it."""
    name = info.encoder["name"]
    defaults = encoder_class(name).defaults
    params = [
        f" --param {shlex.quote(f'{k}={json.dumps(v)}')}"
        for k, v in info.encoder.get("params", {}).items()
        if defaults.get(k) != v
    ]
    version = f" --version {info.name}" if info.name != name else ""
    rebuild = f"embedscope embed {collection} --encoder {name}{version}{''.join(params)} --refit"
    return f"rebuild it: `{rebuild}`; or remove it: `embedscope delete-version {collection} {info.name}`"
