"""`embedscope serve` argument handling (no server is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedscope.cli import app


def test_serve_unknown_collection_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSCOPE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "nope"])
    assert result.exit_code == 2
    assert "collection 'nope' does not exist" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_short_token_and_empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSCOPE_HOME", str(tmp_path))
    monkeypatch.setenv("MY_TOKEN", "short")
    result = CliRunner().invoke(app, ["serve", "--token-env", "MY_TOKEN"])
    assert result.exit_code == 2 and "shorter than 16" in result.output
    monkeypatch.delenv("MY_TOKEN")
    result = CliRunner().invoke(app, ["serve", "--token-env", "MY_TOKEN"])
    assert result.exit_code == 2 and "no collections under" in result.output


def test_serve_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--token-env", "--log-dir"):
        assert option in result.output
