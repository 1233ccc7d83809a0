"""The server's state, set up once when the app is made: served collections, caches, metrics, jobs.

Each collection is opened twice: a reader (kept loaded: versions, encoders and indexes are loaded at
startup so the first query is fast) and a writer with its own SQLite connection for writes and
re-embedding jobs, so a long embedding job never blocks search (SQLite WAL lets the reader see the
committed state). Reads are safe from many threads by themselves (the store serialises its own
statements), so nothing here or in the routers locks around them. Each reader has its own search
pipeline, whose query encoder goes through the shared query cache and the version's micro-batcher.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from embedscope.collection import Collection
from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.experiments import Experiments
from embedscope.querylog import QueryLog
from embedscope.search.pipeline import QueryEncoder, SearchPipeline, encode_direct
from embedscope.search.versions import LoadedVersion
from embedscope.serve import models as m
from embedscope.serve.batching import QueryBatcher
from embedscope.serve.cache import QueryCache
from embedscope.serve.metrics import Metrics

if TYPE_CHECKING:
    from embedscope.display import DisplayFields
    from embedscope.encoders.base import Vectors
    from embedscope.jsontypes import JSONObject
    from embedscope.recommend.recommender import Recommender

log = logging.getLogger("embedscope.serve")
DEFAULT_SUGGESTIONS = [
    "atmospheric, female lead, worldbuilding, funny",
    "a cozy mystery in a small village",
    "hard science fiction about first contact",
    "grief, healing and quiet hope",
    "epic fantasy with political intrigue",
]


@dataclass
class Served:
    """One served collection: the kept-loaded reader and its search pipeline, the lazily
    opened writer, and what is derived from the data (display settings, recommenders)."""

    name: str
    root: Path
    reader: Collection
    #: the pipeline's query encoder (the server's cache and micro-batcher)
    encode: InitVar[QueryEncoder | None] = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    pipeline: SearchPipeline = field(init=False)
    recommenders: dict[str | None, Recommender] = field(default_factory=dict)
    #: map points per (projection file, data revision, colour field): titles cost a store read
    projections: QueryCache[JSONObject] = field(default_factory=lambda: QueryCache(size=8))
    _writer: Collection | None = None
    _display: tuple[int, m.Display] | None = None
    _experiments: Experiments | None = None
    _experiments_once: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self, encode: QueryEncoder | None) -> None:
        self.pipeline = SearchPipeline(self.reader, encode=encode)

    @property
    def experiments(self) -> Experiments:
        """The collection's online experiments; one instance per server, so the impressions it
        served are in memory when their clicks come (the CLI may start and stop them meanwhile)."""
        with self._experiments_once:  # made once: two requests at start must not make two
            if self._experiments is None:
                self._experiments = Experiments.of(self.reader)
            return self._experiments

    def writer(self) -> Collection:
        if self._writer is None:  # called with write_lock held
            self._writer = Collection.open(self.name, self.root)
        return self._writer

    @contextmanager
    def writing(self, wait: float = 30.0) -> Iterator[Collection]:
        if not self.write_lock.acquire(timeout=wait):
            raise ConflictError(
                f"collection '{self.name}' is busy (an embedding job is running); retry later"
            )
        try:
            yield self.writer()
        finally:
            self.write_lock.release()

    def fields(self) -> DisplayFields:
        return self.reader.display_fields()

    def display(self) -> m.Display:
        """Display fields, the filters the page offers and its example queries (per data revision)."""
        coll = self.reader
        rev = coll.data_revision()
        if self._display and self._display[0] == rev:
            return self._display[1]
        frame, _ = coll.metadata_frame()
        fields = coll.display_fields()
        suggestions = coll.setting("suggested_queries") or DEFAULT_SUGGESTIONS
        filters = []
        for f in fields.filters:
            col = frame[f]
            if col.dtype.kind in "iuf":
                finite = col.dropna()
                lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (None, None)
                filters.append(m.FilterField(field=f, kind="range", min=lo, max=hi))
            else:
                filters.append(m.FilterField(field=f, kind="contains"))
        display = m.Display(
            title=fields.title,
            subtitle=fields.subtitle,
            tags=fields.tags,
            year=fields.year,
            image=fields.image,
            filters=filters,
            suggestions=list(suggestions)[:8],
        )
        self._display = (rev, display)
        return display

    def close(self) -> None:
        if self._experiments is not None:
            self._experiments.close()

    def after_write(self) -> None:
        """Forget what was derived from the old data."""
        self._display = None
        self.recommenders.clear()
        self.projections.clear()


class ServerState:
    def __init__(
        self,
        names: Sequence[str] | None,
        root: Path,
        token: str | None,
        log_dir: str | Path | None,
        cache_size: int,
    ) -> None:
        self.root = root
        self.token = check_token(token)
        names = Collection.list(root) if names is None else list(names)
        self.cache: QueryCache[Vectors] = QueryCache(cache_size)
        self._batchers: dict[tuple[str, str], tuple[str, QueryBatcher]] = {}
        self._batchers_lock = threading.Lock()
        self.metrics = Metrics(self.cache)
        self.querylog = QueryLog(log_dir)
        self.jobs: dict[str, m.EmbedJob] = {}  # mutated by the job's thread; answers are copies
        self.collections: dict[str, Served] = {}
        for name in names:
            self.collections[name] = Served(
                name, root, Collection.open(name, root), self._query_encoder(name)
            )

    def public(self, message: str) -> str:
        """An error message as an HTTP client may see it: no server paths (`redact_paths`)."""
        databases = {s.reader.location for s in self.collections.values()} - {str(self.root)}
        known: list[tuple[Path | str, str]] = [(url, "<database>") for url in databases if "://" in url]
        return redact_paths(message, [*known, (self.root, "<collections>")])

    def get(self, name: str) -> Served:
        served = self.collections.get(name)
        if served is None:
            known = ", ".join(self.collections) or "none"
            raise NotFoundError(f"collection '{name}' is not served (served: {known})")
        return served

    def summaries(self) -> list[m.CollectionSummary]:
        """Each served collection's name, size, versions, active version and default search
        (/health, listings): `Collection.summary`, as `embedscope collections` shows it."""
        out = []
        for served in self.collections.values():
            out.append(m.CollectionSummary(**served.reader.summary()))
        return out

    def _query_encoder(self, collection: str) -> QueryEncoder:
        """The pipeline's encode hook: the query cache (keyed by the version's revision), then the
        version's micro-batcher, so concurrent requests share one encoder call."""

        def encode(v: LoadedVersion, texts: Sequence[str]) -> tuple[Vectors, bool]:
            if len(texts) != 1:  # a batch of its own needs no batcher
                return encode_direct(v, texts)
            key = (collection, v.info.name, v.revision, texts[0])
            return self.cache.get_or_compute(key, lambda: self.batcher(collection, v).encode(texts[0]))

        return encode

    def batcher(self, collection: str, v: LoadedVersion) -> QueryBatcher:
        """The micro-batcher of a version's encoder; replaced when the version is re-embedded."""
        key, revision = (collection, v.info.name), v.revision
        with self._batchers_lock:
            current = self._batchers.get(key)
            if current is None or current[0] != revision:
                if current is not None:
                    current[1].close()
                current = (
                    revision,
                    QueryBatcher(v.encoder.encode_queries, observe=self.metrics.batch.observe),
                )
                self._batchers[key] = current
            return current[1]

    def warm(self) -> None:
        """Load every version (vectors, encoder, index) and run one query through each encoder, so
        the first real query pays neither file loading nor model loading."""
        for served in self.collections.values():
            for info in served.reader.versions():
                try:
                    v = served.reader.load_version(info.name)
                    v.encoder.encode_queries(["warm up"])
                except Exception as exc:  # a broken version must not stop the others from serving
                    log.warning("could not preload %s/%s: %s", served.name, info.name, exc)
            served.display()  # also computes the display fields and work keys collapsing uses

    def close(self) -> None:
        """At shutdown: stop the batchers' worker threads (a later query would start new ones) and
        close the experiment logs (each record was already written and fsync'ed when logged)."""
        with self._batchers_lock:
            for _, batcher in self._batchers.values():
                batcher.close()
            self._batchers.clear()
        for served in self.collections.values():
            served.close()


