"""Reading items from CSV, JSON lines and Parquet (pandas/pyarrow), turning rows into Items with a
text field or a template over several fields, and typed metadata. Also BEIR data sets.

What a reader promises (tests/test_sources.py checks it, partly with hypothesis):
- an id is the string exactly as written: `007` stays `007` (the id column is read as text, never
  as a number), and a blank id is an error naming its row;
- a CSV row with more or fewer fields than the header is an error naming its line;
- metadata are JSON values, one type per column (embedscope/field_types.py has the rule): CSV text
  becomes a number only when its text survives the number (`02139`, `+1`, 16-digit strings stay
  text), numbers stay numbers (Parquet's nullable integers too, inside structs as well), decimals
  become exact strings with their scale ("19.90"), lists stay lists, timestamps become ISO 8601
  strings, missing values (NaN, NaT, null) become null; infinite numbers and bytes are errors that
  name the row and field (JSON has no infinity, and binary data is no metadata: leave the field out
  with `--metadata`);
- the template's fields that are not metadata are kept apart (`Item.source`), so the text can be
  rebuilt when one of them changes, without their becoming filter fields;
- an item whose text is empty (every field of the template empty) is an error naming it; a text
  longer than MAX_TEXT_CHARS is an error naming it.
"""

from __future__ import annotations

import base64
import codecs
import csv
import datetime as dt
import decimal
import json
import math
import string
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from embedscope import field_types
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.jsontypes import JSONMapping, JSONObject, JSONValue
from embedscope.store.base import Item
from embedscope.validation import id_problem, text_problem

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


def _id_text(value: JSONValue) -> JSONValue:
    """An id as text, exactly as written: a JSON number 7 is '7', never '7.0'. Anything else is
    left as it is, for `rows_to_items` to accept (text) or refuse naming its row (validation.py)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


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


def _read_csv(path: Path, encoding: str, id_field: str | None, *, exact: bool) -> pd.DataFrame:
    """`exact`: every value as the text written (types are decided later, per column, by
    field_types); else pandas' own typing (the interactions reader wants it)."""
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    _check_csv_fields(path, sep, encoding)
    read = {"sep": sep, "encoding": encoding, "on_bad_lines": "error"}
    frame = pd.read_csv(path, dtype=str if exact else ({id_field: str} if id_field else None), **read)
    if id_field in frame.columns and frame[id_field].isna().any():
        # pandas read ids such as 'NA' or 'null' as missing: read the column again, as written
        ids = pd.read_csv(path, usecols=[id_field], dtype=str, keep_default_na=False, **read)[id_field]
        frame[id_field] = ids.where(ids != "", None)
    return frame


def _read_parquet(path: Path, id_field: str | None, *, exact: bool) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if exact:
        # Python values column by column: pandas would turn an integer column with a null (also
        # inside a struct) into floats (2001 -> 2001.0) and decimals into floats (losing the scale)
        return pd.DataFrame({n: table.column(n).to_pylist() for n in table.column_names}, dtype=object)
    if id_field in table.column_names and not pa.types.is_string(table.schema.field(id_field).type):
        # an integer id column read through pandas becomes float when it has a null: 7 -> '7.0'
        column = table.column(id_field)
        if pa.types.is_integer(column.type) or pa.types.is_large_string(column.type):
            table = table.set_column(table.column_names.index(id_field), id_field, column.cast(pa.string()))
    return table.to_pandas()


def check_encoding(encoding: str) -> str:
    """The encoding's name, or a one-line error saying how to name one."""
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError, ValueError):
        raise EmbedscopeError(
            f"unknown encoding {encoding!r}; give a name Python knows, e.g. utf-8, utf-8-sig, latin-1, "
            "cp1252, utf-16 (the list: https://docs.python.org/3/library/codecs.html#standard-encodings)"
        ) from None


def read_jsonl(path: Path, encoding: str = "utf-8") -> list[JSONObject]:
    """JSON lines with the line number in every error (pandas' reader reports none). A UTF-8 byte
    order mark is skipped, as the CSV reader does."""
    if check_encoding(encoding) == "utf-8":
        encoding = "utf-8-sig"
    records = []
    with open(path, encoding=encoding) as fh:
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
            raise EmbedscopeError(
                f"{path.name}: not {encoding.removesuffix('-sig')} text (byte {exc.start} of a line); "
                "pass --encoding"
            ) from None
    return records


