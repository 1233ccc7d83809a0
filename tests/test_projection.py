"""Projections of real book embeddings (MiniLM over 300 real books): caching per version revision,
sampling, how well each method keeps neighbourhoods, colouring, the PNG and the offline HTML page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.manifold import trustworthiness

from embedscope import Collection
from embedscope.errors import EmbedscopeError
from embedscope.projection import point_data, project, write_html, write_png


@pytest.fixture(scope="module")
def books(books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """300 real books with MiniLM (a private copy: the tests add cache files and delete an item)."""
    col = Collection.create("books", root=tmp_path_factory.mktemp("proj"))
    frame = books_frame.head(300).copy()
    # a title that would end a <script> element early if the page did not escape it
    frame.loc[frame.index[0], "title"] = "</script><script>window.owned = 1</script>"
    col.ingest(
        frame,
        id_field="isbn13",
        template="{title}. {description}",
        metadata=["title", "authors", "categories", "published_year"],
    )
    col.embed("minilm", {"max_seq_length": 128})
    col.embed("bm25")
    return col


def _vectors(col: Collection, ids: list[str]) -> np.ndarray:
    v = col.load_version("minilm")
    x = np.asarray(v.data.vectors)[[v.row_of[i] for i in ids]]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pca_projection_is_cached_per_revision_and_sampled(books: Collection) -> None:
    first = project(books, "minilm", method="pca")
    assert not first.cached and len(first.ids) == 300 and first.xy.shape == (300, 2)
    again = project(books, "minilm", method="pca")
    assert again.cached and again.ids == first.ids and np.array_equal(again.xy, first.xy)
    assert again.path == first.path and first.path.parent.name == "projections"
    small = project(books, "minilm", method="pca", sample=100, seed=1)
    assert len(small.ids) == 100 and set(small.ids) < set(first.ids)
    assert project(books, "minilm", method="pca", sample=100, seed=1).ids == small.ids
    assert project(books, "minilm", method="pca", sample=100, seed=2).ids != small.ids
    # PCA of normalised vectors: the coordinates are the top-2 principal components
    x = _vectors(books, first.ids)
    centred = x - x.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    expected = centred @ top.T
    for k in range(2):
        assert abs(np.corrcoef(expected[:, k], first.xy[:, k])[0, 1]) > 0.999
    # sparse versions are reduced by SVD first
    assert project(books, "bm25", method="pca").xy.shape == (300, 2)
    with pytest.raises(EmbedscopeError, match="unknown projection method"):
        project(books, method="mds")


@pytest.mark.slow
def test_tsne_and_umap_keep_neighbourhoods_better_than_pca(books: Collection) -> None:
    scores = {}
    for method in ("pca", "tsne", "umap"):
        proj = project(books, "minilm", method=method)
        scores[method] = trustworthiness(_vectors(books, proj.ids), proj.xy, n_neighbors=10)
    # neighbour-preserving methods are made for this; a linear 2-D view of 384-d text vectors is not
    assert scores["tsne"] > scores["pca"] + 0.05 and scores["umap"] > scores["pca"] + 0.05
    assert min(scores["tsne"], scores["umap"]) > 0.75, scores


def test_point_data_colours_and_deleted_items(books: Collection, tmp_path: Path) -> None:
    proj = project(books, "minilm", method="pca")
    plain = point_data(books, proj)
    assert plain["colors"] is None and len(plain["titles"]) == 300
    cats = point_data(books, proj, "categories")
    counts = pd.Series([i.metadata.get("categories") for i in books.items()]).fillna("(none)").value_counts()
    assert cats["legend"][0]["label"] == f"{counts.index[0]} ({counts.iloc[0]})"
    assert len(cats["legend"]) <= 10 and len(set(cats["colors"])) == len(cats["legend"])
    years = point_data(books, proj, "published_year")
    assert len(years["legend"]) == 2 and years["legend"][0]["label"] == f"{books_min_year(books):g}"
    with pytest.raises(EmbedscopeError, match="no metadata field 'genre'.*categories"):
        point_data(books, proj, "genre")
    png = write_png(cats, tmp_path / "map.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_map_reads_legend_outside_hover_with_authors_and_categories(
    books: Collection, tmp_path: Path
) -> None:
    """Issue 17: the PNG was small (675 x 540) with the legend over the points; hover in the HTML
    showed only the title. Now about 1600 x 1200 pixels, the legend right of the axes, and each
    point's authors, year and categories in the data the page's hover shows."""
    import matplotlib.image

    from embedscope.projection import map_figure

    points = point_data(books, project(books, "minilm", method="pca"), "categories")
    height, width = matplotlib.image.imread(write_png(points, tmp_path / "map.png")).shape[:2]
    assert width >= 1500 and height >= 1100, (width, height)
    fig = map_figure(points)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend, area = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= area.x1, (legend, area)  # beside the points, not over them
    first = books.get(points["ids"][0]).metadata
    assert points["details"][0].startswith(first["authors"].split(";")[0])
    assert first["categories"] in points["details"][0]
    page = write_html(points, tmp_path / "map.html").read_text()
    assert json.dumps(points["details"][0], ensure_ascii=False) in page
    assert "this.points.details" in page  # the hover reads them (serve/static/map.js)


def books_min_year(col: Collection) -> float:
    return min(i.metadata["published_year"] for i in col.items() if i.metadata.get("published_year"))


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict, str]] = []
        self._open: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def test_html_page_is_self_contained_and_escapes_titles(books: Collection, tmp_path: Path) -> None:
    points = point_data(books, project(books, "minilm", method="pca"), "categories")
    page = write_html(points, tmp_path / "map.html").read_text()
    parser = _Scripts()
    parser.feed(page)
    assert len(parser.scripts) == 3  # data, map.js, the page's own: the hostile title opened none
    assert not any("src" in attrs for attrs, _ in parser.scripts)  # nothing loaded from elsewhere
    assert "http://" not in page and "https://" not in page
    data = json.loads(parser.scripts[0][1])
    assert data["ids"] == points["ids"] and "</script><script>window.owned = 1</script>" in data["titles"]
    assert "class EmbedMap" in parser.scripts[1][1]


def test_project_command(books: Collection, tmp_path: Path) -> None:
    env = {**os.environ, "EMBEDSCOPE_HOME": str(books.store.path.parent), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "embedscope.cli", "project", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )

    out = cli("books", "--version", "minilm", "--method", "pca", "--color-by", "categories", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    # the default folder is the current one
    assert (
        Path(result["png"]) == Path("books-minilm-pca.png") and (tmp_path / "books-minilm-pca.html").exists()
    )
    assert result["items"] == 300
    again = json.loads(cli("books", "--version", "minilm", "--method", "pca", "--json").stdout)
    assert again["cached"] and again["seconds"] == 0
    for args, message in [
        (("books", "--method", "mds"), "unknown projection method"),
        (("books", "--color-by", "genre"), "no metadata field 'genre'"),
        (("books", "--version", "nope"), "nope"),
    ]:
        bad = cli(*args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "umap" in cli("--help").stdout


def test_items_deleted_after_projection_are_left_out(books: Collection) -> None:
    proj = project(books, "minilm", method="pca", sample=50, seed=9)
    gone = proj.ids[3]
    books.delete([gone])
    points = point_data(books, proj)
    assert gone not in points["ids"] and len(points["ids"]) == 49
