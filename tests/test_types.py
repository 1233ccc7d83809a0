"""mypy over `embedscope/`, with the configuration in pyproject.toml ([tool.mypy]): the type check runs
in the suite (so in `.ci/run`, which runs the README's test command) rather than as a separate step.

Skipped, with the reason, where mypy is not installed (it is in the `dev` extra)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not installed: pip install -e .[dev]"
)
def test_embedscope_type_checks() -> None:
    # the cache lives in the checkout (.mypy_cache/, ignored by git): a rerun checks only what changed
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
