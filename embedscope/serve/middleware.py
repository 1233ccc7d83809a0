"""ASGI middleware: the request body limit, unexpected errors as JSON 500s, and metrics + the query log
for every request."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    from embedscope.serve.state import ServerState

log = logging.getLogger("embedscope.serve")
MAX_BODY = 1_000_000  # bytes; a search body is tiny, an upsert of ~1,000 records fits
BODY_TIMEOUT = 30.0  # seconds a request body may take to arrive (serve/server.py: Limits)


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 before the app reads them, and bodies that do
    not arrive within `timeout` seconds with 408 (a client that declares 100 bytes and sends 9 held
    its connection forever; serve/server.py closes what the app never reads).

    Pure ASGI (not BaseHTTPMiddleware) so it can count a chunked body as it arrives; the body is at
    most `max_bytes`, so buffering it and replaying it to the app is cheap."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = BODY_TIMEOUT) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                msg = f"request body not received within {self.timeout:g} s; send it whole, or a smaller one"
                close = {"Connection": "close"}  # the rest of the body may still come: do not read it
                return await JSONResponse({"error": msg}, 408, headers=close)(scope, receive, send)
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
        record: JSONObject = {}
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
                        "ms": round(seconds * 1000, 3),
                        **record,
                    }
                )
