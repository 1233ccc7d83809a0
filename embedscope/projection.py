"""Pictures of an embedding space: a version's vectors projected to two dimensions.

Methods: PCA (scikit-learn; linear, fast, keeps global distances), t-SNE (scikit-learn; keeps
neighbourhoods, slow on large samples) and UMAP (umap-learn; keeps neighbourhoods and more of the
global layout than t-SNE, fast once numba has compiled it). Vectors are L2-normalised first, since
search compares them by cosine; sparse versions are first reduced to 50 dimensions by truncated SVD
(LSA), and t-SNE gets a PCA to 50 dimensions first, the usual speed-up.

At most `sample` items are drawn (seeded), so a big collection costs the same as a small one. The
2-D coordinates are cached per version revision, method, sample and seed under the collection
(`projections/`), so a second call (the CLI again, or the web page) loads them instead of
recomputing. Outputs: a PNG (matplotlib) and a self-contained HTML page (hover shows the title, a
search box highlights matching titles) drawn by `serve/static/map.js`, the script the web page
uses too.
"""

from __future__ import annotations

import html
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from embedscope.collection import Collection
from embedscope.display import show
from embedscope.encoders.base import Vectors, l2_normalize
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject, JSONValue

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METHODS = ("umap", "tsne", "pca")
DEFAULT_SAMPLE = 5000
MAX_LEGEND = 9  # colours for the most frequent values of --color-by; the rest are "other"
# matplotlib's tab10, also used by the HTML page so that both pictures agree
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
OTHER = "#c7c7c7"


@dataclass
class Projection:
    collection: str
    version: str
    revision: str
    method: str
    sample: int
    seed: int
    ids: list[str]
    xy: np.ndarray  # (n, 2) float32, row-aligned with ids
    seconds: float = 0.0  # time to compute (0 when loaded from the cache)
    cached: bool = False
    path: Path | None = field(default=None, repr=False)


def resolve_version(collection: Collection, version: str | None) -> str:
    """A version name to draw: the given one, the active one, or a search recipe's (e.g. hybrid's)
    first dense part."""
    name = version or collection.active_version
    versions = {v.name: v for v in collection.versions()}
    recipe = collection.recipes().get(name) if name not in versions else None
    if recipe is not None:
        dense = [p for p in recipe.parts if not versions[p].sparse]
        return dense[0] if dense else recipe.parts[0]
    return name


def _cache_file(folder: Path, version: str, revision: str, method: str, sample: int, seed: int) -> Path:
    return folder / f"{version}.{method}.{sample}.{seed}.{revision}.npz"


def _reduce(vectors: Vectors, method: str, seed: int) -> np.ndarray:
    """Normalised vectors ready for the 2-D method (sparse: SVD to 50-d; t-SNE: PCA to 50-d)."""
    from sklearn.decomposition import PCA, TruncatedSVD

    if sp.issparse(vectors):
        svd = TruncatedSVD(
            n_components=min(50, vectors.shape[1] - 1, vectors.shape[0] - 1), random_state=seed
        )
        x = svd.fit_transform(vectors)
    else:
        x = vectors
    x = l2_normalize(x)
    if method == "tsne" and x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    return np.asarray(x, dtype=np.float32)


def _embed_2d(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    n = len(x)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        # perplexity must stay below the number of points; 30 is the usual default
        return TSNE(
            n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed
        ).fit_transform(x)

    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")  # seeded => serial
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1, random_state=seed)
        return reducer.fit_transform(x)


def cached_methods(collection: Collection, version: str | None, *, sample: int, seed: int = 0) -> list[str]:
    """The methods whose coordinates for this version's current revision, sample and seed are
    cached, in `METHODS` order (what the web page can show without computing)."""
    name = resolve_version(collection, version)
    revision = collection.version_revision(name)
    folder = collection.folder("projections")
    return [m for m in METHODS if _cache_file(folder, name, revision, m, sample, seed).exists()]


