"""The types of JSON data: records on disk, HTTP bodies, reports, options and item metadata.

Why one module: embedscope keeps every record it writes as JSON (a version's record, a recipe, an
experiment's log, a report) and takes user data as JSON-like values (metadata fields, `-p key=value`
options). `json.load` returns `Any`, and an item's metadata holds whatever the user's file had, so
the values of such an object cannot be typed more narrowly than `Any` without a cast at every read;
the code checks each key where it uses it (`validation`, `field_types`, each stage's option spec).
Naming the shape here keeps that one `Any` in one place, with its reason, instead of spelling
`dict[str, Any]` in every signature; everything else in `embedscope/` uses precise types, `object`
for a value it only checks or passes on, and `Any` only for a library's untyped object (said where).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

#: a JSON object (or a dict that becomes one): keys are text, values are JSON values
JSONObject: TypeAlias = dict[str, Any]
#: a read-only view of one (what a function that only reads a record accepts)
JSONMapping: TypeAlias = Mapping[str, Any]
#: one JSON value (a setting, a metadata field, an option): `json.load`'s result
JSONValue: TypeAlias = Any