def read_table(
    path: str | Path,
    fmt: str | None = None,
    *,
    encoding: str = "utf-8",
    id_field: str | None = None,
    exact: bool = False,
) -> pd.DataFrame:
    """The file as a frame; `id_field`, when given, is read as text exactly as written. `exact`
    (what ingest reads): CSV values as the text written, JSON and Parquet values as Python values
    (integers with nulls stay integers), for field_types to type per column."""
    path = Path(path)
    check_encoding(encoding)
    if not path.exists():
        raise NotFoundError(f"file not found: {path}")
    fmt = fmt or detect_format(path)
    try:
        if fmt == "csv":
            return _read_csv(path, encoding, id_field, exact=exact)
        if fmt == "jsonl":
            return _records_frame(read_jsonl(path, encoding), id_field, path.name, exact=exact)
        if fmt == "parquet":
            return _read_parquet(path, id_field, exact=exact)
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


def _plain(value: object) -> JSONValue:
    """A value as JSON: NumPy/pandas scalars -> Python values, arrays (Parquet lists) -> lists,
    timestamps -> ISO 8601 strings, decimals -> exact strings ("19.90": JSON numbers are doubles,
    which would lose the scale and digits past the 15th), NaN/NaT/None -> None. Infinite numbers and
    bytes raise _BadValue."""
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
        if value.is_infinite():
            raise _BadValue(f"is {value} (JSON has no infinity)")
        return None if value.is_nan() else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise _BadValue(f"is {value} (JSON has no infinity)")
    if isinstance(value, dt.timedelta):
        return pd.Timedelta(value).isoformat()
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

    def render(self, row: JSONMapping) -> str:
        """The item's text; "" when every field it is built from is empty (so a template such as
        '{title}. {description}' over two empty fields is empty text, not ".")."""
        values = {f: "" if row.get(f) is None else row.get(f) for f in self.fields()}
        if not any(str(v).strip() for v in values.values()):
            return ""
        if self.template:
            return self.template.format(**values).strip()
        return str(values[self.field or ""]).strip()

    def describe(self) -> str:
        return f"the template '{self.template}'" if self.template else f"the field '{self.field}'"


@dataclass
class IngestSpec:
    """How records become items, stored with the collection so that every later ingest, Python
    upsert and HTTP write reads records the same way (an item looks the same however it arrived):
    the id field, the text (a field or a template), the metadata fields kept (None: every field
    but the id) and each kept field's type (field_types: inferred, or `explicit` from `--types`)."""

    id_field: str = "id"
    text: TextSpec = _field(default_factory=lambda: TextSpec(field="text"))
    metadata: list[str] | None = None
    types: dict[str, str] = _field(default_factory=dict)
    explicit: dict[str, str] = _field(default_factory=dict)

    def source_fields(self) -> list[str]:
        """The text's fields that are not metadata: kept apart, to rebuild the text (Item.source)."""
        if self.metadata is None:
            return []
        return [f for f in self.text.fields() if f not in self.metadata and f != self.id_field]

    def kept_fields(self) -> list[str]:
        """Every field an item keeps (metadata and source), when the metadata are a chosen list."""
        return [*(self.metadata or []), *self.source_fields()]

    def settings(self) -> JSONObject:
        """As the collection's settings (the keys `from_settings` reads)."""
        return {
            "id_field": self.id_field,
            "text_spec": {"field": self.text.field, "template": self.text.template},
            "metadata_fields": self.metadata,
            "field_types": self.types,
            "explicit_types": self.explicit,
        }

    @classmethod
    def from_settings(cls, get: Callable[[str], JSONValue]) -> IngestSpec | None:
        """The spec a collection stored (None for a collection that never ingested)."""
        id_field, text = get("id_field"), get("text_spec")
        if id_field is None and text is None:
            return None
        return cls(
            id_field=id_field or "id",
            text=TextSpec(**(text or {"field": "text"})),
            metadata=get("metadata_fields"),
            types=dict(get("field_types") or {}),
            explicit=dict(get("explicit_types") or {}),
        )


def _check_id_column(frame: pd.DataFrame, spec: IngestSpec, source: str) -> None:
    columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise EmbedscopeError(f"{source}: no rows to ingest")
    if spec.id_field not in columns:
        raise EmbedscopeError(
            f"{source}: id field '{spec.id_field}' not found; columns: {', '.join(columns)}"
        )


def _check_columns(frame: pd.DataFrame, spec: IngestSpec, source: str, *, fill: bool, stored: bool) -> None:
    columns = [str(c) for c in frame.columns]
    if not spec.text.fields():
        raise EmbedscopeError(
            "give the text field (--text FIELD) or a template (--template '{title}. {description}')"
        )
    missing = [f for f in spec.text.fields() if f not in columns]
    if missing:
        raise EmbedscopeError(
            f"{source}: text field(s) {', '.join(missing)} not found; columns: {', '.join(columns)}"
        )
    bad_meta = [f for f in spec.metadata or [] if f not in columns]
    if bad_meta and not fill:
        whose, hint = ("the collection's ", " (choose the fields with --metadata)") if stored else ("", "")
        raise EmbedscopeError(
            f"{source}: {whose}metadata field(s) {', '.join(bad_meta)} not found; "
            f"columns: {', '.join(columns)}{hint}"
        )
    bad_types = [f for f in spec.explicit if f == spec.id_field]
    if bad_types:
        raise EmbedscopeError(f"--types: '{bad_types[0]}' is the id field; ids are always text")


