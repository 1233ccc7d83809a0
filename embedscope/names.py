"""Names users give things: collections, versions, recipes, experiments, folders.

One rule for all of them, because each becomes a folder or file name, a URL path segment and a
setting key: letters, digits, '_', '-', '.', at most 64, not starting with a punctuation mark.
"""

from __future__ import annotations

import re

from embedscope.errors import EmbedscopeError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str, what: str = "collection") -> str:
    """`name` if it is a valid name, else EmbedscopeError naming `what` it was meant to be."""
    if not _NAME.match(name or ""):
        raise EmbedscopeError(f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.' (max 64)")
    return name
