"""The type of each kept field of ingested records, decided per column and kept with the collection.

Why per column and stored: a value's type decided row by row, or file by file, made the same
book's `isbn10` text in the full file and a number in a subset, and a ZIP code `02139` the number
2139. Now a column has one type, and the collection remembers it, so every later ingest, Python
upsert and HTTP write reads that field the same way.

The rule (README "Ingest" and "Bad input", docs/design.md "Data in"):

- A value written as text (every CSV value) becomes a number only when its text survives the
  number: no leading zeros (`02139`), no `+`, no more than 15 significant digits (what a double
  holds exactly), finite. A decimal's trailing zeros are formatting, not data: `4.50` reads as 4.5.
  `true`/`false` (any case) are booleans. Anything else stays text, as written.
- A column holds the narrowest type that fits every value: int < float < text, bool < text, and
  `json` (lists and objects, or whatever mixes with them) above all, whose values are kept as
  given. A column of numbers and words is therefore text, its numbers kept as their text ("5").
- A collection's stored type wins while every new value fits it (a JSON string "2001" sent to an
  int field is 2001; a number sent to a text field is its text); a value that does not fit widens
  the type, never narrows it, and the stored values of the field are converted with it
  (losslessly: an int stored from "2001" is "2001" again as text).
- A type given explicitly (`ingest --types zip=text,year=int`) is kept as given: a value that does
  not fit it is an error naming the row and field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONValue

#: the types `--types` accepts, and what `info` shows
TYPES = ("text", "int", "float", "bool")
#: lists and objects (and columns mixing them with anything): values kept as they are
JSON = "json"
_WIDER = {"int": "float", "float": "text", "bool": "text", "text": JSON}
_INT = re.compile(r"0|-?[1-9][0-9]*")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE][-+]?[0-9]+)?")
_BOOL = {"true": True, "false": False}
#: significant digits a double keeps exactly (DBL_DIG)
MAX_DIGITS = 15


class NoFit(ValueError):
    """A value that the type cannot hold without loss."""


def parse_types(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """`"zip=text,year=int"` (or a mapping) as {field: type}; one-line errors naming the valid types."""
    if not spec:
        return {}
    pairs: Iterable[tuple[str, str]]
    if isinstance(spec, str):
        pairs = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            field, sep, kind = part.partition("=")
            if not sep or not field.strip():
                raise EmbedscopeError(f"--types: '{part}' is not FIELD=TYPE (e.g. zip=text,year=int)")
            pairs.append((field.strip(), kind.strip()))
    else:
        pairs = spec.items()
    out = {}
    for field, kind in pairs:
        if kind not in TYPES:
            raise EmbedscopeError(f"--types: unknown type '{kind}' for '{field}'; valid: {', '.join(TYPES)}")
        out[str(field)] = kind
    return out


def _significant_digits(text: str) -> int:
    mantissa = text.lstrip("-").split("e")[0].split("E")[0]
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction.rstrip("0")).lstrip("0")
    return len(digits)


def _text_number(text: str) -> int | float | None:
    """The number a text stands for when the text survives it (see the module docstring)."""
    if _INT.fullmatch(text):
        return int(text) if _significant_digits(text) <= MAX_DIGITS else None
    if _FLOAT.fullmatch(text) and _significant_digits(text) <= MAX_DIGITS:
        value = float(text)
        return value if math.isfinite(value) else None
    return None


def narrowest(value: object, *, from_text: bool) -> str | None:
    """The narrowest type holding `value` (None for a missing value). `from_text`: strings are the
    text form of a value (CSV), so '2001' is an int; otherwise a string is text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        if not from_text:
            return "text"
        if value.lower() in _BOOL:
            return "bool"
        number = _text_number(value)
        return "text" if number is None else "int" if isinstance(number, int) else "float"
    return JSON


def join(a: str | None, b: str | None) -> str | None:
    """The narrowest type holding values of both types."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if JSON in (a, b):
        return JSON
    if {a, b} == {"int", "float"}:
        return "float"
    return "text"


def convert(value: JSONValue, kind: str) -> JSONValue:
    """`value` as a `kind`, or NoFit when that would lose something."""
    if value is None or kind == JSON:
        return value
    if isinstance(value, list | dict):
        raise NoFit(f"holds a {type(value).__name__}")
    if kind == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        return repr(value) if isinstance(value, float) else str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOL:
            return _BOOL[value.lower()]
        raise NoFit("is not true or false")
    if isinstance(value, bool):
        raise NoFit("is a boolean, not a number")
    if isinstance(value, str):
        number = _text_number(value)
        if number is None:
            raise NoFit("is not a number that keeps its text (leading zeros, '+', over 15 digits?)")
        value = number
    if kind == "float":
        if isinstance(value, int) and abs(value) > 2**53:
            raise NoFit("has more digits than a float keeps")
        return float(value)
    if isinstance(value, float):
        if not value.is_integer() or abs(value) > 2**53:
            raise NoFit("is not a whole number")
        return int(value)
    return value


def _fits(values: Sequence[object], kind: str) -> bool:
    try:
        for v in values:
            convert(v, kind)
    except NoFit:
        return False
    return True


def column_type(values: Sequence[object], *, from_text: bool, stored: str | None = None) -> str | None:
    """The type of a column of values (None: all missing and nothing stored): the stored one while
    every value fits it, else the narrowest that fits them all (wider than the stored one)."""
    if stored is not None and _fits(values, stored):
        return stored
    kind = stored
    for v in values:
        kind = join(kind, narrowest(v, from_text=from_text))
    while kind is not None and kind != JSON and not _fits(values, kind):
        kind = _WIDER[kind]
    return kind


def first_misfit(values: Sequence[object], kind: str) -> tuple[int, str] | None:
    """(position, why) of the first value that does not fit `kind`, or None."""
    for n, v in enumerate(values):
        try:
            convert(v, kind)
        except NoFit as exc:
            return n, str(exc)
    return None
