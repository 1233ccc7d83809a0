"""The Typer application and the helpers every command module shares.

Command modules (`core`, `encoders_cmd`, `evaluate_cmd`, `recommend_cmd`, `serve_cmd`, `experiment_cmd`,
`project_cmd`) each import `app` from here and add commands with `@app.command()` (or a sub-app);
`embedscope.cli` imports them all (its `_COMMAND_MODULES`). Options they share are in `options.py`;
command modules import this module, `options` and lower layers, never each other.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status
from rich.table import Table

from embedscope.collection import Collection
from embedscope.display import DisplayFields, show
from embedscope.jsontypes import JSONObject
from embedscope.search import relevance
from embedscope.search.base import Hit

#: help as click writes it: paragraphs re-wrapped to the terminal, options in two columns. Typer's rich
#: panels keep a docstring's line breaks (ragged at 80 columns) and squeeze an option's help into a
#: 20-character column beside four columns of flags and types (issue 17).
PLAIN_HELP = None
app = typer.Typer(
    name="embedscope",
    rich_markup_mode=PLAIN_HELP,
    help="Turn a collection of items into embeddings: search, more-like-this, recommend, "
    "compare encoders, evaluate, version and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit non-zero (never a traceback for user errors)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: object) -> None:
    """Machine-readable output on stdout, nothing else on it."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def progress_bar(
    description: str = "", *, out: Console | None = None, transient: bool = False
) -> Progress | PlainProgress:
    """A progress display for long work: a Rich bar on a terminal; plain lines when the output is
    a pipe or a file (Rich draws nothing there until the end, and a 4-minute embed looked hung).
    Both have the same calls: `with progress_bar() as bar: task = bar.add_task(text, total=n);
    bar.update(task, completed=i, total=n, description=text)`."""
    target = out or console
    if not target.is_terminal:
        return PlainProgress(target)
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=target,
        transient=transient,
    )


def status(text: str, *, out: Console | None = None) -> Status | _PlainStatus:
    """A spinner with a message (`.update(text)` changes it) on a terminal; plain lines when piped."""
    target = out or console
    if target.is_terminal:
        return target.status(text)
    return _PlainStatus(PlainProgress(target), text)


class _PlainStatus:
    def __init__(self, progress: PlainProgress, text: str) -> None:
        self.progress, self.text = progress, text

    def __enter__(self) -> _PlainStatus:
        self.progress.__enter__()
        self.task = self.progress.add_task(self.text)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, text: str) -> None:
        self.progress.update(self.task, description=text)


class PlainProgress:
    """Progress as plain lines for a pipe or a log file: one when a task starts, then at most one per
    EVERY seconds (with the count, the share and the time so far), one on each 10% step, and one at
    the end. A heartbeat thread repeats the last state when a step takes long (a UMAP layout)."""

    EVERY = 5.0

    def __init__(self, out: Console) -> None:
        self.out = out
        self.tasks: dict[TaskID, JSONObject] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> PlainProgress:
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            for task in self.tasks.values():
                if not task["done"] and exc[0] is None:
                    self._line(task, final=True)

    def add_task(self, description: str, total: float | None = None, **_: object) -> TaskID:
        with self._lock:
            task_id = TaskID(len(self.tasks))
            now = time.monotonic()
            task = {"description": description, "total": total, "completed": 0, "start": now, "last": now}
            task.update(step=-1, done=False)
            self.tasks[task_id] = task
            self._line(task)
            return task_id

    def update(
        self,
        task_id: TaskID,
        *,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
        advance: float | None = None,
        **_: object,
    ) -> None:
        with self._lock:
            task = self.tasks[task_id]
            changed = description is not None and description != task["description"]
            for key, value in (("completed", completed), ("total", total), ("description", description)):
                if value is not None:
                    task[key] = value
            if advance:
                task["completed"] += advance
            if task["done"] and task["total"] and task["completed"] < task["total"]:
                # counting starts again (embed --encoder hybrid: BM25's pass, then MiniLM's): a new
                # pass gets its lines too, not the silence after the first one's "done"
                task.update(done=False, step=-1)
            step = int(10 * task["completed"] / task["total"]) if task["total"] else -1
            finished = bool(task["total"]) and task["completed"] >= task["total"]
            if task["done"]:
                pass  # its last line is out
            elif finished:
                self._line(task, final=True)
            elif changed or step > task["step"] or time.monotonic() - task["last"] >= self.EVERY:
                self._line(task)
            task["step"] = max(step, task["step"])

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.EVERY):
            with self._lock:
                for task in self.tasks.values():
                    if not task["done"] and time.monotonic() - task["last"] >= self.EVERY:
                        self._line(task)

    def _line(self, task: JSONObject, final: bool = False) -> None:
        now = time.monotonic()
        done, total = task["completed"], task["total"]
        count = f" {int(done):,}/{int(total):,} ({100 * done / total:.0f}%)" if total else ""
        end = ", done" if final else ""
        print(
            f"{task['description']}:{count} {now - task['start']:.0f} s{end}", file=self.out.file, flush=True
        )
        task["last"], task["done"] = now, task["done"] or final


def open_collection(name: str) -> Collection:
    """The collection a command names."""
    return Collection.open(name)


def print_hits(hits: Sequence[Hit], title: str, fields: DisplayFields) -> None:
    """Hits as a table, each shown by embedscope.display.show with the collection's display fields.

    Where the search gave relevance (a text query answered by a measured dense model:
    embedscope/search/relevance.py) the table shows it in words and as a number ("good .71"),
    else the raw score; a list with no good match ends with a line that says so."""

    rated = any(h.relevance is not None for h in hits)
    table = Table(title=title, show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("match" if rated else "score", justify="right", no_wrap=True)
    table.add_column("title")
    table.add_column("details", style="dim", overflow="fold")
    for n, h in enumerate(hits, 1):
        s = show(h.text, h.metadata, fields)
        details = " · ".join(x for x in (s.subtitle, s.year, ", ".join(s.tags[:3])) if x)
        if rated:
            shown = "" if h.relevance is None else f"{relevance.level(h.relevance)} {h.relevance:.2f}"
        else:
            shown = f"{h.score:.3f}"
        table.add_row(str(n), h.id, shown, s.title, details[:80])
    console.print(table)
    if relevance.good_match([h.relevance for h in hits]) is False:
        console.print(
            f"[yellow]no good match[/]: no result reaches relevance {relevance.GOOD} "
            "(these are the nearest items anyway; try other words)",
            highlight=False,
        )
