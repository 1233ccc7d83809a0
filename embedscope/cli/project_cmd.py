"""`embedscope project`: a picture of an embedding space (PNG and an interactive HTML page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedscope.cli.app import app, console, err_console, print_json, progress_bar
from embedscope.cli.options import CollectionArg
from embedscope.collection import Collection


@app.command("project")
def project_cmd(
    collection: CollectionArg,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version to draw (default: the active one).")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="umap (neighbourhoods and layout; first run compiles for ~30 s), tsne (neighbourhoods; "
            "slow on big samples) or pca (linear, fast).",
        ),
    ] = "umap",
    color_by: Annotated[
        str | None,
        typer.Option("--color-by", help="Metadata field that colours the points, e.g. categories."),
    ] = None,
    sample: Annotated[
        int, typer.Option(min=3, help="At most this many items, drawn at random (seeded).")
    ] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of the method.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG and the HTML page.")] = Path(
        "."
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Project a version's vectors to 2-D and write NAME-VERSION-METHOD.png and .html (hover shows
    titles, a search box highlights them; works offline). Coordinates are cached per version
    revision, so a rerun (or the web page) only draws."""
    from embedscope.projection import point_data, project, write_html, write_png

    col = Collection.open(collection)
    stages = {
        "loading": f"loading {collection}'s vectors",
        "reducing": "normalising (and reducing to 50 dimensions)",
        "layout": f"{method.upper()} layout"
        + (" (the first run also compiles numba code, ~30 s)" if method == "umap" else ""),
    }
    # on stderr with --json (stdout holds the JSON alone); a bar on a terminal, lines when piped
    with progress_bar(out=err_console if as_json else console, transient=True) as bar:
        task = bar.add_task(f"project: {stages['loading']}", total=len(stages) + 1)

        def moved(stage: str) -> None:
            bar.update(task, completed=list(stages).index(stage), description=f"project: {stages[stage]}")

        proj = project(col, version, method=method, sample=sample, seed=seed, progress=moved)
        bar.update(task, completed=len(stages), description="project: drawing the PNG and the page")
        points = point_data(col, proj, color_by)
        stem = f"{collection}-{proj.version}-{proj.method}"
        png = write_png(points, out / f"{stem}.png")
        page = write_html(points, out / f"{stem}.html")
        bar.update(task, completed=len(stages) + 1)
    result = {
        "collection": collection,
        "version": proj.version,
        "method": proj.method,
        "items": len(points["ids"]),
        "cached": proj.cached,
        "seconds": proj.seconds,
        "png": str(png),
        "html": str(page),
    }
    if as_json:
        print_json(result)
        return
    how = "from the cache" if proj.cached else f"computed in {proj.seconds:.1f} s"
    console.print(
        f"{proj.method.upper()} of {result['items']} items of {collection}/{proj.version} ({how})\n"
        f"picture: {png}\npage:    {page}",
        highlight=False,
    )
