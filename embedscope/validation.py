"""What any stored value must be, checked in one place for every way in (file, Python, HTTP) and
both stores, so that the embedded and the PostgreSQL store accept exactly the same items and a
collection can always move from one to the other.

- An **id** is text or an integer (an integer becomes its decimal text: 7 -> '7'), not blank, with
  no control character (C0, DEL, C1: NUL, tab, newline, escape ...) and no lone surrogate. A JSON
  list, object, boolean or decimal number (7.0) is not an id: it used to be stored as its JSON text
  (`[1, 2]` -> '[1, 2]'), which no user ever meant.
- **Text and metadata** (keys and string values, at any depth) hold no NUL and no lone surrogate:
  PostgreSQL cannot store either, and they are no one's text.
- A **number** is never a boolean (`true` is not 1): `is_number` says which values count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from embedscope.errors import EmbedscopeError

#: control characters (Unicode category Cc) and lone surrogates (Cs): never in an id
_ID_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: NUL and lone surrogates: never in any stored text
_TEXT_BAD = re.compile(r"[\x00\ud800-\udfff]")


def _describe(ch: str) -> str:
    if "\ud800" <= ch <= "\udfff":
        return f"a lone surrogate (U+{ord(ch):04X})"
    return "NUL (U+0000)" if ch == "\x00" else f"a control character (U+{ord(ch):04X})"


def is_number(value: object) -> bool:
    """An int or float that is not a bool (Python's bool is an int; JSON's true is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def count_param(value: object, what: str) -> int:
    """A whole number >= 1 (a graph's connectivity, a search width): `true`, 2.5 and "16" are errors."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise EmbedscopeError(f"{what} must be a whole number of at least 1, not {value!r:.40}")
    return value


def id_problem(value: object) -> str | None:
    """Why `value` cannot be an id (a phrase such as "is a list"), or None when it can."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        kind = {bool: "a boolean", float: "a decimal number", list: "a list", dict: "an object"}
        what = next((v for k, v in kind.items() if isinstance(value, k)), type(value).__name__)
        return f"is {what}; ids are text or integers"
    if isinstance(value, int):
        return None
    if not value.strip():
        return "is blank"
    bad = _ID_BAD.search(value)
    if bad:
        return f"holds {_describe(bad.group())} at position {bad.start()}"
    return None


def can_be_id(value: object) -> bool:
    """Could an item have this id? Lookups answer "not found" for anything else at once (a NUL
    in a PostgreSQL query parameter is an error, not a miss)."""
    return isinstance(value, str) and id_problem(value) is None


def text_problem(value: object, _depth: int = 0) -> str | None:
    """Where a string in `value` (a text, or metadata at any depth) holds NUL or a lone surrogate."""
    if isinstance(value, str):
        bad = _TEXT_BAD.search(value)
        return f"holds {_describe(bad.group())} at position {bad.start()}" if bad else None
    if isinstance(value, Mapping):
        for k, v in value.items():
            problem = text_problem(k) if isinstance(k, str) else None
            if problem:
                return f"has a field name that {problem}"
            problem = text_problem(v, _depth + 1)
            if problem:
                return f"field '{k}' {problem}" if _depth == 0 else problem
    elif isinstance(value, list | tuple):
        for v in value:
            problem = text_problem(v, _depth + 1)
            if problem:
                return problem
    return None


class ItemFields(Protocol):
    """What `check_items` reads of an item (the store's `Item`, a layer above this one): the fields are
    `object` because this is the check that they hold what the contract says."""

    @property
    def id(self) -> object: ...
    @property
    def text(self) -> object: ...
    @property
    def metadata(self) -> object: ...


def check_items(items: Iterable[ItemFields]) -> None:
    """The store contract for items about to be written (`Item`s: id, text, metadata), the same
    for both stores: EmbedscopeError naming the first item that breaks it."""
    for item in items:
        problem = id_problem(item.id) if isinstance(item.id, str) else "is not text"
        if problem:
            raise EmbedscopeError(f"the id {item.id!r:.60} {problem}")
        if not isinstance(item.text, str):
            raise EmbedscopeError(f"item {item.id!r:.60}: its text is not text ({type(item.text).__name__})")
        problem = text_problem(item.text)
        if problem:
            raise EmbedscopeError(f"item {item.id!r:.60}: its text {problem}; remove it from the input")
        problem = text_problem(item.metadata)
        if problem:
            raise EmbedscopeError(f"item {item.id!r:.60}: metadata {problem}; remove it from the input")
