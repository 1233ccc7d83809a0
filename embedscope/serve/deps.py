"""Dependencies shared by the routers: the server state, and the bearer token for writes."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedscope.serve.state import ServerState, get_state

State = Annotated[ServerState, Depends(get_state)]


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


#: add to a write route: `dependencies=WRITES`
WRITES = [Depends(require_token)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
