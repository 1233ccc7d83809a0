"""The README documents every command and every benchmark, and every command explains itself in
`--help` (as sqlite-utils' tests/test_docs.py does): a command added without its line in the README,
or a bench script nobody is told about, fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from embedscope.cli import _load_commands
from embedscope.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
_load_commands()


def _commands(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, object]]:
    subcommands = getattr(command, "commands", None)
    if subcommands:  # a group (the app, or a sub-app such as `hybrid`)
        for name, sub in subcommands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


COMMANDS = dict(_commands(typer.main.get_command(app)))


def test_the_cli_has_the_commands_this_test_walks() -> None:
    assert {"ingest", "embed", "search", "hybrid create", "experiment start", "check"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_is_in_the_readme_and_explains_itself(path: str) -> None:
    assert f"embedscope {path}" in README, f"`embedscope {path}` is not shown in README.md"
    assert (COMMANDS[path].help or "").strip(), f"`embedscope {path}` has no help text"
    result = CliRunner().invoke(app, [*path.split(), "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("bench_*.py")))
def test_every_benchmark_is_in_the_readme(script: str) -> None:
    assert re.search(rf"python bench/{re.escape(script)}\b", README), f"bench/{script} is not in README.md"


def _readme_command_lines() -> list[str]:
    """Every `embedscope ...` line of the README's bash blocks, without its trailing comment."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():  # continuation lines joined
            line = line.strip()
            if line.startswith("embedscope "):
                lines.append(re.split(r"\s+#\s", line)[0].strip())
    return lines


@pytest.mark.parametrize("line", _readme_command_lines())
def test_every_readme_command_line_parses(line: str) -> None:
    """Each command line a reader copies names a real command with options it has, values of the
    right types (parsed by click as the shell would hand them over, without running it), so the
    README cannot drift from the CLI (issue 17: `compare-runs` paths, removed options)."""
    import shlex

    words = shlex.split(line)[1:]
    words = [w for w in words if not w.startswith("$")]  # shell variables stand for a value
    path = max(
        (p for p in COMMANDS if words[: len(p.split())] == p.split()),
        key=lambda p: len(p.split()),
        default=None,
    )
    if words and words[0].startswith("-"):  # an option of the app itself (`embedscope --help`)
        path, command, args = "", typer.main.get_command(app), words
    else:
        assert path is not None, f"README: `{line}` names no command"
        command, args = COMMANDS[path], words[len(path.split()) :]
    try:
        command.make_context(f"embedscope {path}", args, resilient_parsing=False)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - typer vendors click: its exception classes, by name
        kind = type(exc).__name__
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if kind == "Exit" or (kind == "BadParameter" and "does not exist" in message):
            return  # --help (parsed, printed), or a path an earlier README step creates
        pytest.fail(f"README: `{line}`: {kind}: {message}")


def test_readme_item_ids_are_in_the_shipped_books() -> None:
    """The ids the README's examples use (similar, delete-items, recommend --items, the Python API)
    are books of ../shared/data/books/books.csv, so copy-paste works (issue 17: they were not)."""
    books = ROOT.parent / "shared" / "data" / "books" / "books.csv"
    if not books.exists():
        pytest.skip("../shared/data/books/books.csv is absent (the shared data sets sit beside the clone)")
    import pandas as pd

    shipped = set(pd.read_csv(books, dtype=str, usecols=["isbn13"]).isbn13)
    mentioned = set(re.findall(r"\b97[89]\d{10}\b", README))
    assert mentioned and mentioned <= shipped, f"not in the shipped books: {sorted(mentioned - shipped)}"


@pytest.mark.slow
def test_the_readme_main_block_runs_on_the_shipped_books(tmp_path: Path) -> None:
    """Issue 17: the README's "Using it" block, run as written (in a temporary home) on a slice of
    the shipped books that holds every id it names: each command exits 0 with no traceback. Lines
    that need a Ray cluster are left out (tests/test_engine_ray.py runs those)."""
    books = ROOT.parent / "shared" / "data" / "books" / "books.csv"
    if not books.exists():
        pytest.skip("../shared/data/books/books.csv is absent (the shared data sets sit beside the clone)")
    import os
    import shlex
    import subprocess
    import sys

    import pandas as pd

    block = README.split("## Using it", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [re.split(r"\s+#\s", x)[0].strip() for x in re.sub(r"\\\n\s*", " ", block).splitlines()]
    commands = [x for x in lines if x.startswith("embedscope ") and "--engine ray" not in x]
    frame = pd.read_csv(books, dtype=str)
    named = set(re.findall(r"\b97[89]\d{10}\b", block))
    part = pd.concat([frame[frame.isbn13.isin(named)], frame[~frame.isbn13.isin(named)].head(150)])
    data = tmp_path / "books.csv"
    part.to_csv(data, index=False)
    env = {**os.environ, "EMBEDSCOPE_HOME": str(tmp_path / "home"), "COLUMNS": "120"}
    for command in commands:
        args = [a.replace("../shared/data/books/books.csv", str(data)) for a in shlex.split(command)[1:]]
        run = subprocess.run(
            [sys.executable, "-m", "embedscope.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert run.returncode == 0 and "Traceback" not in run.stderr, f"README: `{command}`:\n{run.stderr}"
    assert len(commands) >= 15
