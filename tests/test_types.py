"""mypy over `embedscope/`, with the configuration in pyproject.toml ([tool.mypy]): the type check runs
in the suite (so in `.ci/run`, which runs the README's test command) rather than as a separate step.

Skipped, with the reason, where mypy is not installed (it is in the `dev` extra)."""

from __future__ import annotations

import ast
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


def _any_without_reason(root: Path) -> list[str]:
    """Each `Any` in embedscope/ outside jsontypes.py (JSON's values, the one place they are Any)
    whose line, or the line above, has no comment saying why."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "jsontypes.py":
            continue
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Name) and node.id == "Any":
                here, above = lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else ""
                if "#" not in here and not above.lstrip().startswith("#"):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {here.strip()}")
    return found


def test_any_only_where_a_library_forces_it() -> None:
    """Issue 18's rule: a value only checked or passed on is `object`, JSON data is
    `jsontypes.JSONObject`/`JSONValue`, a library's object is named by its class (an untyped
    library's class reads as Any to mypy by itself); an `Any` that is still needed says why."""
    assert _any_without_reason(ROOT / "embedscope") == []


def test_the_any_rule_fails_on_a_bare_any(tmp_path: Path) -> None:
    package = tmp_path / "embedscope"
    package.mkdir()
    (package / "jsontypes.py").write_text("from typing import Any\nJSONValue = Any\n")
    (package / "reasoned.py").write_text(
        "from typing import Any\n\n# Any: a library's rows\nrows: Any = []\n"
    )
    (package / "bare.py").write_text("from typing import Any\n\n\ndef f(x: Any) -> Any:\n    return x\n")
    assert _any_without_reason(package) == [
        "embedscope/bare.py:4: def f(x: Any) -> Any:",
        "embedscope/bare.py:4: def f(x: Any) -> Any:",
    ]