def project(
    collection: Collection,
    version: str | None = None,
    *,
    method: str = "umap",
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Projection:
    """2-D coordinates of up to `sample` items of a version, from the cache when it has them.

    Searches go on while a projection is computed (reads are safe from any thread by themselves:
    the store serialises its own statements). `progress` is told each stage as it starts:
    "loading", "reducing", "layout" (the long one: UMAP on 5,000 books takes minutes on two cores,
    its first run also compiles numba code)."""
    step = progress or (lambda stage: None)
    if method not in METHODS:
        raise EmbedscopeError(f"unknown projection method '{method}'; valid: {', '.join(METHODS)}")
    if sample < 3:
        raise EmbedscopeError("--sample must be at least 3")
    step("loading")
    name = resolve_version(collection, version)
    v = collection.load_version(name)
    folder = collection.folder("projections")
    path = _cache_file(folder, name, v.revision, method, sample, seed)
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            ids, xy = [str(i) for i in data["ids"]], data["xy"]
        return Projection(collection.name, name, v.revision, method, sample, seed, ids, xy, 0.0, True, path)
    n = len(v.data.ids)
    if n < 3:
        raise EmbedscopeError(f"version '{name}' has {n} items; a projection needs at least 3")
    started = time.perf_counter()
    rows = (
        np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    )
    step("reducing")
    x = _reduce(v.data.vectors[rows], method, seed)
    step("layout")
    xy = np.asarray(_embed_2d(x, method, seed), dtype=np.float32)
    ids = [v.data.ids[r] for r in rows]
    seconds = round(time.perf_counter() - started, 2)
    # atomic: a reader (the web page) sees no file or a whole one; stale revisions are dropped
    tmp = folder / f".{uuid.uuid4().hex}.tmp.npz"
    np.savez(tmp, ids=np.array(ids), xy=xy)
    os.replace(tmp, path)
    for old in folder.glob(f"{name}.{method}.{sample}.{seed}.*.npz"):
        if old != path:
            old.unlink(missing_ok=True)
    return Projection(collection.name, name, v.revision, method, sample, seed, ids, xy, seconds, False, path)


# --- what the pictures show ------------------------------------------------------------------------
def point_data(
    collection: Collection,
    proj: Projection,
    color_by: str | None = None,
) -> JSONObject:
    """What the map draws: coordinates, titles, ids and colours; items deleted since the version
    was embedded are left out. A numeric field is coloured on a scale, any other by its most
    frequent values."""

    frame, _ = collection.metadata_frame()
    fields = collection.display_fields()
    items = collection.get_items(proj.ids)
    if color_by is not None and color_by not in frame.columns:
        names = ", ".join(map(str, frame.columns)) or "none"
        raise EmbedscopeError(f"--color-by: no metadata field '{color_by}' (fields: {names})")
    keep = [i for i, it in enumerate(items) if it is not None]
    kept = [it for it in items if it is not None]
    looks = [show(it.text, it.metadata, fields) for it in kept]
    xy = proj.xy[keep]
    out: JSONObject = {
        "collection": proj.collection,
        "version": proj.version,
        "method": proj.method,
        "ids": [it.id for it in kept],
        "titles": [shown.title for shown in looks],
        # what hover shows under the title: authors, year, categories (display.show's look)
        "details": [" · ".join(x for x in (s.subtitle, s.year, ", ".join(s.tags[:3])) if x) for s in looks],
        "x": [round(float(a), 4) for a in xy[:, 0]],
        "y": [round(float(b), 4) for b in xy[:, 1]],
        "color_by": color_by,
        "colors": None,
        "legend": [],
    }
    if color_by is None:
        return out
    values: list[JSONValue] = [(it.metadata or {}).get(color_by) for it in kept]
    is_number = [isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values]
    numeric = [v for v, ok in zip(values, is_number, strict=True) if ok]
    if numeric and len(numeric) >= 0.5 * len(values):
        import matplotlib

        lo, hi = float(min(numeric)), float(max(numeric))
        cmap = matplotlib.colormaps["viridis"]
        scale = (hi - lo) or 1.0
        out["colors"] = [
            matplotlib.colors.to_hex(cmap((float(v) - lo) / scale)) if ok else OTHER
            for v, ok in zip(values, is_number, strict=True)
        ]
        out["legend"] = [{"label": f"{lo:g}", "color": matplotlib.colors.to_hex(cmap(0.0))},
                         {"label": f"{hi:g}", "color": matplotlib.colors.to_hex(cmap(1.0))}]  # fmt: skip
        return out
    labels = ["(none)" if v is None or v != v else str(v) for v in values]
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    top = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_LEGEND]
    colour = {label: PALETTE[i] for i, label in enumerate(top)}
    out["colors"] = [colour.get(label, OTHER) for label in labels]
    out["legend"] = [{"label": f"{label} ({counts[label]})", "color": colour[label]} for label in top]
    rest = len(labels) - sum(counts[label] for label in top)
    if rest:
        out["legend"].append({"label": f"other ({rest})", "color": OTHER})
    return out


