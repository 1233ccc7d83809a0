"""Shared fixtures: where the real data is, and a private EMBEDSCOPE_HOME per test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BOOKS_CSV = SHARED_DATA / "books" / "books.csv"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh collections root for this test."""
    root = tmp_path / "home"
    monkeypatch.setenv("EMBEDSCOPE_HOME", str(root))
    return root


@pytest.fixture
def run_cli(home: Path) -> Callable[..., subprocess.CompletedProcess]:
    """The CLI as a user meets it: `run_cli("search", "books", "dragons")` in a subprocess on `home`."""
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "160"}

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "embedscope.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    return run


@pytest.fixture(scope="session")
def books_frame() -> pd.DataFrame:
    if not BOOKS_CSV.exists():
        pytest.skip(f"real books data not found at {BOOKS_CSV} (../shared/data is absent)")
    return pd.read_csv(BOOKS_CSV)


@pytest.fixture(scope="session")
def books_300(books_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """300 real books embedded with MiniLM once per test session (read-only for tests)."""
    from embedscope import Collection

    root = tmp_path_factory.mktemp("books300")
    col = Collection.create("books300", root=root)
    col.ingest(
        books_frame.head(300),
        id_field="isbn13",
        template="{title}. {description}",
        metadata=["title", "authors", "categories", "published_year", "average_rating"],
    )
    col.embed("minilm")
    return col
