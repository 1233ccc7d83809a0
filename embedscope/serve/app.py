"""The HTTP API (FastAPI) and the "search by vibe" web page, one process.

    app = create_app(["books"])           # or `embedscope serve books`
    GET  /api/collections/books/search?query=cozy+mystery&k=5
    GET  /docs                            # OpenAPI, generated from embedscope.serve.models

Concurrency: endpoints are plain `def`, so Starlette runs them in its threadpool and CPU-bound
encoding/search never blocks the event loop. Each collection is opened twice: a reader (kept loaded:
versions, encoders and indexes are loaded at startup so the first query is fast) and a writer with
its own SQLite connection for writes and re-embedding jobs, so a long embedding job never blocks
search (SQLite WAL lets the reader see the committed state). The reader's SQLite work is guarded by
a per-collection lock (short sections); encoding and index lookups run outside it.
"""

from __future__ import annotations

import importlib.util
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedscope.api import Collection, Hit, LoadedVersion, default_root, fuse_hybrid_runs
from embedscope.encoders.base import is_empty_query
from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.serve import models as m
from embedscope.serve.batching import QueryBatcher
from embedscope.serve.metrics import Metrics, QueryCache
from embedscope.serve.querylog import QueryLog
from embedscope.store.embedded import now

log = logging.getLogger("embedscope.serve")
STATIC = Path(__file__).parent / "static"
MAX_BODY = 1_000_000  # bytes; a search body is tiny, an upsert of ~1,000 records fits
FUSION_DEPTH = 100  # each run of a hybrid search goes this deep before reciprocal rank fusion
HYBRID = "hybrid"
DEFAULT_SUGGESTIONS = [
    "atmospheric, female lead, worldbuilding, funny",
    "a cozy mystery in a small village",
    "hard science fiction about first contact",
    "grief, healing and quiet hope",
    "epic fantasy with political intrigue",
]
# display heuristics: the first field present wins; a collection setting `display_fields` overrides
_GUESS = {
    "title": ["title", "name", "full_title", "headline", "label"],
    "subtitle": ["authors", "author", "artist", "director", "creator", "brand", "source"],
    "tags": ["categories", "category", "genres", "genre", "tags", "topics"],
    "year": ["published_year", "year", "release_year", "date"],
    "image": ["thumbnail", "image", "image_url", "cover", "poster"],
}


# --- state ------------------------------------------------------------------------------------------
@dataclass
class Served:
    """One served collection: the kept-loaded reader, its lock, and the lazily opened writer."""

    name: str
    root: Path
    reader: Collection
    lock: threading.RLock = field(default_factory=threading.RLock)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    _writer: Collection | None = None
    _display: tuple[int, m.Display] | None = None
    recommenders: dict[str | None, Any] = field(default_factory=dict)

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


class ServerState:
    def __init__(
        self,
        names: list[str] | None,
        root: Path,
        token: str | None,
        log_dir: str | Path | None,
        cache_size: int,
    ) -> None:
        self.root = root
        self.token = token or None
        names = Collection.list(root) if names is None else list(names)
        self.collections: dict[str, Served] = {}
        for name in names:
            self.collections[name] = Served(name, root, Collection.open(name, root))
        self.cache = QueryCache(cache_size)
        self._batchers: dict[tuple[str, str], tuple[str, QueryBatcher]] = {}
        self._batchers_lock = threading.Lock()
        self.metrics = Metrics(self.cache)
        self.querylog = QueryLog(log_dir)
        self.jobs: dict[str, m.EmbedJob] = {}  # mutated by the job's thread; answers are copies

    def get(self, name: str) -> Served:
        served = self.collections.get(name)
        if served is None:
            known = ", ".join(self.collections) or "none"
            raise NotFoundError(f"collection '{name}' is not served (served: {known})")
        return served

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


