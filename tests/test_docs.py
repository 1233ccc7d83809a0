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
