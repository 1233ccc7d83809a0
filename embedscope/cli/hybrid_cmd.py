"""CLI: `embedscope hybrid create|list|delete`: search recipes that fuse several versions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from embedscope.cli.app import PLAIN_HELP, app, console, fail, open_collection, print_json
from embedscope.cli.options import CollectionArg, JsonOpt
from embedscope.encoders.registry import parse_params
from embedscope.search.query import describe, parse_stage
from embedscope.search.recipe import DEFAULT_FUSION

if TYPE_CHECKING:
    from embedscope.search.recipe import Recipe

hybrid_app = typer.Typer(
    help="Hybrid search recipes: named configurations fusing several versions (e.g. bm25 + minilm). "
    "Search one with `embedscope search NAME QUERY --version RECIPE`.",
    no_args_is_help=True,
    rich_markup_mode=PLAIN_HELP,
)
app.add_typer(hybrid_app, name="hybrid")


@hybrid_app.command("create")
def create(
    collection: CollectionArg,
    parts: Annotated[
        str, typer.Option("--parts", help="Comma-separated versions to fuse, e.g. bm25,minilm.")
    ] = "bm25,minilm",
    name: Annotated[
        str, typer.Option("--name", help="Recipe name (search it with --version NAME).")
    ] = "hybrid",
    fusion: Annotated[
        str,
        typer.Option(
            "--fusion",
            help="convex (weighted normalised scores; default: z-score, equal weights) or rrf "
            "(reciprocal rank fusion).",
        ),
    ] = DEFAULT_FUSION,
    weight: Annotated[
        float | None,
        typer.Option(
            "--weight",
            min=0.0,
            max=1.0,
            help="Two parts: the weight of the FIRST part; the second gets 1 - weight "
            "(--parts bm25,minilm --weight 0.3: bm25 0.3, minilm 0.7).",
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", help="One weight per part, e.g. 0.2,0.8 (normalised to sum 1).")
    ] = None,
    normalization: Annotated[
        str | None,
        typer.Option("--normalization", help="convex only: minmax, zscore or tmm (theoretical min-max)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Fusion parameter key=value, e.g. k=60 (rrf); missing=cutoff|zero|score (convex: what a "
            "candidate one part did not return counts there; score = its true score).",
        ),
    ] = None,
    depth: Annotated[
        int, typer.Option("--depth", min=1, max=10_000, help="Candidates per part before fusion.")
    ] = 100,
    stage: Annotated[
        list[str] | None,
        typer.Option(
            "--stage",
            "-s",
            help="A query stage NAME[:key=value,...] (repeatable): split (long queries: sentences or "
            "passages, fused), terms (drop common query terms), rm3 (BM25 feedback), rocchio (dense "
            "feedback), adaptive (weights per query length); e.g. --stage split:fuse=max --stage rm3. "
            "Options and defaults: docs/evaluation.md.",
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a stored recipe of the same name.")
    ] = False,
) -> None:
    """Store a search recipe; the parts must be versions.

    A stored recipe of the same name (e.g. the `hybrid` that `embed --encoder hybrid` stored) is
    overwritten only with --replace: give --name for another one."""

    if weight is not None and weights is not None:
        fail("give --weight (two parts) or --weights (one per part), not both")
    names = [p.strip() for p in parts.split(",") if p.strip()]
    per_part: list[float] | None = None
    if weight is not None:
        if len(names) != 2:
            fail(f"--weight needs exactly two parts (got {len(names)}); use --weights a,b,c")
        per_part = [weight, 1.0 - weight]
    elif weights is not None:
        try:
            per_part = [float(w) for w in weights.split(",")]
        except ValueError:
            fail(f"--weights must be numbers separated by commas, not {weights!r}")
    params = parse_params(param)
    if normalization is not None:
        if fusion != "convex":
            fail("--normalization applies to --fusion convex only")
        params["normalization"] = normalization
    stages: dict[str, dict] = {}
    for spec in stage or []:
        stage_name, options = parse_stage(spec)
        if stage_name in stages:
            fail(f"--stage {stage_name} given twice; give its options once: --stage {stage_name}:a=1,b=2")
        stages[stage_name] = options
    recipe = open_collection(collection).create_recipe(
        name,
        names,
        fusion=fusion,
        params=params,
        weights=per_part,
        depth=depth,
        stages=stages,
        replace=replace,
    )
    console.print(
        f"{collection}: recipe [bold]{recipe.name}[/] = {_describe(recipe)}; try "
        f"`embedscope search {collection} QUERY --version {recipe.name}`"
    )


@hybrid_app.command("list")
def list_recipes(collection: CollectionArg, as_json: JsonOpt = False) -> None:
    """The collection's search recipes (stored ones, and the implicit `hybrid` when it can be made)."""

    col = open_collection(collection)
    stored = set(col.stored_recipes())
    recipes = col.recipes()
    if as_json:
        print_json([{**r.to_dict(), "stored": n in stored} for n, r in recipes.items()])
        return
    if not recipes:
        console.print(
            f"{collection}: no recipes; make one with `embedscope hybrid create {collection} "
            "--parts bm25,minilm` (the parts must be embedded versions)"
        )
        return
    table = Table(title=f"{collection}: search recipes")
    for column in ("name", "parts (weight)", "fusion", "params", "depth", "stages", "stored"):
        table.add_column(column)
    for n, r in recipes.items():
        table.add_row(
            n,
            ", ".join(f"{p} ({w:.2f})" for p, w in zip(r.parts, r.part_weights, strict=True)),
            r.fusion,
            json.dumps(r.params),
            str(r.depth),
            describe(r.stages) or "-",
            "yes" if n in stored else "implicit default",
        )
    console.print(table)


@hybrid_app.command("delete")
def delete(
    collection: CollectionArg,
    name: Annotated[str, typer.Option("--name", help="Recipe to delete.")] = "hybrid",
) -> None:
    """Delete a stored recipe (the versions it fuses are kept)."""
    open_collection(collection).delete_recipe(name)
    console.print(f"{collection}: deleted recipe {name}")


def _describe(r: Recipe) -> str:
    return r.describe()
