"""The Typer application and the helpers every command module shares.

Command modules (`core`, `encoders_cmd`, `evaluate_cmd`, `recommend_cmd`, `serve_cmd`, `experiment_cmd`,
`project_cmd`) each import `app` from here and add commands with `@app.command()` (or a sub-app);
`embedscope.cli` imports them all (its `_COMMAND_MODULES`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

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
