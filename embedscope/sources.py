"""Reading items from CSV, JSON lines and Parquet (pandas/pyarrow), turning rows into Items with a
text field or a template over several fields, and typed metadata. Also BEIR data sets."""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.store.base import Item

FORMATS = ("csv", "jsonl", "parquet")


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        return "jsonl"
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    raise EmbedscopeError(f"cannot tell the format of '{path.name}'; pass --format csv|jsonl|parquet")


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


def read_table(path: str | Path, fmt: str | None = None, *, encoding: str = "utf-8") -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"file not found: {path}")
    fmt = fmt or detect_format(path)
    try:
        if fmt == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            # on_bad_lines="error": a ragged row is an error, never silently dropped
            return pd.read_csv(path, sep=sep, encoding=encoding, on_bad_lines="error", keep_default_na=True)
        if fmt == "jsonl":
            return pd.DataFrame.from_records(read_jsonl(path))
        if fmt == "parquet":
            return pd.read_parquet(path)
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


def _plain(value: Any) -> Any:
    """NumPy/pandas scalars -> JSON-friendly Python values; NaN -> None (numbers stay numbers)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
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
        if self.template:
            values = {f: "" if row.get(f) is None else row.get(f) for f in self.fields()}
            return self.template.format(**values).strip()
        value = row.get(self.field or "")
        return "" if value is None else str(value).strip()


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
    ids = frame[id_field]
    if ids.isna().any():
        row = int(ids.isna().to_numpy().nonzero()[0][0]) + 1
        raise EmbedscopeError(f"{source}: row {row} has no value in id field '{id_field}'")
    ids = ids.map(lambda v: str(_plain(v)))
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise EmbedscopeError(
            f"{source}: {len(dup)} duplicate id(s) in '{id_field}', e.g. {', '.join(map(repr, dup[:5]))}"
        )
    records = frame.to_dict(orient="records")
    items, empty = [], []
    for item_id, row in zip(ids, records, strict=True):
        row = {k: _plain(v) for k, v in row.items()}
        body = text.render(row)
        if not body:
            empty.append(item_id)
            continue
        items.append(Item(item_id, body, {f: row.get(f) for f in meta_fields}))
    if empty:
        raise EmbedscopeError(
            f"{source}: {len(empty)} item(s) have empty text, e.g. {', '.join(map(repr, empty[:5]))}; "
            "fix them or remove them from the input"
        )
    return items


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
def wikipedia_sample(max_chars: int = 1500) -> pd.DataFrame:
    """English Wikipedia articles from the excerpt inside gensim's test data (no network needed)."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    path = datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    rows = []
    with bz2.open(path) as fh:
        for title, raw, page_id in extract_pages(fh):
            text = " ".join(filter_wiki(raw).split())
            if not text or text.upper().startswith("#REDIRECT") or len(text) < 200:
                continue
            rows.append({"id": page_id, "title": title, "text": text[:max_chars]})
    return pd.DataFrame(rows)


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
