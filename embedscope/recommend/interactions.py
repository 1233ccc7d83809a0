"""User-item interactions (views, ratings, purchases), stored durably beside a collection.

One Parquet file per collection (`interactions.parquet` in the collection folder), written atomically
(temp file + fsync + os.replace, then fsync of the folder) so a crash leaves the old file or the new
one whole. Columns: user, item (strings), rating (float, NaN when absent), timestamp (float unix
seconds, NaN when absent), seq (input order; breaks timestamp ties and orders histories without time).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.jsontypes import JSONObject
from embedscope.sources import read_table

if TYPE_CHECKING:
    from embedscope.collection import Collection

INTERACTIONS_FILE = "interactions.parquet"
COLUMNS = ["user", "item", "rating", "timestamp", "seq"]


@dataclass
class LoadReport:
    """What loading did, so nothing is lost silently."""

    rows: int  # rows read
    stored: int  # interactions stored after cleaning
    users: int
    items: int
    unknown_items: int  # rows whose item is not in the collection
    unknown_examples: list[str] = field(default_factory=list)
    unknown_kept: bool = False
    duplicates: int = 0  # (user, item) repeats collapsed into the latest one
    path: str = ""

    def to_dict(self) -> JSONObject:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"read {self.rows:,} interactions; stored {self.stored:,} "
            f"({self.users:,} users, {self.items:,} items)"
        ]
        if self.unknown_items:
            verb = "kept" if self.unknown_kept else "dropped"
            out.append(
                f"{self.unknown_items:,} interaction(s) reference items not in the collection ({verb}), "
                f"e.g. {', '.join(map(repr, self.unknown_examples))}"
            )
        if self.duplicates:
            out.append(
                f"{self.duplicates:,} duplicate (user, item) interaction(s) collapsed, keeping the latest"
            )
        return out


def _to_seconds(col: pd.Series, name: str) -> pd.Series:
    """Unix seconds from numbers or date strings; an unparseable value is an error, not a NaN."""
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col
    else:
        parsed = pd.to_datetime(col, errors="coerce", utc=True)
        bad = parsed.isna() & col.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise EmbedscopeError(f"time field '{name}': row {row} value {col.iloc[row - 1]!r} is not a time")
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize("UTC")
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def normalise(
    frame: pd.DataFrame,
    *,
    user_field: str = "user",
    item_field: str = "item",
    rating_field: str | None = "rating",
    time_field: str | None = "timestamp",
    source: str = "input",
) -> pd.DataFrame:
    """Validate and convert an input table into the stored columns. Rating and time are optional:
    a named field that is absent is an error only when the user asked for it explicitly."""
    columns = [str(c) for c in frame.columns]
    for what, f in (("user", user_field), ("item", item_field)):
        if f not in frame.columns:
            raise EmbedscopeError(f"{source}: {what} field '{f}' not found; columns: {', '.join(columns)}")
    if frame.empty:
        raise EmbedscopeError(f"{source}: no interactions")
    missing = frame[[user_field, item_field]].isna().any(axis=1).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise EmbedscopeError(f"{source}: row {row} has no user or no item")

    def ident(col: pd.Series) -> pd.Series:
        # 12 and 12.0 must be the same id: integral floats (pandas' NaN upcast) are written as ints
        if pd.api.types.is_float_dtype(col) and (col.dropna() % 1 == 0).all():
            col = col.astype("int64")
        return col.astype(str).str.strip()

    out = pd.DataFrame({"user": ident(frame[user_field]), "item": ident(frame[item_field])})
    if rating_field and rating_field in frame.columns:
        rating = pd.to_numeric(frame[rating_field], errors="coerce")
        bad = rating.isna() & frame[rating_field].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise EmbedscopeError(
                f"{source}: row {row}: rating {frame[rating_field].iloc[row - 1]!r} is not a number"
            )
        out["rating"] = rating.astype("float64").to_numpy()
    else:
        out["rating"] = np.nan
    if time_field and time_field in frame.columns:
        out["timestamp"] = _to_seconds(frame[time_field].reset_index(drop=True), time_field).to_numpy()
    else:
        out["timestamp"] = np.nan
    out["seq"] = np.arange(len(out), dtype=np.int64)
    return out


def clean(
    frame: pd.DataFrame, known_items: set[str] | None, *, keep_unknown: bool = False
) -> tuple[pd.DataFrame, dict]:
    """Count (and by default drop) unknown items; collapse duplicate (user, item) pairs to the latest."""
    stats: JSONObject = {"unknown_items": 0, "unknown_examples": [], "duplicates": 0}
    if known_items is not None:
        unknown = ~frame["item"].isin(known_items)
        stats["unknown_items"] = int(unknown.sum())
        stats["unknown_examples"] = list(pd.unique(frame.loc[unknown, "item"])[:5])
        if not keep_unknown:
            frame = frame[~unknown]
    frame = sort_by_time(frame)
    dup = frame.duplicated(["user", "item"], keep="last")
    stats["duplicates"] = int(dup.sum())
    return frame[~dup].reset_index(drop=True), stats


def sort_by_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Per user, oldest first; equal (or missing) timestamps keep input order."""
    return frame.sort_values(["user", "timestamp", "seq"], kind="mergesort", na_position="first")


def path_for(collection: Collection) -> Path:
    return collection.path / INTERACTIONS_FILE