# --- helpers ---------------------------------------------------------------------------------------
def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _display(served: Served) -> m.Display:
    """Which metadata fields a card shows and which filters the page offers (cached per data revision)."""
    coll = served.reader
    with served.lock:
        rev = coll.store.data_revision()
        if served._display and served._display[0] == rev:
            return served._display[1]
        frame, _ = coll.metadata_frame()
        override = coll.store.get_setting("display_fields", {}) or {}
        suggestions = coll.store.get_setting("suggested_queries") or DEFAULT_SUGGESTIONS
    cols = [str(c) for c in frame.columns]
    chosen: dict[str, Any] = {}
    for role, names in _GUESS.items():
        chosen[role] = (
            override.get(role) if override.get(role) in cols else next((n for n in names if n in cols), None)
        )
    filter_fields = override.get("filters") or [chosen["year"], chosen["tags"], chosen["subtitle"]]
    filters = []
    for f in filter_fields:
        if not f or f not in cols:
            continue
        col = frame[f]
        numeric = col.dtype.kind in "iuf"
        if numeric:
            finite = col.dropna()
            lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (None, None)
            filters.append(m.FilterField(field=f, kind="range", min=lo, max=hi))
        else:
            filters.append(m.FilterField(field=f, kind="contains"))
    display = m.Display(**chosen, filters=filters, suggestions=list(suggestions)[:8])
    served._display = (rev, display)
    return display


def _hit_out(hit: Hit, display: m.Display) -> m.HitOut:
    meta = hit.metadata or {}
    title = str(meta.get(display.title) or "") if display.title else ""
    body = hit.text or ""
    if title and body.startswith(title):
        body = body[len(title) :].lstrip(" .:-\n")  # the text template often starts with the title
    if not title:
        title = body[:80] + ("…" if len(body) > 80 else "")
    snippet = body if len(body) <= 280 else body[:280].rsplit(" ", 1)[0] + "…"
    score = hit.score if np.isfinite(hit.score) else 0.0
    return m.HitOut(id=hit.id, score=round(float(score), 6), title=title, snippet=snippet, metadata=meta)


def _resolve_version(served: Served, version: str | None, encoder: str | None) -> str | None:
    """The version to use: named, or the one built with `encoder` (active preferred), or None = active."""
    if version and encoder:
        raise EmbedscopeError("give either version or encoder, not both")
    if not encoder:
        return version
    with served.lock:
        versions = served.reader.versions()
        active = served.reader.store.get_setting("active_version")
    matches = [v.name for v in versions if v.encoder.get("name") == encoder]
    if not matches:
        have = sorted({v.encoder.get("name", "?") for v in versions}) or ["none"]
        hint = " (or 'hybrid' when a sparse and a dense version exist)" if encoder != HYBRID else ""
        raise NotFoundError(
            f"collection '{served.name}' has no version built with encoder '{encoder}'; "
            f"encoders with versions: {', '.join(have)}{hint}"
        )
    return active if active in matches else matches[0]


def _hybrid_parts(served: Served) -> dict[str, Any] | None:
    """The collection's hybrid settings (sparse + dense version, fusion), or None if it lacks one."""
    with served.lock:
        try:
            return served.reader.hybrid_parts()
        except NotFoundError:
            return None


