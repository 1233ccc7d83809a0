"""Running the app under uvicorn with limits on what a client can hold: how long a request head and
body may take to arrive, how long an idle keep-alive connection stays open, and how many
connections are served at once.

Why a protocol subclass: uvicorn (0.55, h11) times out only an idle connection *after* a response
(`timeout_keep_alive`); a connection that never completes its request head, or that trickles a
body the app does not read, stays open forever, and any byte received cancels the keep-alive timer.
A thousand such connections then exhaust `limit_concurrency` (every further request is a 503) or
the process's file descriptors. `GuardedH11Protocol` gives every request one deadline: its head
must arrive within `head_timeout` seconds of its first byte (or of the connection opening), the
rest within `body_timeout` of the head; past it the connection is closed. The app's `BodyLimit`
middleware enforces the same body deadline on the bodies it reads and answers them with a 408
first, so a client that is merely slow learns why.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from embedscope.serve.middleware import BODY_TIMEOUT

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("embedscope.serve")


@dataclass(frozen=True)
class Limits:
    """What one client may hold. The defaults suit a person's browser and API scripts on a LAN."""

    #: seconds a request head may take from its first byte (or from the connection opening)
    head_timeout: float = 10.0
    #: seconds a request body may take after its head (a 1 MB upsert over a slow link: seconds)
    body_timeout: float = BODY_TIMEOUT
    #: seconds an idle keep-alive connection stays open after a response (uvicorn's option)
    keep_alive: float = 5.0
    #: connections served at once; a request beyond them is answered 503 (uvicorn's limit_concurrency)
    max_connections: int = 256


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline per request (module docstring). Subclassed per
    server by `protocol_class` with the limits as class attributes (uvicorn makes the instances)."""

    head_timeout: float = Limits.head_timeout
    body_timeout: float = Limits.body_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""
        super().connection_made(transport)
        self._arm("head", self.head_timeout)

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, ""

    def _expire(self) -> None:
        phase, self._deadline = self._phase, None
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        log.info("closing a connection whose request %s did not arrive in time", phase)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._track()

    def _track(self) -> None:
        """After every event: which part of a request is awaited, and its deadline."""
        state = self.conn.their_state
        if state is h11.IDLE:
            # a new head: its deadline runs from its first byte; an idle connection with nothing
            # received is uvicorn's keep-alive timer's (armed after each response)
            if self._phase != "head" and self.timeout_keep_alive_task is None:
                self._arm("head", self.head_timeout)
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                # a second more than the app's own deadline, so that its 408 goes out first
                self._arm("body", self.body_timeout + 1.0)
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_class(limits: Limits) -> type[GuardedH11Protocol]:
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"head_timeout": limits.head_timeout, "body_timeout": limits.body_timeout},
    )


# Any: uvicorn.Config's own keyword arguments, passed on whole
def config(app: FastAPI, host: str, port: int, limits: Limits = Limits(), **options: Any) -> uvicorn.Config:
    """The uvicorn configuration `embedscope serve` runs (tests run a `uvicorn.Server` of it)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(limits),
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]  # uvicorn takes any number
        limit_concurrency=limits.max_connections,
        **options,
    )