#: an absolute path in a message: a '/' that starts a word, then what a file name is made of
_PATH = re.compile(r"(?<![\w/.:~-])/[^\s'\"`,;()\[\]{}<>]+")


def redact_paths(message: str, known: Sequence[tuple[Path | str, str]]) -> str:
    """`message` without server file system paths: each `known` folder (the collections root) or
    string (a database URL) by its label, then any other absolute path whose first folder exists
    here by `<path>`. An HTTP client has no business knowing where the server keeps its data (a
    507's store path, a log, the database's host)."""
    for where, label in known:
        forms = {str(where), str(where.resolve())} if isinstance(where, Path) else {where}
        for form in sorted(forms, key=len, reverse=True):
            message = message.replace(form.rstrip("/") + "/", label + "/").replace(form, label)

    def one(match: re.Match[str]) -> str:
        path = match.group()
        first = path.strip("/").split("/", 1)[0]
        return "<path>" if first and os.path.isdir("/" + first) else path

    return _PATH.sub(one, message)


def check_token(token: str | None) -> str | None:
    """The write token, or None (writes disabled) for none or an empty one. A token no request can
    present is refused at start-up rather than enabling writes that then match nothing: only
    whitespace, whitespace at either end (HTTP strips it from the header), control or non-ASCII
    characters."""
    if not token:
        return None
    if not token.strip():
        raise EmbedscopeError(
            "the write token is only whitespace, so no request could match it; set a real one"
        )
    if token != token.strip():
        raise EmbedscopeError(
            "the write token starts or ends with whitespace, which HTTP strips from the header, so no "
            "request could match it; remove the whitespace"
        )
    odd = next((c for c in token if not 32 <= ord(c) < 127), None)
    if odd is not None:
        raise EmbedscopeError(
            f"the write token holds U+{ord(odd):04X}, a control or non-ASCII character, which HTTP "
            "headers do not carry reliably; use printable ASCII (e.g. `openssl rand -hex 24`)"
        )
    return token


def get_state(request: Request) -> ServerState:
    """FastAPI dependency: the state `create_app` set up."""
    return request.app.state.embedscope
