"""Reading items from CSV, JSON lines and Parquet (pandas/pyarrow), turning rows into Items with a
text field or a template over several fields, and typed metadata. Also BEIR data sets.

What a reader promises (tests/test_sources.py checks it, partly with hypothesis):
- an id is the string exactly as written: `007` stays `007` (the id column is read as text, never
  as a number), and a blank id is an error naming its row;
- a CSV row with more or fewer fields than the header is an error naming its line;
- metadata are JSON values: numbers stay numbers, lists stay lists, timestamps become ISO 8601
  strings, missing values (NaN, NaT, null) become null; infinite numbers and bytes are errors that
  name the row and field (JSON has no infinity, and binary data is no metadata: leave the field out
  with `--metadata`);
- an item whose text is empty (every field of the template empty) is an error naming it; a text
  longer than MAX_TEXT_CHARS is an error naming it.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import json
import math
import string
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.store.base import Item

FORMATS = ("csv", "jsonl", "parquet")
#: the longest item text accepted; encoders read far less (MiniLM: 256 word pieces, about 1,000
#: characters), and tokenising a multi-megabyte text costs hundreds of bytes of memory per character
MAX_TEXT_CHARS = 1_000_000


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        return "jsonl"
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    raise EmbedscopeError(f"cannot tell the format of '{path.name}'; pass --format csv|jsonl|parquet")


def _id_text(value: Any) -> Any:
    """An id as text, exactly as written: a JSON number 7 is '7', never '7.0'; missing stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        return json.dumps(value)
    return str(value)


def _check_csv_fields(path: Path, sep: str, encoding: str) -> None:
    """Every row has as many fields as the header, or an error names the first line that does not.

    pandas errors on too many fields but pads a row with too few with nulls (silent damage), so
    the field counts are checked with the standard `csv` module, which parses quoting the same way
    (RFC 4180) and knows on which line a record with embedded newlines starts."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long text field is not a malformed row
    with open(path, encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header: list[str] | None = None
        line = 1
        for row in reader:
            if row:
                if header is None:
                    header = row
                elif len(row) != len(header):
                    raise EmbedscopeError(
                        f"{path.name}: malformed CSV: line {line} has {len(row)} field(s), the header "
                        f"has {len(header)}; quote values that contain '{sep}' or fix the row"
                    )
            line = reader.line_num + 1


def _read_csv(path: Path, encoding: str, id_field: str | None) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    _check_csv_fields(path, sep, encoding)
    read = {"sep": sep, "encoding": encoding, "on_bad_lines": "error"}
    frame = pd.read_csv(path, dtype={id_field: str} if id_field else None, **read)
    if id_field in frame.columns and frame[id_field].isna().any():
        # pandas read ids such as 'NA' or 'null' as missing: read the column again, as written
        ids = pd.read_csv(path, usecols=[id_field], dtype=str, keep_default_na=False, **read)[id_field]
        frame[id_field] = ids.where(ids != "", None)
    return frame


def _read_parquet(path: Path, id_field: str | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if id_field in table.column_names and not pa.types.is_string(table.schema.field(id_field).type):
        # an integer id column read through pandas becomes float when it has a null: 7 -> '7.0'
        column = table.column(id_field)
        if pa.types.is_integer(column.type) or pa.types.is_large_string(column.type):
            table = table.set_column(table.column_names.index(id_field), id_field, column.cast(pa.string()))
    return table.to_pandas()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON lines with the line number in every error (pandas' reader reports none)."""
    records = []
    with open(path, encoding="utf-8") as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EmbedscopeError(
                        f"{path.name}: line {lineno} is not valid JSON ({exc.msg})"
                    ) from None
                if not isinstance(obj, dict):
                    raise EmbedscopeError(f"{path.name}: line {lineno} is not a JSON object")
                records.append(obj)
        except UnicodeDecodeError as exc:
            raise EmbedscopeError(f"{path.name}: not UTF-8 text (byte {exc.start} of a line)") from None
    return records