def _ids(frame: pd.DataFrame, id_field: str, source: str) -> list[str]:
    try:
        ids = pd.Series([_id_text(_plain(v)) for v in frame[id_field]], dtype=object)
    except _BadValue as exc:
        raise EmbedscopeError(f"{source}: an id in '{id_field}' {exc}; ids are text") from None
    for row, value in enumerate(ids, 1):
        problem = None if value is None else id_problem(value)
        if problem and problem != "is blank":  # blank ids get their own message below
            raise EmbedscopeError(f"{source}: row {row}: the id {value!r:.60} in '{id_field}' {problem}")
    blank = ids.map(lambda v: v is None or not v.strip())
    if blank.any():
        row = int(blank.to_numpy().nonzero()[0][0]) + 1
        raise EmbedscopeError(f"{source}: row {row} has no value (or only spaces) in id field '{id_field}'")
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise EmbedscopeError(
            f"{source}: {len(dup)} duplicate id(s) in '{id_field}', e.g. {', '.join(map(repr, dup[:5]))}"
        )
    return ids.tolist()


def rows_to_items(
    frame: pd.DataFrame,
    spec: IngestSpec,
    *,
    source: str = "input",
    from_text: bool = False,
    stored_types: Mapping[str, str] | None = None,
    fill_missing: bool = False,
    stored_metadata: bool = False,
) -> tuple[list[Item], dict[str, str]]:
    """Validate and convert; returns the items and the type of each kept field (field_types).

    `from_text`: the values are text as written (CSV). `stored_types`: the collection's types, which
    win while the values fit them. `fill_missing`: chosen metadata fields absent from the records
    are null (records sent over HTTP), instead of an error (a file); `stored_metadata`: the chosen
    fields are the collection's (the error says so). Errors name the problem and the offending
    ids/rows."""
    _check_id_column(frame, spec, source)
    ids = _ids(frame, spec.id_field, source)
    _check_columns(frame, spec, source, fill=fill_missing, stored=stored_metadata)
    columns = [str(c) for c in frame.columns]
    meta_fields = spec.metadata if spec.metadata is not None else [c for c in columns if c != spec.id_field]
    kept = list(dict.fromkeys([*meta_fields, *spec.text.fields()]))
    present = [f for f in kept if f in columns]
    rows: list[JSONObject] = []
    for n, (item_id, raw) in enumerate(zip(ids, frame.to_dict(orient="records"), strict=True), 1):
        row = {}
        for k in present:
            try:
                row[k] = _plain(raw[k])
            except _BadValue as exc:
                raise EmbedscopeError(
                    f"{source}: row {n} (id {item_id!r}), field '{k}' {exc}; fix the value or leave the "
                    "field out (--metadata lists the fields to keep)"
                ) from None
        rows.append(row)
    types, typed = _type_columns(rows, present, ids, spec, source, from_text, stored_types or {})
    source_fields = [f for f in spec.text.fields() if f not in meta_fields]
    items, empty, too_long = [], [], []
    for item_id, row, values in zip(ids, rows, typed, strict=True):
        body = spec.text.render(row)  # the text as written: CSV's "4.50" stays "4.50" in it
        if not body:
            empty.append(item_id)
        elif len(body) > MAX_TEXT_CHARS:
            too_long.append(item_id)
        else:
            meta = {f: values.get(f) for f in meta_fields}
            items.append(Item(item_id, body, meta, {f: values.get(f) for f in source_fields}))
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
    return items, types


def _type_columns(
    rows: list[JSONObject],
    fields: list[str],
    ids: list[str],
    spec: IngestSpec,
    source: str,
    from_text: bool,
    stored: Mapping[str, str],
) -> tuple[dict[str, str], list[JSONObject]]:
    """Each field's type (explicit, else stored while it fits, else the narrowest that fits) and
    the rows' values converted to it."""
    types: dict[str, str] = {}
    typed: list[JSONObject] = [{} for _ in rows]
    for f in fields:
        values = [r.get(f) for r in rows]
        kind = spec.explicit.get(f)
        if kind is not None:
            misfit = field_types.first_misfit(values, kind)
            if misfit is not None:
                n, why = misfit
                raise EmbedscopeError(
                    f"{source}: row {n + 1} (id {ids[n]!r}), field '{f}': {values[n]!r} {why}, but the "
                    f"field's type is {kind} (--types); fix the value or give another type"
                )
        else:
            kind = field_types.column_type(values, from_text=from_text, stored=stored.get(f))
        if kind is None:
            continue
        types[f] = kind
        for out, v in zip(typed, values, strict=True):
            out[f] = field_types.convert(v, kind)
    return types, typed


