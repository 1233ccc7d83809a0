"""Documents: how an item's fields become the text one embedding version encodes.

By default a version encodes the item's text as ingested (`ingest --text/--template`). A version may
instead name a *document template* over the item's fields: its metadata fields and `text` (the
ingested text), e.g. `"{title}. {authors}. {categories}. {text}"` for a dense version. A field may
carry a boost, `{title^2}`: its value is written that many times. For BM25 that is BM25F in the
simple form of Robertson, Zaragoza and Taylor (2004), "Simple BM25 extension to multiple weighted
fields": a field's term frequencies count `boost` times and the document length grows with them, one
length normalisation for all fields. (Whole-number boosts only: the weighted counts must stay term
counts for the encoder contract, which reads texts.)

The document is part of the version's stored configuration (`VersionInfo.document`), and each row's
content hash is the hash of the exact document text that was encoded (`document_hash`): a change of
an item's metadata re-encodes only the versions whose document uses that field.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONMapping

#: the field that holds the item's ingested text
TEXT = "text"
MAX_BOOST = 10
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_ .-]*?)(?:\^(\d+))?$")


def document_hash(text: str) -> str:
    """The content hash of one document text: what decides whether a row must be encoded again."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Document:
    """A parsed document template: literal text and (field, boost) slots; `template` None = the
    item's text as ingested."""

    template: str | None = None

    @classmethod
    def parse(cls, template: str | None) -> Document:
        """Validate a template; '{text}' alone (or None / '') is the default document."""
        if template is None or not template.strip() or template.strip() == "{text}":
            return cls(None)
        doc = cls(template)
        if not doc.slots():
            raise EmbedscopeError(
                f"document template {template!r} names no field; e.g. '{{title}}. {{authors}}. {{text}}'"
            )
        return doc

    @property
    def is_default(self) -> bool:
        return self.template is None

    def _parts(self) -> list[tuple[str, str | None, int]]:
        """(literal, field or None, boost) in order."""
        if self.template is None:
            return [("", TEXT, 1)]
        out: list[tuple[str, str | None, int]] = []
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise EmbedscopeError(f"document template {self.template!r}: {exc}") from None
        for literal, name, spec, conversion in parsed:
            if name is None:
                out.append((literal, None, 1))
                continue
            if spec or conversion:
                raise EmbedscopeError(
                    f"document template {self.template!r}: no format specs or conversions in '{{{name}}}'; "
                    "write a field as {title} or with a boost as {title^2}"
                )
            m = _FIELD.match(name.strip())
            if not m:
                raise EmbedscopeError(
                    f"document template {self.template!r}: '{{{name}}}' is not a field name "
                    "(a field, optionally with a whole-number boost: {title^2})"
                )
            boost = int(m.group(2) or 1)
            if not 1 <= boost <= MAX_BOOST:
                raise EmbedscopeError(
                    f"document template {self.template!r}: boost {boost} of '{m.group(1)}' must be "
                    f"between 1 and {MAX_BOOST}"
                )
            out.append((literal, m.group(1), boost))
        return out

    def slots(self) -> list[tuple[str, int]]:
        """(field, boost) of every field the document reads."""
        return [(f, b) for _, f, b in self._parts() if f is not None]

    def fields(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.slots()))

    def check_fields(self, available: Iterable[str]) -> None:
        """Every field is `text` or a metadata field of the collection; else an error naming them."""
        known = {TEXT, *available}
        missing = [f for f in self.fields() if f not in known]
        if missing:
            raise EmbedscopeError(
                f"document template {self.template!r} names unknown field(s) {', '.join(missing)}; "
                f"fields: {', '.join(sorted(known))}"
            )

    def render(self, text: str, metadata: JSONMapping) -> str:
        """The document of one item. A missing field is left out together with the separator after
        it ('{title}. {authors}. {text}' without authors is 'Title. text'); a list value (e.g. several
        categories) is joined by ', '."""
        if self.template is None:
            return text
        parts = self._parts()
        slots = [(lit, name, boost) for lit, name, boost in parts if name is not None]
        tail = parts[-1][0] if parts[-1][1] is None else ""
        out, sep = [slots[0][0]], None
        for i, (_, name, boost) in enumerate(slots):
            value = _value(text if name == TEXT else metadata.get(name))
            if not value:
                continue
            if sep is not None:
                out.append(sep)
            out.append(" ".join([value] * boost))
            # the literal written between this field and the next one
            sep = slots[i + 1][0] if i + 1 < len(slots) else ""
        return ("".join(out) + tail).strip()

    def uses(self, field: str) -> bool:
        return field in self.fields()


def _value(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(s for s in (_value(v) for v in value) if s)
    return str(value).strip()


__all__ = ["TEXT", "Document", "document_hash"]
