"""Online experiments: `embedscope experiment start|stop|list|report`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from embedscope.cli.app import PLAIN_HELP, app, console, print_json
from embedscope.cli.options import CollectionArg, JsonOpt
from embedscope.collection import Collection

if TYPE_CHECKING:
    from embedscope.experiments import Experiments

experiment_app = typer.Typer(
    help="Compare two search configurations on live traffic (served by `embedscope serve`): "
    "team-draft interleaving or an A/B split, clicks logged, reported with a significance test.",
    no_args_is_help=True,
    rich_markup_mode=PLAIN_HELP,
)
app.add_typer(experiment_app, name="experiment")

ExperimentOpt = Annotated[
    str | None,
    typer.Option("--name", "-n", help="Experiment name (default: the running one, else the latest)."),
]


def _experiments(collection: str) -> tuple[Collection, Experiments]:
    from embedscope.experiments import Experiments  # noqa: F811  (at run time: --help stays fast)

    col = Collection.open(collection)
    return col, Experiments.of(col)


@experiment_app.command("start")
def start(
    collection: CollectionArg,
    a: Annotated[str, typer.Option("--a", help="Side A: a version (e.g. minilm) or 'hybrid'.")],
    b: Annotated[str, typer.Option("--b", help="Side B, compared with A.")],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="interleave: one merged list per query, clicks credited to the side that contributed "
            "the result (needs far fewer impressions); ab: each user sees one side, chosen by a "
            "stable hash of their user/session id.",
        ),
    ] = "interleave",
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Experiment name (default: A-vs-B).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start an experiment; `embedscope serve` shows it to searchers until `experiment stop`.
    One experiment runs per collection at a time."""
    from embedscope.experiments import configurations

    col, exps = _experiments(collection)
    exp = exps.start(a, b, method=method, name=name, configurations=configurations(col))
    if as_json:
        print_json(exp.to_dict())
        return
    console.print(
        f"started experiment [bold]{exp.name}[/] on {collection}: A = {exp.a}, B = {exp.b}, "
        f"method {exp.method}; log: {exps.events_path(exp.name)}",
        highlight=False,
    )


@experiment_app.command("stop")
def stop(collection: CollectionArg, name: ExperimentOpt = None, as_json: JsonOpt = False) -> None:
    """Stop the running experiment (or the named one); its log stays for `experiment report`."""
    _, exps = _experiments(collection)
    exp = exps.stop(name)
    if as_json:
        print_json(exp.to_dict())
        return
    console.print(f"stopped experiment [bold]{exp.name}[/] at {exp.stopped_at}", highlight=False)


@experiment_app.command("list")
def list_cmd(collection: CollectionArg, as_json: JsonOpt = False) -> None:
    """The collection's experiments, oldest first, with their status."""
    _, exps = _experiments(collection)
    rows = [e.to_dict() for e in exps.list()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no experiments on {collection}; start one with `embedscope experiment start`")
        return
    table = Table(title=f"{collection}: experiments")
    for c in ("name", "A", "B", "method", "status", "started", "stopped"):
        table.add_column(c)
    for r in rows:
        table.add_row(
            r["name"], r["a"], r["b"], r["method"], r["status"], r["started_at"], r["stopped_at"] or "-"
        )
    console.print(table)


@experiment_app.command("report")
def report_cmd(
    collection: CollectionArg,
    name: ExperimentOpt = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the cumulative preference over time to this PNG.")
    ] = None,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="Significance level.")] = 0.05,
    as_json: JsonOpt = False,
) -> None:
    """Winner, per-side credit (interleaving) or click-through rate (A/B), significance test
    (sign test / two-proportion z-test), impressions so far; optionally a PNG."""
    from embedscope.experiments.report import report

    _, exps = _experiments(collection)
    out = report(exps, name, alpha=alpha, plot=plot)
    if as_json:
        print_json(out)
        return
    table = Table(
        title=f"{collection}: {out['name']} ({out['method']}, {out['status']}, since {out['started_at']})"
    )
    table.add_column("", style="bold")
    table.add_column(f"A ({out['a']})", justify="right")
    table.add_column(f"B ({out['b']})", justify="right")
    if out["method"] == "interleave":
        table.add_row("impressions won", str(out["wins"]["a"]), str(out["wins"]["b"]))
        table.add_row("clicks credited", str(out["clicks"]["a"]), str(out["clicks"]["b"]))
        extra = f"ties {out['wins']['ties']}; "
    else:
        sa, sb = out["sides"]["a"], out["sides"]["b"]
        for key in ("impressions", "clicked_impressions", "clicks", "ctr"):
            table.add_row(key.replace("_", " "), str(sa[key]), str(sb[key]))
        extra = ""
    console.print(table)
    console.print(
        f"impressions {out['impressions']} ({out['clicked_impressions']} with clicks); {extra}"
        f"{out['test']['name']}: p = {out['test']['p']:.4g}",
        highlight=False,
    )
    console.print(out["verdict"], highlight=False)
    log = out["log"]
    if log["skipped_lines"] or log["clicks_without_impression"]:
        console.print(
            f"[yellow]note:[/] {log['skipped_lines']} torn log line(s) skipped, "
            f"{log['clicks_without_impression']} click(s) without their impression",
            highlight=False,
        )
    if plot is not None:
        console.print(f"plot: {out['plot']}")