def read_table(
    path: str | Path, fmt: str | None = None, *, encoding: str = "utf-8", id_field: str | None = None
) -> pd.DataFrame:
    """The file as a frame; `id_field`, when given, is read as text exactly as written."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"file not found: {path}")
    fmt = fmt or detect_format(path)
    try:
        if fmt == "csv":
            return _read_csv(path, encoding, id_field)
        if fmt == "jsonl":
            return _records_frame(read_jsonl(path), id_field)
        if fmt == "parquet":
            return _read_parquet(path, id_field)
    except UnicodeDecodeError as exc:
        raise EmbedscopeError(
            f"{path.name}: not {encoding} text (invalid byte at position {exc.start}); pass --encoding"
        ) from None
    except pd.errors.ParserError as exc:
        raise EmbedscopeError(f"{path.name}: malformed CSV: {str(exc).strip()}") from None
    except pd.errors.EmptyDataError:
        raise EmbedscopeError(f"{path.name}: the file is empty") from None
    except (OSError, ValueError) as exc:
        raise EmbedscopeError(f"{path.name}: cannot read as {fmt}: {exc}") from None
    raise EmbedscopeError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")


class _BadValue(ValueError):
    """A value JSON metadata cannot hold; `rows_to_items` adds the row and the field."""


def _plain(value: Any) -> Any:
    """A value as JSON: NumPy/pandas scalars -> Python values, arrays (Parquet lists) -> lists,
    timestamps -> ISO 8601 strings, NaN/NaT/None -> None. Infinite numbers and bytes raise _BadValue."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        if isinstance(value, np.datetime64 | np.timedelta64):
            value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
            if value is pd.NaT:
                return None
        else:
            value = value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        raise _BadValue(
            f"holds binary data ({len(bytes(value))} bytes, e.g. {base64.b64encode(bytes(value)[:12])!r}...)"
        )
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise _BadValue(f"is {value} (JSON has no infinity)")
    if isinstance(value, pd.Timedelta):
        return value.isoformat()
    if isinstance(value, dt.datetime | dt.date | dt.time):  # pd.Timestamp is a datetime
        return value.isoformat()
    return value


@dataclass
class TextSpec:
    """Which field is the text, or a template such as '{title}. {description}'."""

    field: str | None = None
    template: str | None = None

    def fields(self) -> list[str]:
        if self.template:
            return [f for _, f, _, _ in string.Formatter().parse(self.template) if f]
        return [self.field] if self.field else []

    def render(self, row: dict[str, Any]) -> str:
        """The item's text; "" when every field it is built from is empty (so a template such as
        '{title}. {description}' over two empty fields is empty text, not ".")."""
        values = {f: "" if row.get(f) is None else row.get(f) for f in self.fields()}
        if not any(str(v).strip() for v in values.values()):
            return ""
        if self.template:
            return self.template.format(**values).strip()
        return str(values[self.field or ""]).strip()


def rows_to_items(
    frame: pd.DataFrame,
    *,
    id_field: str,
    text: TextSpec,
    metadata: Sequence[str] | None = None,
    source: str = "input",
) -> list[Item]:
    """Validate and convert. Errors name the problem and the offending ids/rows."""
    columns = list(frame.columns)
    if frame.empty:
        raise EmbedscopeError(f"{source}: no rows to ingest")
    if id_field not in columns:
        raise EmbedscopeError(
            f"{source}: id field '{id_field}' not found; columns: {', '.join(map(str, columns))}"
        )
    missing = [f for f in text.fields() if f not in columns]
    if not text.fields():
        raise EmbedscopeError(
            "give the text field (--text FIELD) or a template (--template '{title}. {description}')"
        )
    if missing:
        raise EmbedscopeError(
            f"{source}: text field(s) {', '.join(missing)} not found; columns: {', '.join(columns)}"
        )
    meta_fields = list(metadata) if metadata is not None else [c for c in columns if c != id_field]
    bad_meta = [f for f in meta_fields if f not in columns]
    if bad_meta:
        raise EmbedscopeError(
            f"{source}: metadata field(s) {', '.join(bad_meta)} not found; columns: {', '.join(columns)}"
        )
    try:
        ids = pd.Series([_id_text(_plain(v)) for v in frame[id_field]], dtype=object)
    except _BadValue as exc:
        raise EmbedscopeError(f"{source}: an id in '{id_field}' {exc}; ids are text") from None
    blank = ids.map(lambda v: v is None or not v.strip())
    if blank.any():
        row = int(blank.to_numpy().nonzero()[0][0]) + 1
        raise EmbedscopeError(f"{source}: row {row} has no value (or only spaces) in id field '{id_field}'")
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise EmbedscopeError(
            f"{source}: {len(dup)} duplicate id(s) in '{id_field}', e.g. {', '.join(map(repr, dup[:5]))}"
        )
    records = frame.to_dict(orient="records")
    wanted = set(meta_fields) | set(text.fields())
    items, empty, too_long = [], [], []
    for n, (item_id, raw) in enumerate(zip(ids, records, strict=True), 1):
        row = {}
        for k, v in raw.items():
            if k not in wanted:
                continue
            try:
                row[k] = _plain(v)
            except _BadValue as exc:
                raise EmbedscopeError(
                    f"{source}: row {n} (id {item_id!r}), field '{k}' {exc}; fix the value or leave the "
                    "field out (--metadata lists the fields to keep)"
                ) from None
        body = text.render(row)
        if not body:
            empty.append(item_id)
        elif len(body) > MAX_TEXT_CHARS:
            too_long.append(item_id)
        else:
            items.append(Item(item_id, body, {f: row.get(f) for f in meta_fields}))
    if empty:
        raise EmbedscopeError(
            f"{source}: {len(empty)} item(s) have empty text, e.g. {', '.join(map(repr, empty[:5]))}; "
            "fix them or remove them from the input"
        )
    if too_long:
        raise EmbedscopeError(
            f"{source}: {len(too_long)} item(s) have a text longer than {MAX_TEXT_CHARS:,} characters, e.g. "
            f"{', '.join(map(repr, too_long[:5]))}; split them into several items or shorten them"
        )
    return items