def _record_problem(record: JSONMapping, id_field: str | None) -> str | None:
    for key, value in record.items():
        if key == id_field:
            problem = None if value is None else id_problem(value)
            if problem and problem != "is blank":  # blank ids get their own message, with the others
                return f"the id {value!r:.60} in '{key}' {problem}"
        elif problem := text_problem(key):
            return f"a field name {key!r:.40} {problem}"
        elif problem := text_problem(value):
            return f"field '{key}' {problem}"
    return None


def _records_frame(
    records: Sequence[JSONMapping], id_field: str | None, source: str = "input", *, exact: bool
) -> pd.DataFrame:
    """Records as a frame, their ids as text exactly as written (never parsed as numbers);
    `exact`: values as given (pandas would turn integers with a null into floats). A string no
    store keeps (NUL, a lone surrogate, which pandas' text columns cannot even hold) is an error
    naming its row and field, before the frame is made (validation.py)."""
    for row, record in enumerate(records, 1):
        problem = _record_problem(record, id_field)
        if problem:
            raise EmbedscopeError(f"{source}: row {row}: {problem}; fix it or leave it out")
    if id_field:
        records = [{**r, id_field: _id_text(r[id_field])} if id_field in r else r for r in records]
    if exact:
        return pd.DataFrame(list(records), dtype=object)
    return pd.DataFrame.from_records(records)


#: what items are read from: a file (CSV, JSON lines, Parquet), a DataFrame, or records
Source: TypeAlias = str | Path | pd.DataFrame | Sequence[JSONMapping]


def load_items(
    source: Source,
    *,
    id_field: str | None = None,
    text: str | None = None,
    template: str | None = None,
    metadata: Sequence[str] | None = None,
    types: str | Mapping[str, str] | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
    from_text: bool | None = None,
    stored: IngestSpec | None = None,
    replace: bool = False,
) -> tuple[list[Item], IngestSpec]:
    """Read and validate items from a file, a DataFrame or records, before anything is stored.

    What is not given comes from `stored` (the collection's spec), else the defaults: the id field
    'id', the text field 'text', every field as metadata. `types` ("zip=text,year=int") adds to the
    stored explicit types; the other fields' stored types are kept while the values fit them (not
    with `replace`, which makes the collection equal to this input). `from_text`: the values are
    text as written (default: for CSV files). Returns the items and the spec to store."""
    explicit = {**(stored.explicit if stored else {}), **field_types.parse_types(types)}
    spec = IngestSpec(
        id_field=id_field or (stored.id_field if stored else "id"),
        text=TextSpec(field=text, template=template),
        metadata=list(metadata) if metadata is not None else (stored.metadata if stored else None),
        explicit=explicit,
    )
    if not spec.text.fields():
        spec.text = stored.text if stored else TextSpec(field="text")
    label = "input"
    fill_records = False  # records (HTTP, Python) may leave out a stored metadata field: it is null
    if isinstance(source, pd.DataFrame):
        frame = source
    elif isinstance(source, str | Path):
        path = Path(source)
        check_encoding(encoding)
        fmt = fmt or (detect_format(path) if path.exists() else None)
        frame = read_table(path, fmt, encoding=encoding, id_field=spec.id_field, exact=True)
        label = path.name
        from_text = fmt == "csv" if from_text is None else from_text
    else:
        records = list(source)
        if not all(isinstance(r, Mapping) for r in records):
            raise EmbedscopeError("records must be objects (field -> value)")
        frame = _records_frame(records, spec.id_field, exact=True)
        fill_records = True
    columns = [str(c) for c in frame.columns]
    if id_field is None and stored is not None and spec.id_field not in columns and not frame.empty:
        raise EmbedscopeError(
            f"{label}: the collection's id field '{spec.id_field}' not found; columns: {', '.join(columns)} "
            "(name the id field with --id-field; --replace re-keys the collection)"
        )
    unknown = sorted(set(field_types.parse_types(types)) - set(columns))
    if unknown:
        raise EmbedscopeError(
            f"--types names {', '.join(unknown)}, not in {label}; columns: {', '.join(columns)}"
        )
    stored_types = stored.types if stored and not replace else {}
    items, found = rows_to_items(
        frame,
        spec,
        source=label,
        from_text=bool(from_text),
        stored_types=stored_types,
        fill_missing=metadata is None and fill_records,
        stored_metadata=metadata is None and stored is not None,
    )
    kept = {*spec.kept_fields(), *spec.text.fields()} if spec.metadata is not None else None
    spec.types = {f: t for f, t in {**stored_types, **found}.items() if kept is None or f in kept}
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
