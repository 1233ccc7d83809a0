"""The Typer application and the helpers every command module shares.

Command modules (`core`, `encoders_cmd`, `evaluate_cmd`, `recommend_cmd`, `serve_cmd`, `experiment_cmd`,
`project_cmd`) each import `app` from here and add commands with `@app.command()` (or a sub-app);
`embedscope.cli` imports them all (its `_COMMAND_MODULES`). Options they share are in `options.py`;
command modules import this module, `options` and lower layers, never each other.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    name="embedscope",
    help="Turn a collection of items into embeddings: search, more-like-this, recommend, "
    "compare encoders, evaluate, version and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit non-zero (never a traceback for user errors)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else on it."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def progress_bar(description: str, *, stderr: bool = False) -> Progress:
    """A progress bar on stdout, or on stderr (`stderr`: a command printing --json keeps stdout JSON)."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console if stderr else console,
        transient=False,
    )


def open_collection(name: str) -> Any:
    """The collection a command names (imported here, not at start: `--help` stays fast)."""
    from embedscope.collection import Collection

    return Collection.open(name)


def print_hits(hits: list[Any], title: str, fields: Any) -> None:
    """Hits as a table, each shown by embedscope.display.show with the collection's display fields."""
    from embedscope.display import show

    table = Table(title=title, show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("title")
    table.add_column("details", style="dim", overflow="fold")
    for n, h in enumerate(hits, 1):
        s = show(h.text, h.metadata, fields)
        details = " · ".join(x for x in (s.subtitle, s.year, ", ".join(s.tags[:3])) if x)
        table.add_row(str(n), h.id, f"{h.score:.3f}", s.title, details[:80])
    console.print(table)