def write_png(points: JSONObject, path: str | Path) -> Path:
    """The map as a picture that reads: 11 x 8 inches at 150 dpi (about 1600 x 1200 pixels once
    cropped to what is drawn), points sized for their number, equal axes (distances mean the same
    both ways), the legend outside the points, on the right."""
    from embedscope.plots import save

    return save(map_figure(points), path, 150, tight=True)


def map_figure(points: JSONObject) -> Figure:
    """The matplotlib Figure `write_png` saves."""
    from embedscope.plots import pyplot

    plt = pyplot()
    n = len(points["ids"])
    fig, ax = plt.subplots(figsize=(11, 8))
    colors = points["colors"] or PALETTE[0]
    size = float(np.clip(30_000 / max(n, 1), 3, 40))  # ~6 at 5,000 points, bigger for small maps
    ax.scatter(points["x"], points["y"], s=size, c=colors, linewidths=0, alpha=0.75)
    ax.set_aspect("equal", adjustable="datalim")
    if points["legend"]:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], ls="", marker="o", ms=8, color=e["color"], label=e["label"])
            for e in points["legend"]
        ]
        ax.legend(
            handles=handles,
            fontsize=10,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
            title=points["color_by"],
            title_fontsize=11,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color("#cccccc")
    what = f"{points['method'].upper()} of {n:,} items"
    ax.set_title(f"{points['collection']} / {points['version']}: {what}", fontsize=13)
    return fig


def map_script() -> str:
    """The map drawing script shared with the web page."""
    # a data file of the package, read without importing embedscope.serve (a layer above this one)
    return resources.files("embedscope").joinpath("serve/static/map.js").read_text(encoding="utf-8")


def write_html(points: JSONObject, path: str | Path) -> Path:
    """One file that works offline: the data and the drawing script are inlined. No CDN: the
    machine and its users may have no network, and a page that loads code from elsewhere breaks
    there (and leaks what is looked at)."""
    title = f"{points['collection']} / {points['version']}: {points['method'].upper()}"
    # JSON inside <script> must not contain "</": it would end the element early
    data = json.dumps(points, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    page = _PAGE.format(
        title=html.escape(title),
        count=len(points["ids"]),
        data=data,
        script=map_script().replace("</script", "<\\/script"),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font: 14px system-ui, sans-serif; margin: 0; color: #222; }}
  header {{ display: flex; gap: 1rem; align-items: center; flex-wrap: wrap;
            padding: .6rem 1rem; border-bottom: 1px solid #ddd; }}
  h1 {{ font-size: 1rem; margin: 0; }}
  input {{ font: inherit; padding: .3rem .5rem; min-width: 18rem; }}
  #map {{ width: 100%; height: calc(100vh - 3.2rem); display: block; }}
</style>
</head>
<body>
<header>
  <h1>{title} ({count} items)</h1>
  <label>Find titles <input id="find" type="search" placeholder="e.g. dragon" autocomplete="off"></label>
  <span id="found" role="status" aria-live="polite"></span>
</header>
<div id="map"></div>
<script id="points" type="application/json">{data}</script>
<script>{script}</script>
<script>
  "use strict";
  const points = JSON.parse(document.getElementById("points").textContent);
  const map = new EmbedMap(document.getElementById("map"), points);
  const found = document.getElementById("found");
  document.getElementById("find").addEventListener("input", (e) => {{
    const n = map.highlightTitles(e.target.value);
    found.textContent = e.target.value.trim() ? `${{n}} matching` : "";
  }});
</script>
</body>
</html>
"""