class _Query:
    """A query's path through the stages, timed: encode (or cache), search, rank."""

    def __init__(self, state: ServerState, served: Served) -> None:
        self.state, self.served = state, served
        self.stages = {"encode": 0.0, "search": 0.0, "rank": 0.0}
        self.cached = True

    def load(self, version: str | None) -> LoadedVersion:
        with self.served.lock:
            return self.served.reader.load_version(version)

    def encode(self, v: LoadedVersion, query: str) -> Any:
        t0 = time.perf_counter()
        key = (self.served.name, v.info.name, v.revision, query)

        def compute() -> Any:
            q = self.state.batcher(self.served.name, v).encode(query)
            if is_empty_query(q):
                raise EmbedscopeError(
                    f"query {query!r} has no terms known to encoder '{v.info.encoder.get('name')}' "
                    "(only stop words or unknown words)"
                )
            return q

        q, hit = self.state.cache.get_or_compute(key, compute)
        self.cached = self.cached and hit
        self.stages["encode"] += time.perf_counter() - t0
        return q

    def mask(self, v: LoadedVersion, where: str | None) -> np.ndarray | None:
        """Rows allowed by the filter; computed before encoding, so a bad filter costs no encoding."""
        t0 = time.perf_counter()
        with self.served.lock:
            allowed = self.served.reader.allowed_rows(v, where)
        self.stages["search"] += time.perf_counter() - t0
        return allowed

    def rows(
        self, v: LoadedVersion, q: Any, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        rows, scores = v.index.search(q, min(k, max(v.index.size, 1)), allowed=allowed)
        self.stages["search"] += time.perf_counter() - t0
        return rows[0], scores[0]

    def hits(
        self, v: LoadedVersion, rows: np.ndarray, scores: np.ndarray, display: m.Display
    ) -> list[m.HitOut]:
        t0 = time.perf_counter()
        with self.served.lock:
            hits = self.served.reader.hits_for_rows(v, rows, scores)
        out = [_hit_out(h, display) for h in hits]
        self.stages["rank"] += time.perf_counter() - t0
        return out


def run_search(
    state: ServerState, req: m.SearchRequest, name: str, record: dict[str, Any]
) -> m.SearchResponse:
    served = state.get(name)
    display = _display(served)
    started = time.perf_counter()
    run = _Query(state, served)
    query = req.query.strip()
    record.update(collection=name, query=query, k=req.k, where=req.where)
    if req.encoder == HYBRID or (req.version == HYBRID and not _has_version(served, HYBRID)):
        hits, label, enc_name = _hybrid_search(run, served, query, req.k, req.where, display)
    else:
        v = run.load(_resolve_version(served, req.version, req.encoder))
        allowed = run.mask(v, req.where)
        q = run.encode(v, query)
        rows, scores = run.rows(v, q, req.k, allowed)
        hits = run.hits(v, rows, scores, display)
        label, enc_name = v.info.name, str(v.info.encoder.get("name"))
    took = time.perf_counter() - started
    state.metrics.observe_stages(name, label, run.stages)
    record.update(version=label, cached=run.cached, ids=[h.id for h in hits])
    return m.SearchResponse(
        collection=name,
        version=label,
        encoder=enc_name,
        query=query,
        k=req.k,
        where=req.where,
        cached=run.cached,
        took_ms=_ms(took),
        stages=m.Stages(**{f"{k}_ms": _ms(s) for k, s in run.stages.items()}),
        hits=hits,
    )


def _has_version(served: Served, name: str) -> bool:
    with served.lock:
        return any(v.name == name for v in served.reader.versions())


def _hybrid_search(
    run: _Query, served: Served, query: str, k: int, where: str | None, display: m.Display
) -> tuple[list[m.HitOut], str, str]:
    """The same fusion as `Collection.search(version="hybrid")`, staged and timed: the sparse and
    dense versions from `Collection.hybrid_parts`, each FUSION_DEPTH deep, fused by
    `fuse_hybrid_runs`. A part that knows no query term is skipped."""
    cfg = _hybrid_parts(served)
    if cfg is None:
        raise NotFoundError(
            f"collection '{served.name}' needs a sparse version (e.g. bm25) and a dense one (e.g. minilm) "
            "for hybrid search"
        )
    runs: list[dict[str, float]] = []
    loaded = []
    parts = (cfg["sparse"], cfg["dense"])
    for name in parts:
        v = run.load(name)
        loaded.append(v)
        allowed = run.mask(v, where)  # a bad filter is an error, not a skipped run
        try:
            q = run.encode(v, query)
        except EmbedscopeError:
            continue  # e.g. only unknown words for BM25: the dense run alone decides
        rows, scores = run.rows(v, q, max(k, FUSION_DEPTH), allowed)
        runs.append({v.data.ids[r]: float(s) for r, s in zip(rows, scores, strict=True) if r >= 0})
    t0 = time.perf_counter()
    fused = list(fuse_hybrid_runs(cfg, runs).items())[:k]
    v = loaded[-1]
    rows = np.array([v.row_of.get(i, -1) for i, _ in fused], dtype=np.int64)
    scores = np.array([s for _, s in fused], dtype=np.float32)
    keep = rows >= 0  # an id only the sparse run knows (added after the dense version was built) is dropped
    run.stages["rank"] += time.perf_counter() - t0
    hits = run.hits(v, rows[keep], scores[keep], display)
    return hits, HYBRID, f"{HYBRID}({parts[0]}+{parts[1]})"


# --- body size limit --------------------------------------------------------------------------------
class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 before the app reads them.

    Pure ASGI (not BaseHTTPMiddleware) so it can count a chunked body as it arrives; the body is at
    most `max_bytes`, so buffering it and replaying it to the app is cheap."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_bytes:
                    return await self._too_large(scope, receive, send)
            except ValueError:
                return await JSONResponse({"error": "invalid Content-Length header"}, 400)(
                    scope, receive, send
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        msg = f"request body too large: the limit is {self.max_bytes:,} bytes"
        await JSONResponse({"error": msg}, 413)(scope, receive, send)


class ServerErrors:
    """An unexpected exception becomes one logged traceback and a JSON 500; the connection lives on.

    Starlette's own handler for `Exception` answers too, but then re-raises so that the server logs
    the exception again and closes the keep-alive connection, resetting the client's next request.
    Client mistakes never get here: they are EmbedscopeError (4xx) or validation errors (422)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response is out: only closing the connection is honest now
            body = {"error": f"internal error ({exc.__class__.__name__}); see the server log"}
            await JSONResponse(body, 500)(scope, receive, send)


class Observe:
    """Metrics and the query log for every request.

    Pure ASGI rather than `@app.middleware("http")` (BaseHTTPMiddleware), which costs about a
    millisecond per request on this CPU: a tenth of a cached search."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        record: dict[str, Any] = {}
        scope.setdefault("state", {})["record"] = record  # endpoints add to it via request.state.record
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"  # the template, not the URL
            if not endpoint.startswith("/static"):
                self.state.metrics.observe_request(scope["method"], endpoint, status, seconds)
            if endpoint.startswith("/api/"):
                # allow-list only: what the endpoint chose to record, never headers (so never the token)
                self.state.querylog.write(
                    {
                        "method": scope["method"],
                        "endpoint": endpoint,
                        "status": status,
                        "ms": _ms(seconds),
                        **record,
                    }
                )


# --- auth ------------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="the server's write token")


def require_token(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Write endpoints: 403 when the server has no token configured, 401 for a missing or wrong one."""
    token = request.app.state.embedscope.token
    if token is None:
        raise StarletteHTTPException(
            403, "writes are disabled: start the server with a token (`embedscope serve --token-env VAR`)"
        )
    # constant-time comparison, so the token cannot be guessed byte by byte from response times
    if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
        raise StarletteHTTPException(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


# --- the app ---------------------------------------------------------------------------------------
def create_app(
    collections: list[str] | None = None,
    root: str | Path | None = None,
    token: str | None = None,
    log_dir: str | Path | None = None,
    *,
    cache_size: int = 1024,
    max_body: int = MAX_BODY,
    warm: bool = True,
) -> FastAPI:
    """The FastAPI app serving `collections` (default: every collection under `root`).

    `token` enables the write endpoints (bearer token); without it they answer 403. `log_dir` enables
    the JSON-lines query log (rotated). `warm` preloads every version and encoder."""
    state = ServerState(collections, Path(root or default_root()), token, log_dir, cache_size)
    if warm:
        state.warm()
    app = FastAPI(
        title="embedscope",
        version="0.1.0",
        summary="Semantic search, more-like-this and recommendations over embedded collections.",
        description="Read endpoints are open; write endpoints need `Authorization: Bearer <token>` and are "
        'refused (403) when the server has no token configured. Errors are JSON: `{"error": "..."}`.',
        responses={400: {"model": m.ErrorOut}, 404: {"model": m.ErrorOut}, 422: {"model": m.ErrorOut}},
    )
    app.state.embedscope = state
    app.add_middleware(ServerErrors)  # innermost: sees what the exception handlers below do not handle
    app.add_middleware(BodyLimit, max_bytes=max_body)
    writes = [Depends(require_token)]

    # --- errors: one JSON shape, 4xx for anything the client got wrong --------------------------------
    @app.exception_handler(EmbedscopeError)
    def _embedscope_error(request: Request, exc: EmbedscopeError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        parts = [
            f"{'.'.join(d['loc'][1:]) or d['loc'][0] if d['loc'] else 'request'}: {d['msg']}" for d in detail
        ]
        return JSONResponse(
            {"error": "; ".join(parts) or "invalid request", "detail": detail}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    # --- metrics + query log ------------------------------------------------------------------------
    # outermost, so 413s from BodyLimit are counted and logged too
    app.add_middleware(Observe, state=state)

    # --- page, health, metrics ----------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/health", tags=["service"])
    def health() -> m.Health:
        return m.Health(status="ok", collections=list_collections(), writes_enabled=state.token is not None)

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
    )
    def metrics() -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    # --- read endpoints ----------------------------------------------------------------------------
    @app.get("/api/collections", tags=["read"])
    def list_collections() -> list[m.CollectionSummary]:
        out = []
        for served in state.collections.values():
            with served.lock:
                versions = served.reader.versions()
                out.append(
                    m.CollectionSummary(
                        name=served.name,
                        items=len(served.reader),
                        versions=[v.name for v in versions],
                        active_version=served.reader.store.get_setting("active_version"),
                    )
                )
        return out

    @app.get("/api/collections/{name}", tags=["read"])
    def collection_info(name: str) -> m.CollectionInfo:
        served = state.get(name)
        with served.lock:
            info = served.reader.info()
        return m.CollectionInfo(**info, display=_display(served))

    @app.get("/api/collections/{name}/search", tags=["read"])
    def search_get(name: str, req: Annotated[m.SearchRequest, Query()], request: Request) -> m.SearchResponse:
        """Semantic search. `encoder=hybrid` fuses a sparse and a dense version (RRF)."""
        return run_search(state, req, name, request.state.record)

    @app.post("/api/collections/{name}/search", tags=["read"])
    def search_post(name: str, req: m.SearchRequest, request: Request) -> m.SearchResponse:
        return run_search(state, req, name, request.state.record)

    def _similar(name: str, req: m.SimilarRequest, record: dict[str, Any]) -> m.SearchResponse:
        served = state.get(name)
        display = _display(served)
        record.update(collection=name, item=req.id, k=req.k, where=req.where)
        t0 = time.perf_counter()
        version = _resolve_version(served, req.version, req.encoder)
        with served.lock:
            v = served.reader.load_version(version)
            hits = served.reader.similar(req.id, req.k, where=req.where, version=v.info.name)
        t1 = time.perf_counter()
        out = [_hit_out(h, display) for h in hits]
        t2 = time.perf_counter()
        state.metrics.observe_stages(name, v.info.name, {"search": t1 - t0, "rank": t2 - t1})
        record.update(version=v.info.name, ids=[h.id for h in out])
        return m.SearchResponse(
            collection=name,
            version=v.info.name,
            encoder=str(v.info.encoder.get("name")),
            k=req.k,
            where=req.where,
            took_ms=_ms(t2 - t0),
            stages=m.Stages(search_ms=_ms(t1 - t0), rank_ms=_ms(t2 - t1)),
            hits=out,
        )

    @app.get("/api/collections/{name}/similar", tags=["read"])
    def similar_get(
        name: str, req: Annotated[m.SimilarRequest, Query()], request: Request
    ) -> m.SearchResponse:
        """More like this: the items nearest to item `id` (itself excluded)."""
        return _similar(name, req, request.state.record)

    @app.post("/api/collections/{name}/similar", tags=["read"])
    def similar_post(name: str, req: m.SimilarRequest, request: Request) -> m.SearchResponse:
        return _similar(name, req, request.state.record)

    @app.post("/api/collections/{name}/recommend", tags=["read"], responses={501: {"model": m.ErrorOut}})
    def recommend(name: str, req: m.RecommendRequest, request: Request) -> m.RecommendResponse:
        """Recommendations for a stored user (`user`) or an anonymous list of liked `items`."""
        served = state.get(name)
        record = request.state.record
        record.update(collection=name, user=req.user, items=req.items, k=req.k, where=req.where)
        if (req.user is None) == (req.items is None):
            raise EmbedscopeError("give exactly one of user (a user id) or items (a list of item ids)")
        if importlib.util.find_spec("embedscope.recommend") is None:
            raise StarletteHTTPException(501, "recommendations are not available in this build")
        from embedscope.recommend import Recommender

        display = _display(served)
        t0 = time.perf_counter()
        with served.lock:
            rec = served.recommenders.get(req.version)
            if rec is None:
                rec = served.recommenders[req.version] = Recommender(served.reader, req.version)
            result = rec.recommend(req.user, items=req.items, k=req.k, where=req.where, profile=req.profile)
        took = time.perf_counter() - t0
        hits = []
        for r in result.items:
            h = _hit_out(Hit(r.id, r.score, r.text, r.metadata), display)
            hits.append(m.RecommendedOut(**h.model_dump(), because=[str(b.get("id")) for b in r.because]))
        record.update(version=result.version, ids=[h.id for h in hits], fallback=result.fallback)
        return m.RecommendResponse(
            collection=name,
            user=result.user,
            profile=result.profile,
            version=result.version,
            history_size=result.history_size,
            fallback=result.fallback,
            message=result.message,
            took_ms=_ms(took),
            hits=hits,
        )

    def _compare(name: str, req: m.CompareRequest, record: dict[str, Any]) -> m.CompareResponse:
        served = state.get(name)
        with served.lock:
            all_versions = [v.name for v in served.reader.versions()]
        targets = req.versions or all_versions + (
            [HYBRID] if _hybrid_parts(served) and HYBRID not in all_versions else []
        )
        record.update(collection=name, query=req.query, k=req.k, where=req.where, versions=targets)
        runs = []
        for target in targets:
            try:
                sreq = m.SearchRequest(query=req.query, k=req.k, where=req.where, version=target)
                res = run_search(state, sreq, name, {})
                runs.append(
                    m.CompareRun(version=res.version, encoder=res.encoder, took_ms=res.took_ms, hits=res.hits)
                )
            except EmbedscopeError as exc:
                if isinstance(exc, NotFoundError) and target not in all_versions and target != HYBRID:
                    raise  # an unknown version name is the caller's mistake, not one version's failure
                runs.append(m.CompareRun(version=target, error=str(exc)))
        overlap = {}
        answered = [r for r in runs if r.error is None]
        for i, a in enumerate(answered):
            for b in answered[i + 1 :]:
                sa, sb = {h.id for h in a.hits}, {h.id for h in b.hits}
                overlap[f"{a.version}|{b.version}"] = round(len(sa & sb) / max(len(sa | sb), 1), 4)
        record["ids"] = {r.version: [h.id for h in r.hits] for r in runs}
        return m.CompareResponse(collection=name, query=req.query, k=req.k, runs=runs, overlap=overlap)

    @app.get("/api/collections/{name}/compare", tags=["read"])
    def compare_get(
        name: str, req: Annotated[m.CompareRequest, Query()], request: Request
    ) -> m.CompareResponse:
        """One query against several versions (default: all, plus hybrid when possible), each timed."""
        return _compare(name, req, request.state.record)

    @app.post("/api/collections/{name}/compare", tags=["read"])
    def compare_post(name: str, req: m.CompareRequest, request: Request) -> m.CompareResponse:
        return _compare(name, req, request.state.record)

    @app.get("/api/collections/{name}/items/{item_id:path}", tags=["read"])
    def get_item(name: str, item_id: str, request: Request) -> m.ItemOut:
        served = state.get(name)
        request.state.record.update(collection=name, item=item_id)
        with served.lock:
            item = served.reader.get(item_id)
        h = _hit_out(Hit(item.id, 0.0, item.text, item.metadata), _display(served))
        return m.ItemOut(id=item.id, text=item.text, metadata=item.metadata, title=h.title)

    # --- write endpoints (bearer token) -------------------------------------------------------------
    def _after_write(served: Served) -> None:
        with served.lock:
            served._display = None
            served.recommenders.clear()

    @app.post("/api/collections/{name}/items", tags=["write"], dependencies=writes)
    def upsert_items(name: str, req: m.UpsertRequest, request: Request) -> m.WriteResult:
        """Add or update items (records shaped like the ingested file: id field, text fields, metadata)."""
        served = state.get(name)
        request.state.record.update(collection=name, action="upsert", records=len(req.records))
        with served.writing() as coll:
            counts = coll.upsert(req.records)
        _after_write(served)
        request.state.record["counts"] = counts
        return m.WriteResult(collection=name, counts=counts)

    @app.put("/api/collections/{name}/items/{item_id:path}", tags=["write"], dependencies=writes)
    def update_item(name: str, item_id: str, fields: dict[str, Any], request: Request) -> m.WriteResult:
        """Update one item: the given fields replace stored ones, fields not given are kept."""
        served = state.get(name)
        request.state.record.update(collection=name, action="update", item=item_id)
        with served.writing() as coll:
            id_field = coll.store.get_setting("id_field", "id")
            try:
                current = coll.get(item_id).metadata
            except NotFoundError:
                current = {}
            counts = coll.upsert([{**current, **fields, id_field: item_id}])
        _after_write(served)
        return m.WriteResult(collection=name, counts=counts)

    @app.delete("/api/collections/{name}/items/{item_id:path}", tags=["write"], dependencies=writes)
    def delete_item(name: str, item_id: str, request: Request) -> m.WriteResult:
        served = state.get(name)
        request.state.record.update(collection=name, action="delete", item=item_id)
        with served.writing() as coll:
            coll.get(item_id)  # 404 for an unknown id rather than a silent "0 deleted"
            deleted = coll.delete([item_id])
        _after_write(served)
        return m.WriteResult(collection=name, counts={"deleted": deleted})

    @app.post(
        "/api/collections/{name}/versions/{version}/embed",
        tags=["write"],
        dependencies=writes,
        status_code=202,
    )
    def embed_version(name: str, version: str, req: m.EmbedRequest, request: Request) -> m.EmbedJob:
        """Re-embed a version in the background (incremental: only new and changed items are encoded).
        Poll GET /api/jobs/{id}. A new version needs `encoder`."""
        from embedscope.encoders.registry import create_encoder

        served = state.get(name)
        request.state.record.update(collection=name, action="embed", version=version)
        with served.lock:
            existing = {v.name: v for v in served.reader.versions()}.get(version)
        enc_name = req.encoder or (existing.encoder.get("name") if existing else None)
        if enc_name is None:
            raise EmbedscopeError(
                f"version '{version}' does not exist yet: give the encoder to build it with"
            )
        params = req.params
        if params is None and existing is not None and existing.encoder.get("name") == enc_name:
            params = existing.encoder.get("params")
        create_encoder(enc_name, params)  # unknown encoder or parameter: 4xx now, not a failed job later
        if not served.write_lock.acquire(blocking=False):
            raise ConflictError(
                f"collection '{name}' is busy with another write or embedding job; retry later"
            )
        job = m.EmbedJob(id=uuid.uuid4().hex[:12], collection=name, version=version)
        state.jobs[job.id] = job

        def work() -> None:
            job.status, job.started_at = "running", now()
            try:
                coll = served.writer()

                def progress(done: int, total: int) -> None:
                    job.done, job.total = done, total

                info = coll.embed(
                    enc_name,
                    params,
                    version=version,
                    index=req.index,
                    refit=req.refit,
                    activate=req.activate,
                    progress=progress,
                )
                job.result = {
                    "encoded": info.stats.get("encoded"),
                    "reused": info.stats.get("reused"),
                    "count": info.count,
                }
                with served.lock:
                    served.reader.load_version(version)  # reload now, so the next query is fast
                job.status = "done"
            except Exception as exc:  # reported through the job, the server keeps running
                job.status, job.error = "failed", str(exc) if isinstance(exc, EmbedscopeError) else repr(exc)
                if isinstance(exc, EmbedscopeError):  # e.g. busy, disk full: said in one line
                    log.warning("embedding job %s failed: %s", job.id, exc)
                else:
                    log.exception("embedding job %s failed", job.id)
            finally:
                job.finished_at = now()
                served.write_lock.release()
                _after_write(served)

        threading.Thread(target=work, name=f"embed-{name}-{version}", daemon=True).start()
        return job.model_copy()

    @app.get("/api/jobs/{job_id}", tags=["write"])
    def get_job(job_id: str) -> m.EmbedJob:
        job = state.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job '{job_id}'")
        return job.model_copy()

    @app.post("/api/collections/{name}/versions/{version}/activate", tags=["write"], dependencies=writes)
    def activate(name: str, version: str, request: Request) -> m.CollectionSummary:
        served = state.get(name)
        request.state.record.update(collection=name, action="activate", version=version)
        with served.writing() as coll:
            coll.activate(version)
        _after_write(served)
        return next(c for c in list_collections() if c.name == name)

    return app
