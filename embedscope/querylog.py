"""The query log: one JSON line per API request with what was asked and which ids came back.

The server writes it (serve/state.py) and drift reads it back (evaluate/shift.py), so it lives
below both. It feeds offline evaluation and drift checks (which queries people ask, what they got);
`read_searches` reads it back for `embedscope drift --queries`. Lines are
written through `logging` with a RotatingFileHandler, so the file never grows without bound and
writes from concurrent requests do not interleave. What is logged is an explicit allow-list built by
the endpoints: never headers, so never the Authorization header or the write token. Queries say a lot
about the people who ask them, so the files are readable by their owner only (mode 0600).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from embedscope.clock import now
from embedscope.errors import NotFoundError
from embedscope.jsontypes import JSONObject

LOG_FILE = "queries.jsonl"
MODE = 0o600


class _OwnerOnlyFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are created (and, if older, fixed to) mode 0600; rotated
    backups are renamed, so they keep it."""

    def _open(self):  # noqa: ANN202 - the base class's stream type
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, MODE)
        os.fchmod(fd, MODE)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


class QueryLog:
    def __init__(
        self, directory: str | Path | None, *, max_bytes: int = 10_000_000, backups: int = 5
    ) -> None:
        self.path: Path | None = None
        # a private logger per instance (unique name), not propagated: the lines go to the file only
        self._logger = logging.getLogger(f"embedscope.querylog.{uuid.uuid4().hex}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        if directory is not None:
            d = Path(directory)
            d.mkdir(parents=True, exist_ok=True)
            self.path = d / LOG_FILE
            handler = _OwnerOnlyFileHandler(
                self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(handler)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def write(self, record: JSONObject) -> None:
        if not self.enabled:
            return
        line = {"ts": now("milliseconds"), **record}
        self._logger.info(json.dumps(line, default=str, ensure_ascii=False))

    def close(self) -> None:
        for h in list(self._logger.handlers):
            h.close()
            self._logger.removeHandler(h)


def log_files(path: str | Path) -> list[Path]:
    """The query log's files oldest first: a folder (as given to `serve --log-dir`) holds
    queries.jsonl and its rotated predecessors queries.jsonl.1 (newer) .. .N (oldest)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise NotFoundError(f"query log not found: {p} (give the folder passed to `serve --log-dir`)")
    rotated = sorted(
        (f for f in p.glob(f"{LOG_FILE}.*") if f.suffix[1:].isdigit()), key=lambda f: -int(f.suffix[1:])
    )
    files = rotated + ([p / LOG_FILE] if (p / LOG_FILE).exists() else [])
    if not files:
        raise NotFoundError(f"no {LOG_FILE} in {p}")
    return files


def read_searches(path: str | Path, collection: str | None = None) -> tuple[list[JSONObject], int]:
    """(successful search requests in time order: {"ts": datetime, "query": str, ...}, lines skipped).

    Lines that are not JSON (a line cut by a crash) or not a search answered 200 are skipped."""
    out: list[JSONObject] = []
    skipped = 0
    for f in log_files(path):
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    ts = datetime.fromisoformat(rec["ts"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    skipped += 1
                    continue
                query = rec.get("query")
                if (
                    not isinstance(query, str)
                    or not query.strip()
                    or not str(rec.get("endpoint", "")).endswith("/search")
                    or rec.get("status", 200) != 200
                    or (collection is not None and rec.get("collection") != collection)
                ):
                    continue
                out.append({**rec, "ts": ts if ts.tzinfo else ts.replace(tzinfo=UTC)})
    out.sort(key=lambda r: r["ts"])
    return out, skipped
