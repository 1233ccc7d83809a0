"""What the search path reads: a loaded version, and the small read interface of a collection.

The search pipeline depends on these and on nothing above `search/`: `Collection` implements
`CollectionReader` (so does anything else that can hand out loaded versions, item rows and the
collection's recipes), and the pipeline never imports the collection.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from embedscope.encoders.registry import encoder_class
from embedscope.errors import DamagedError
from embedscope.search.loaded import LoadedVersion
from embedscope.store.base import Item, VersionInfo

if TYPE_CHECKING:
    from embedscope.search.recipe import Recipe
    from embedscope.search.rerank import WorkKey


class CollectionReader(Protocol):
    """The reads a search needs from a collection (`Collection` is one)."""

    name: str

    @property
    def active_version(self) -> str:
        """The active version's name; NotFoundError when the collection has none yet."""
        ...

    def versions(self) -> list[VersionInfo]: ...

    def load_version(self, version: str | None = None) -> LoadedVersion: ...

    def recipes(self) -> Mapping[str, Recipe]: ...

    def default_search_using(self, recipes: Callable[[], Mapping[str, Recipe]]) -> str:
        """The default search (a recipe `activate` chose, else the active version), the recipes
        read through `recipes` (once, and only if needed)."""
        ...

    def allowed_rows(
        self, v: LoadedVersion, where: str | None, exclude: Sequence[str] = ()
    ) -> np.ndarray | None:
        """Row mask of `v`: rows of items that exist, match `where` and are not excluded (None: all)."""
        ...

    def work_keys(self) -> dict[str, WorkKey | None]: ...

    def get(self, item_id: str) -> Item: ...

    def get_items(self, ids: Sequence[str]) -> list[Item | None]: ...


def damaged_error(collection: str, info: VersionInfo, problems: Sequence[str]) -> DamagedError:
    """The error a damaged version answers with: what is wrong and the commands that repair it."""
    return DamagedError(
        f"version '{info.name}' of collection '{collection}' is damaged ({'; '.join(problems)}); "
        f"{repair_hint(collection, info)} (`embedscope check {collection}` lists every problem)",
        problems,
    )


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
    document = f" --document {shlex.quote(info.document)}" if info.document else ""
    rebuild = f"embedscope embed {collection} --encoder {name}{version}{''.join(params)}{document} --refit"
    return f"rebuild it: `{rebuild}`; or remove it: `embedscope delete-version {collection} {info.name}`"
