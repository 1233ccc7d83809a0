"""Issue 17, "the first hour": what a new user meets on an 80-column terminal or in a pipe. Help text
that reads at 80 columns, `info` that never cuts a parameter mid-token, `collections` with items,
versions and the default search, commands to copy that are never wrapped, `delete-version` saying
what the collection uses now, progress lines when stdout is not a terminal, quiet libraries."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from embedscope import Collection
from embedscope.cli import _load_commands
from embedscope.cli.app import app

_load_commands()
TEMPLATE = "{title}. {description}"
META = ["title", "authors", "categories", "published_year"]


def cli(home: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """The CLI in a subprocess whose stdout is a pipe (not a terminal), at `columns` columns."""
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": str(columns)}
    env.pop("EMBEDSCOPE_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "embedscope.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame) -> Path:
    """80 books with two cheap dense versions (lsa, lsa2; lsa active) and a sparse one (bm25)."""
    home = tmp_path_factory.mktemp("firsthour")
    col = Collection.create("books", home)
    col.ingest(books_frame.head(80), id_field="isbn13", template=TEMPLATE, metadata=META)
    col.embed("bm25")
    col.embed("lsa", {"n_components": 8}, activate=True)
    col.embed("lsa", {"n_components": 12}, version="lsa2")
    col.close()
    return home


def _help_commands() -> list[list[str]]:
    def walk(command: object, path: tuple[str, ...] = ()) -> list[list[str]]:
        subs = getattr(command, "commands", None)
        if not subs:
            return [list(path)]
        return [list(path)] * bool(path) + [p for n, s in subs.items() for p in walk(s, (*path, n))]

    return walk(typer.main.get_command(app))


@pytest.mark.parametrize("path", [[], *_help_commands()], ids=lambda p: " ".join(p) or "embedscope")
def test_help_reads_at_80_columns(path: list[str]) -> None:
    """No line over 80 columns; option help in a column at least 40 wide (rich panels squeezed it
    into 20); paragraphs re-wrapped, not the docstring's own line breaks (a ragged right edge: a
    line that ends far short of the width while its paragraph goes on)."""
    out = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"}).output
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(x for x in lines if len(x) > 80)
    starts = [len(m.group(1)) for m in (re.match(r"^(  -.*?  +)\S", line) for line in lines) if m]
    assert all(80 - s >= 40 for s in starts), out
    # the description: the paragraphs between the usage line and the first section (Arguments, ...)
    ends = [i for i, line in enumerate(lines) if re.match(r"^[A-Z][a-z]+:$", line)]
    description = lines[1 : ends[0] if ends else len(lines)]
    for a, b in zip(description, description[1:], strict=False):
        assert not (a.strip() and b.strip() and len(a) < 50), f"ragged help:\n{a}\n{b}"
    if not path:  # the command list: one line each, never cut with "..."
        listing = out.split("Commands:", 1)[1]
        assert "..." not in listing and "  demo " in listing


def test_info_never_cuts_a_parameter_and_collections_summarise(small: Path) -> None:
    info = cli(small, "info", "books")
    assert info.returncode == 0, info.stderr
    assert all(len(line) <= 80 for line in info.stdout.splitlines())
    assert "…" not in info.stdout  # no cell cut short
    assert re.search(r"^  lsa2: .*n_components=12", info.stdout, re.M), info.stdout
    assert "default search: lsa; active version (more-like-this, recommendations, maps): lsa" in " ".join(
        info.stdout.split()
    )
    listed = cli(small, "collections")
    assert listed.returncode == 0 and re.search(
        r"books\s+│\s+80\s+│\s+bm25, lsa, lsa2\s+│\s+lsa", listed.stdout
    )
    rows = json.loads(cli(small, "collections", "--json").stdout)
    assert rows == [
        {
            "name": "books",
            "items": 80,
            "versions": ["bm25", "lsa", "lsa2"],
            "active_version": "lsa",
            "default_search": "lsa",
            "store": str(small / "books"),
        }
    ]


def test_delete_version_says_what_the_collection_uses_now(small: Path, tmp_path: Path) -> None:
    """Issue 17: deleting the active version made BM25 active without a word, and dense-only
    commands then failed. Another dense version becomes active when one is left, the CLI says which
    (and the default search), and a dense-only command names the way out."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(small, home)
    gone = cli(home, "delete-version", "books", "lsa")
    assert gone.returncode == 0, gone.stderr
    said = " ".join(gone.stdout.split())
    assert "active version (more-like-this, recommendations, maps) is now lsa2" in said, said
    assert "default search is lsa2" in said
    gone = cli(home, "delete-version", "books", "lsa2")
    said = " ".join(gone.stdout.split())
    assert gone.returncode == 0 and "is now bm25; default search is bm25" in said, said
    drift = cli(home, "drift", "books", "--items")
    assert drift.returncode == 2 and "embedscope embed books --encoder minilm" in drift.stderr, drift.stderr
    assert "Traceback" not in drift.stderr
    last = cli(home, "delete-version", "books", "bm25")
    assert last.returncode == 0 and "books has no versions now" in " ".join(last.stdout.split())
    assert Collection.open("books", home).info()["active_version"] is None