def write_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Temp file in the same folder, fsync, os.replace, fsync the folder: old or new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".interactions-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            frame[COLUMNS].to_parquet(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_interactions(
    collection: Collection,
    source: str | Path | pd.DataFrame,
    *,
    user_field: str = "user",
    item_field: str = "item",
    rating_field: str | None = "rating",
    time_field: str | None = "timestamp",
    fmt: str | None = None,
    keep_unknown: bool = False,
    append: bool = False,
) -> LoadReport:
    """Read interactions (CSV/TSV/JSONL/Parquet, or `fmt="movielens"` for a raw u.data), clean them
    against the collection's items and store them (replacing, or with `append`, adding to what is stored)."""
    from embedscope.sources_movielens import read_movielens_ratings

    if isinstance(source, pd.DataFrame):
        raw, label = source, "input"
    elif fmt == "movielens":
        raw, label = read_movielens_ratings(source), Path(source).name
        user_field, item_field, rating_field, time_field = "user", "item", "rating", "timestamp"
    else:
        raw, label = read_table(source, fmt), Path(source).name
    for what, f in (("rating", rating_field), ("time", time_field)):
        if f and f not in raw.columns and f not in ("rating", "timestamp"):  # explicitly named, absent
            raise EmbedscopeError(
                f"{label}: {what} field '{f}' not found; columns: {', '.join(map(str, raw.columns))}"
            )
    frame = normalise(
        raw,
        user_field=user_field,
        item_field=item_field,
        rating_field=rating_field,
        time_field=time_field,
        source=label,
    )
    rows = len(frame)
    if append and path_for(collection).exists():
        old = read_interactions(collection)
        frame["seq"] += int(old["seq"].max()) + 1
        frame = pd.concat([old, frame], ignore_index=True)
    known = set(collection.item_hashes())
    if not known:
        raise EmbedscopeError(
            f"collection '{collection.name}' has no items; ingest items before interactions"
        )
    frame, stats = clean(frame, known, keep_unknown=keep_unknown)
    if frame.empty:
        raise EmbedscopeError(
            f"{label}: none of the {rows:,} interactions reference items of collection '{collection.name}' "
            f"(e.g. {', '.join(map(repr, stats['unknown_examples']))}); check --item-field"
        )
    path = path_for(collection)
    write_atomic(frame, path)
    return LoadReport(
        rows=rows,
        stored=len(frame),
        users=int(frame["user"].nunique()),
        items=int(frame["item"].nunique()),
        unknown_items=stats["unknown_items"],
        unknown_examples=[str(x) for x in stats["unknown_examples"]],
        unknown_kept=keep_unknown,
        duplicates=stats["duplicates"],
        path=str(path),
    )


def read_interactions(collection: Collection) -> pd.DataFrame:
    path = path_for(collection)
    if not path.exists():
        raise NotFoundError(
            f"collection '{collection.name}' has no interactions; run `embedscope interactions load "
            f"{collection.name} FILE`"
        )
    return pd.read_parquet(path)


class Interactions:
    """An interaction table with the lookups recommenders need: per-user time-ordered histories,
    item popularity, and a sparse user x item matrix."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = sort_by_time(frame).reset_index(drop=True)
        self._hist: dict[str, pd.DataFrame] | None = None

    @classmethod
    def of(cls, collection: Collection) -> Interactions:
        return cls(read_interactions(collection))

    def __len__(self) -> int:
        return len(self.frame)

    def users(self) -> list[str]:
        return list(pd.unique(self.frame["user"]))

    def items(self) -> list[str]:
        return list(pd.unique(self.frame["item"]))

    def _histories(self) -> dict[str, pd.DataFrame]:
        if self._hist is None:
            self._hist = {u: g for u, g in self.frame.groupby("user", sort=False)}
        return self._hist

    def has_user(self, user: str) -> bool:
        return user in self._histories()

    def history(self, user: str) -> pd.DataFrame:
        """The user's interactions, oldest first. Unknown user -> NotFoundError."""
        hist = self._histories().get(str(user))
        if hist is None:
            raise NotFoundError(f"unknown user '{user}': no interactions recorded for this user")
        return hist

    def sequences(self) -> list[list[str]]:
        """Each user's items in time order (the "sentences" item2vec learns from)."""
        return [g["item"].tolist() for g in self._histories().values()]

    def counts(self) -> pd.Series:
        """Interactions per item, most popular first."""
        return self.frame["item"].value_counts()

    def positive_counts(self, min_rating: float = 4.0) -> pd.DataFrame:
        """Per item: n (all ratings) and pos (ratings >= min_rating); for Wilson-bound quality."""
        rated = self.frame.dropna(subset=["rating"])
        g = rated.groupby("item")["rating"]
        return pd.DataFrame({"n": g.size(), "pos": g.apply(lambda r: int((r >= min_rating).sum()))})

    def matrix(self, users: Sequence[str], items: Sequence[str], *, weight: str = "binary") -> sp.csr_matrix:
        """users x items CSR (1 per interaction, or the rating with weight="rating"); rows/cols
        follow the given orders, interactions outside them are left out."""
        urow = {u: n for n, u in enumerate(users)}
        icol = {i: n for n, i in enumerate(items)}
        r = self.frame["user"].map(urow)
        c = self.frame["item"].map(icol)
        ok = (r.notna() & c.notna()).to_numpy()
        vals = self.frame["rating"].to_numpy()[ok] if weight == "rating" else np.ones(int(ok.sum()))
        return sp.csr_matrix(
            (vals.astype(np.float32), (r[ok].astype(int).to_numpy(), c[ok].astype(int).to_numpy())),
            shape=(len(users), len(items)),
        )