def _records_frame(records: Sequence[Mapping[str, Any]], id_field: str | None) -> pd.DataFrame:
    """Records as a frame, their ids as text exactly as written (never parsed as numbers)."""
    if id_field:
        records = [{**r, id_field: _id_text(r[id_field])} if id_field in r else r for r in records]
    return pd.DataFrame.from_records(records)


def load_items(
    source: str | Path | pd.DataFrame | Sequence[dict[str, Any]],
    *,
    id_field: str = "id",
    text: str | None = None,
    template: str | None = None,
    metadata: Sequence[str] | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
    default_text: dict[str, Any] | None = None,
) -> tuple[list[Item], TextSpec]:
    """Read and validate items from a file, a DataFrame or records, before anything is stored.

    The text is `text` or `template`, else `default_text` (the collection's stored choice), else
    the field 'text'. Returns the items and the text choice used."""
    if isinstance(source, pd.DataFrame):
        frame, label = source, "input"
    elif isinstance(source, str | Path):
        frame = read_table(source, fmt, encoding=encoding, id_field=id_field)
        label = Path(source).name
    else:
        records = list(source)
        if not all(isinstance(r, Mapping) for r in records):
            raise EmbedscopeError("records must be objects (field -> value)")
        frame, label = _records_frame(records, id_field), "input"
    spec = TextSpec(field=text, template=template)
    if not spec.fields():
        spec = TextSpec(**(default_text or {"field": "text"}))
    items = rows_to_items(frame, id_field=id_field, text=spec, metadata=metadata, source=label)
    return items, spec


# --- BEIR -------------------------------------------------------------------------------------
@dataclass
class BeirDataset:
    corpus: dict[str, dict[str, str]]  # doc id -> {"title", "text"}
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}
    warnings: list[str]


def iter_qrels(
    path: Path, *, columns: tuple[int, ...] = (3, 4), sep: str | None = None
) -> Iterator[tuple[str, str, int]]:
    """(query id, doc id, relevance) per judgement line, with line numbers in every error.

    3 columns is BEIR's TSV (`query-id corpus-id score`, optional header), 4 is TREC's
    (`qid 0 docid rel`); `columns` says which the caller accepts, `sep` None splits on whitespace."""
    expected = " or ".join({3: "3 (BEIR)", 4: "4 (TREC)"}[c] for c in columns) if len(columns) > 1 else "3"
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                parts = line.rstrip("\r\n").split(sep)
                if lineno == 1 and parts[0] == "query-id":
                    continue
                if len(parts) not in columns:
                    raise EmbedscopeError(
                        f"{path.name}: line {lineno} has {len(parts)} columns, expected {expected}"
                    )
                qid, did, rel = (
                    (parts[0], parts[1], parts[2]) if len(parts) == 3 else (parts[0], parts[2], parts[3])
                )
                try:
                    yield qid, did, int(rel)
                except ValueError:
                    raise EmbedscopeError(
                        f"{path.name}: line {lineno}: relevance score '{rel}' is not an integer"
                    ) from None
    except UnicodeDecodeError as exc:
        raise EmbedscopeError(f"{path.name}: not UTF-8 text (byte {exc.start} of a line)") from None


