"""One error type for everything a user can get wrong; the CLI and HTTP layers turn it into a
one-line message (CLI, exit 2) or a 4xx JSON body (HTTP) instead of a traceback."""

from __future__ import annotations


class EmbedscopeError(Exception):
    """A problem with the user's input or state, explained in one line."""

    http_status = 400


class NotFoundError(EmbedscopeError):
    """A named thing (collection, version, item, user, encoder) does not exist."""

    http_status = 404


class ConflictError(EmbedscopeError):
    """The request contradicts what is stored (e.g. a vector of the wrong dimension)."""

    http_status = 409


class StorageFullError(EmbedscopeError):
    """The disk is full (or the store is read-only): the write was refused, nothing stored changed."""

    http_status = 507
