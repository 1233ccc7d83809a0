"""The HTTP API (FastAPI) and the "search by vibe" web page, one process.

    app = create_app(["books"])           # or `embedscope serve books`
    GET  /api/collections/books/search?query=cozy+mystery&k=5
    GET  /docs                            # OpenAPI, generated from embedscope.serve.models

Layout (FastAPI's "bigger applications"): the state is set up here once (`serve/state.py`), each
concern has its router (`serve/routers/`), middleware (`serve/middleware.py`) and the query cache
(`serve/cache.py`) have their own modules. Endpoints are plain `def`, so Starlette runs them in its
threadpool and CPU-bound encoding/search never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedscope.collection import default_root
from embedscope.errors import EmbedscopeError
from embedscope.serve import models as m
from embedscope.serve.middleware import BODY_TIMEOUT, MAX_BODY, BodyLimit, Observe, ServerErrors
from embedscope.serve.routers import ROUTERS
from embedscope.serve.routers.service import STATIC, SWAGGER_STATIC, SWAGGER_UI
from embedscope.serve.state import ServerState


def create_app(
    collections: list[str] | None = None,
    root: str | Path | None = None,
    token: str | None = None,
    log_dir: str | Path | None = None,
    *,
    cache_size: int = 1024,
    max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
    warm: bool = True,
) -> FastAPI:
    """The FastAPI app serving `collections` (default: every collection under `root`).

    `token` enables the write endpoints (bearer token); without it they answer 403. `log_dir` enables
    the JSON-lines query log (rotated). `warm` preloads every version and encoder. A request body
    over `max_body` bytes is a 413, one not received within `body_timeout` seconds a 408."""
    state = ServerState(collections, Path(root or default_root()), token, log_dir, cache_size)
    if warm:
        state.warm()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        title="embedscope",
        version="0.1.0",
        summary="Semantic search, more-like-this and recommendations over embedded collections.",
        description="Read endpoints are open; write endpoints need `Authorization: Bearer <token>` and are "
        'refused (403) when the server has no token configured. Errors are JSON: `{"error": "..."}`.',
        responses={400: {"model": m.ErrorOut}, 404: {"model": m.ErrorOut}, 422: {"model": m.ErrorOut}},
        lifespan=lifespan,
        # /docs is the service router's, with Swagger UI's assets served from here (no CDN); ReDoc
        # would load its script from a CDN too, so it is left out
        docs_url=None,
        redoc_url=None,
    )
    app.state.embedscope = state
    app.add_middleware(ServerErrors)  # innermost: sees what the exception handlers below do not handle
    app.add_middleware(BodyLimit, max_bytes=max_body, timeout=body_timeout)
    _error_handlers(app)
    # outermost, so 413s from BodyLimit are counted and logged too
    app.add_middleware(Observe, state=state)
    app.mount(SWAGGER_STATIC, StaticFiles(directory=SWAGGER_UI), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


def _error_handlers(app: FastAPI) -> None:
    """One JSON shape for every error, 4xx for anything the client got wrong (unexpected errors are
    answered by the ServerErrors middleware, which keeps the connection open)."""

    @app.exception_handler(EmbedscopeError)
    def _embedscope_error(request: Request, exc: EmbedscopeError) -> JSONResponse:
        state: ServerState = request.app.state.embedscope
        return JSONResponse({"error": state.public(str(exc))}, status_code=exc.http_status)

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