def test_long_work_prints_progress_lines_when_piped(small: Path, tmp_path: Path) -> None:
    """Issue 17: embed and evaluate printed nothing until the end when stdout was not a terminal
    (Rich draws no bar there). Now a line per 10% (or every 5 s), and one at the end; `project`
    names its stages."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(small, home)
    run = cli(home, "embed", "books", "--encoder", "lsa", "-p", "n_components=4", "--version", "lsa4")
    assert run.returncode == 0, run.stderr
    lines = [x for x in run.stdout.splitlines() if x.startswith("encoding books with lsa:")]
    assert len(lines) >= 2 and lines[-1].endswith("done") and "80/80 (100%)" in lines[-1], run.stdout
    drawn = cli(home, "project", "books", "--method", "pca", "--out", str(tmp_path))
    assert drawn.returncode == 0, drawn.stderr
    stages = [x for x in drawn.stdout.splitlines() if x.startswith("project: ")]
    assert any("PCA layout" in x for x in stages) and stages[-1].endswith("done"), drawn.stdout


def test_piped_progress_reports_a_second_pass_of_the_same_task() -> None:
    """`embed --encoder hybrid` (and the demo) counts the items twice on one task, BM25's pass then
    MiniLM's: the plain lines went silent after the first pass's "done" (1.5 min without a line in
    `embedscope demo > log`). A count that starts again is reported again."""
    import io

    from rich.console import Console

    from embedscope.cli.app import PlainProgress

    out = io.StringIO()
    with PlainProgress(Console(file=out)) as bar:
        task = bar.add_task("embedding with hybrid", total=10)
        bar.update(task, completed=10, total=10)  # the sparse half, at once
        bar.update(task, completed=5, total=10)  # the dense half starts
        bar.update(task, completed=10, total=10)
    lines = out.getvalue().splitlines()
    assert sum(x.endswith("done") for x in lines) == 2 and any(" 5/10 " in x for x in lines), lines


def test_the_demo_hints_are_whole_commands_at_80_columns(tmp_path: Path, books_frame: pd.DataFrame) -> None:
    """Issue 17: the demo's "try:" lines were wrapped mid-command at 80 columns; copy-paste broke."""
    data = tmp_path / "books.csv"
    books_frame.head(400).to_csv(data, index=False)  # LSA's vocabulary then knows the demo's query words
    run = cli(tmp_path / "home", "demo", "--data", str(data), "--encoder", "lsa")
    assert run.returncode == 0, run.stderr
    tail = run.stdout.split("The collection is stored; try:\n", 1)[1].splitlines()
    commands = [line.strip() for line in tail if line.strip()]
    assert len(commands) == 5 and all(c.split()[0].endswith("embedscope") for c in commands), commands
    assert commands[1].endswith('--where "published_year >= 2000"') and len(commands[1]) > 80


def test_transformers_loss_type_notice_is_dropped_and_other_warnings_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from embedscope.encoders.transformer import _drop_loss_type_notice

    _drop_loss_type_notice()
    log = logging.getLogger("transformers.modeling_utils")
    with caplog.at_level(logging.WARNING, logger="transformers.modeling_utils"):
        log.warning("`loss_type=None` was set in the config but it is unrecognized. Using the default loss")
        log.warning("Some weights of the model checkpoint were not used")
    assert [r.getMessage() for r in caplog.records] == ["Some weights of the model checkpoint were not used"]