def load_beir(directory: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR-format data set, checking qrels against corpus and queries.

    Judgements that reference unknown documents or queries, and queries without judgements in
    `split`, are counted in `warnings` (BEIR's own packages contain some); an empty or unusable
    qrels file is an error."""
    d = Path(directory)
    if not d.is_dir():
        raise NotFoundError(f"BEIR data set folder not found: {d}")
    qrels_path = d / "qrels" / f"{split}.tsv"
    needed = [d / "corpus.jsonl", d / "queries.jsonl", qrels_path]
    absent = [str(p.relative_to(d)) for p in needed if not p.exists()]
    if absent:
        splits = sorted(p.stem for p in (d / "qrels").glob("*.tsv")) if (d / "qrels").is_dir() else []
        hint = f" (qrels splits present: {', '.join(splits)})" if splits and not qrels_path.exists() else ""
        raise NotFoundError(f"{d}: not a BEIR data set, missing {', '.join(absent)}{hint}")
    corpus = {}
    for n, rec in enumerate(read_jsonl(needed[0]), 1):
        if "_id" not in rec:
            raise EmbedscopeError(f"{needed[0].name}: record {n} has no '_id'")
        corpus[str(rec["_id"])] = {"title": str(rec.get("title") or ""), "text": str(rec.get("text") or "")}
    if not corpus:
        raise EmbedscopeError(f"{needed[0].name}: no documents")
    queries = {}
    for n, rec in enumerate(read_jsonl(needed[1]), 1):
        if "_id" not in rec:
            raise EmbedscopeError(f"{needed[1].name}: record {n} has no '_id'")
        queries[str(rec["_id"])] = str(rec.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    warnings = []
    unknown_docs = unknown_queries = lines = 0
    for qid, did, rel in iter_qrels(qrels_path, columns=(3,), sep="\t"):
        lines += 1
        if did not in corpus:
            unknown_docs += 1
            continue
        if qid not in queries:
            unknown_queries += 1
            continue
        qrels.setdefault(qid, {})[did] = rel
    if not lines:
        raise EmbedscopeError(f"{qrels_path}: no judgements (the file is empty)")
    if unknown_docs:
        warnings.append(f"{unknown_docs} judgement(s) reference documents not in the corpus (ignored)")
    if unknown_queries:
        warnings.append(f"{unknown_queries} judgement(s) reference queries not in queries.jsonl (ignored)")
    if not qrels:
        raise EmbedscopeError(
            f"{qrels_path}: no usable judgements (all {lines} reference unknown documents or queries)"
        )
    unjudged = len(queries) - len(qrels)
    if unjudged:
        warnings.append(
            f"{unjudged} of {len(queries)} queries have no judgements in split '{split}' (not evaluated)"
        )
    no_relevant = sum(1 for rels in qrels.values() if not any(r > 0 for r in rels.values()))
    if no_relevant:
        warnings.append(f"{no_relevant} judged queries have no relevant document (they score 0)")
    return BeirDataset(corpus, queries, qrels, warnings)


# --- corpora that ship with installed packages (the demo's offline fallback) --------------------
def fetch_url(url: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Download a file once into a cache (with a progress bar); later calls reuse it."""
    import hashlib
    import os
    import tempfile
    from urllib.parse import urlparse

    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    cache_dir = Path(cache_dir or os.environ.get("EMBEDSCOPE_CACHE") or Path.home() / ".cache" / "embedscope")
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urlparse(url).path).name or "download"
    target = cache_dir / f"{hashlib.sha1(url.encode()).hexdigest()[:12]}-{name}"
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".part-")
    try:
        # the file is opened first so its descriptor is closed on every path, errors included
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, follow_redirects=True, timeout=30) as resp:
            if resp.status_code != 200:
                raise EmbedscopeError(f"download failed: {url} answered HTTP {resp.status_code}")
            total = int(resp.headers.get("content-length") or 0) or None
            with (
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    disable=not progress,
                    transient=True,
                ) as bar,
            ):
                task = bar.add_task(f"downloading {name}", total=total)
                for chunk in resp.iter_bytes():
                    out.write(chunk)
                    bar.update(task, advance=len(chunk))
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, target)  # atomic: a half-downloaded file never looks cached
    except httpx.HTTPError as exc:
        raise EmbedscopeError(f"download failed: {url}: {exc.__class__.__name__}: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
