"""One error type for everything a user can get wrong; the CLI and HTTP layers turn it into a
one-line message (CLI, exit 2) or a 4xx JSON body (HTTP) instead of a traceback."""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


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


class TooManyRequestsError(EmbedscopeError):
    """The client repeats a request faster than it may (e.g. clicks on one result list)."""

    http_status = 429


class DamagedError(EmbedscopeError):
    """Stored data fails its own consistency checks (a file missing, counts that disagree, rows
    holding another item's content): reads refuse it rather than answer wrongly. `problems` lists
    what was found; the message says how to repair it."""

    http_status = 409

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


#: errno values that mean "the disk (or the user's quota) is full"
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_full(exc: OSError, what: str) -> StorageFullError | None:
    """The one-line error for an OSError that means a full disk or a read-only file system (the
    store's rule, for files kept beside a collection), else None. `what` names the write."""
    if exc.errno == errno.EROFS:
        return StorageFullError(f"read-only file system: {what} failed; nothing was changed")
    if exc.errno in DISK_FULL:
        return StorageFullError(f"no space left on device: {what} failed; nothing was changed")
    return None


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn a full disk or read-only file system inside the block into StorageFullError (HTTP 507);
    the block itself must leave nothing behind (remove its temporary files in `finally`)."""
    try:
        yield
    except OSError as exc:
        full = storage_full(exc, what)
        if full is None:
            raise
        raise full from None
