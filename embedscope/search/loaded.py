"""A loaded embedding version: what a search holds of one version (record, vectors, fitted encoder,
index). Its own module, below the recipe and the query stages, which all use it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedscope.encoders.base import Encoder
from embedscope.index import VectorIndex
from embedscope.store.base import VersionData, VersionInfo


@dataclass
class LoadedVersion:
    info: VersionInfo
    data: VersionData
    encoder: Encoder
    index: VectorIndex
    row_of: dict[str, int]
    #: changes whenever the version is rewritten; key caches of anything derived from it on this
    revision: str = ""
    #: (data revision, position of each row's item in the metadata frame or -1 if deleted)
    item_positions: tuple[int, np.ndarray] | None = None
