"""MovieLens 100K readers: `u.item` (movies, `|`-separated, latin-1, 19 genre flags named by `u.genre`)
and `u.data` (user, item, rating, unix time; tab-separated). Plain pandas; errors name the file."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from embedscope.errors import EmbedscopeError, NotFoundError

_ITEM_COLUMNS = ["id", "title", "release_date", "video_release_date", "imdb_url"]
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _need(path: Path) -> Path:
    if not path.exists():
        raise NotFoundError(f"file not found: {path}")
    return path


def read_genres(path: str | Path) -> list[str]:
    """Genre names in flag order, from `u.genre` (lines `name|index`)."""
    path = _need(Path(path))
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        name, _, idx = line.rpartition("|")
        if not name or not idx.strip().isdigit():
            raise EmbedscopeError(f"{path.name}: line {lineno} is not 'name|index'")
        pairs.append((int(idx), name))
    return [name for _, name in sorted(pairs)]


def read_movielens_items(path: str | Path) -> pd.DataFrame:
    """Movies from `u.item` (or its folder) as a frame: id, title, year, genres ("Action, Comedy"),
    release_date, imdb_url and `text` = "title. genres" (what the content encoders embed)."""
    path = Path(path)
    if path.is_dir():
        path = path / "u.item"
    path = _need(path)
    genres = read_genres(path.parent / "u.genre")
    try:
        frame = pd.read_csv(
            path,
            sep="|",
            header=None,
            encoding="latin-1",
            dtype=str,
            keep_default_na=False,
            on_bad_lines="error",
        )
    except pd.errors.ParserError as exc:
        raise EmbedscopeError(f"{path.name}: malformed MovieLens item file: {str(exc).strip()}") from None
    if frame.shape[1] != len(_ITEM_COLUMNS) + len(genres):
        raise EmbedscopeError(
            f"{path.name}: {frame.shape[1]} columns, expected {len(_ITEM_COLUMNS) + len(genres)} "
            f"(5 fields + {len(genres)} genre flags from u.genre)"
        )
    frame.columns = _ITEM_COLUMNS + genres
    flags = frame[genres].astype(int).to_numpy().astype(bool)
    # "unknown" is a placeholder genre (flagged on 2 movies); keep it out of the text
    names = [[g for g, f in zip(genres, row, strict=True) if f and g != "unknown"] for row in flags]
    out = pd.DataFrame(
        {
            "id": frame["id"].str.strip(),
            "title": frame["title"].str.strip(),
            "year": pd.to_numeric(frame["title"].str.extract(_YEAR, expand=False), errors="coerce").astype(
                "Int64"
            ),
            "genres": [", ".join(n) for n in names],
            "release_date": frame["release_date"].replace("", None),
            "imdb_url": frame["imdb_url"].replace("", None),
        }
    )
    out["text"] = [f"{t}. {g}" if g else t for t, g in zip(out["title"], out["genres"], strict=True)]
    return out


def read_movielens_ratings(path: str | Path) -> pd.DataFrame:
    """Ratings from `u.data` (or its folder): user, item (strings, as item ids are), rating, timestamp."""
    path = Path(path)
    if path.is_dir():
        path = path / "u.data"
    path = _need(path)
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=["user", "item", "rating", "timestamp"],
            dtype={"user": str, "item": str},
            on_bad_lines="error",
        )
    except pd.errors.ParserError as exc:
        raise EmbedscopeError(f"{path.name}: malformed MovieLens ratings file: {str(exc).strip()}") from None
    except pd.errors.EmptyDataError:
        raise EmbedscopeError(f"{path.name}: the file is empty") from None
    if frame[["user", "item", "timestamp"]].isna().any().any():
        bad = int(frame[["user", "item", "timestamp"]].isna().any(axis=1).to_numpy().nonzero()[0][0]) + 1
        raise EmbedscopeError(f"{path.name}: line {bad} does not have 4 tab-separated fields")
    return frame
