"""How a hit looks to a person: title, subtitle (authors), year, tags, image and a snippet.

One function, `show`, used by the CLI tables, the HTTP API's hits and the web page (which draws what
the API returns), so a book looks the same everywhere. Which metadata field plays which role is
guessed from the field names (the first present wins) unless the collection's `display_fields`
setting names them, e.g. {"title": "name", "subtitle": "director", "filters": ["year"]}.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from embedscope.jsontypes import JSONMapping, JSONObject

ROLES = ("title", "subtitle", "tags", "year", "image")
#: role -> field names tried in order; a collection setting `display_fields` overrides
GUESSES: dict[str, tuple[str, ...]] = {
    "title": ("title", "name", "full_title", "headline", "label"),
    "subtitle": ("authors", "author", "artist", "director", "creator", "brand", "source"),
    "tags": ("categories", "category", "genres", "genre", "tags", "topics"),
    "year": ("published_year", "year", "release_year", "date"),
    "image": ("thumbnail", "image", "image_url", "cover", "poster"),
}
TITLE_CHARS = 80  # a title made from the text when there is no title field
SNIPPET_CHARS = 280
MAX_TAGS = 5


@dataclass(frozen=True)
class DisplayFields:
    """Which metadata field plays which role (None: the collection has no such field)."""

    title: str | None = None
    subtitle: str | None = None
    tags: str | None = None
    year: str | None = None
    image: str | None = None
    #: fields the page offers as filters (default: year, tags, subtitle)
    filters: tuple[str, ...] = field(default=())

    @classmethod
    def choose(cls, columns: Sequence[str], override: JSONMapping | None = None) -> DisplayFields:
        """Roles from the override where it names an existing field, else the first guess present."""
        cols = [str(c) for c in columns]
        override = override or {}
        chosen: dict[str, str | None] = {}
        for role in ROLES:
            wanted = override.get(role)
            chosen[role] = wanted if wanted in cols else next((n for n in GUESSES[role] if n in cols), None)
        wanted_filters = override.get("filters") or [chosen["year"], chosen["tags"], chosen["subtitle"]]
        filters = tuple(dict.fromkeys(f for f in wanted_filters if f and f in cols))
        return cls(**chosen, filters=filters)


@dataclass(frozen=True)
class Shown:
    """A hit as a person sees it."""

    title: str
    snippet: str
    subtitle: str | None = None
    year: str | None = None
    tags: list[str] = field(default_factory=list)
    image: str | None = None

    def to_dict(self) -> JSONObject:
        return asdict(self)


def _text(value: object) -> str | None:
    """A metadata value as display text: None for missing/NaN/empty, whole floats without '.0'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut + "…"


def show(text: str, metadata: JSONMapping | None, fields: DisplayFields) -> Shown:
    """What a person sees of an item (its text and metadata) given the collection's display fields."""
    meta = metadata or {}
    body = text or ""
    title = _text(meta.get(fields.title)) if fields.title else None
    if title and body.startswith(title):
        body = body[len(title) :].lstrip(" .:-\n")  # the text template often starts with the title
    if not title:
        title = _cut(body, TITLE_CHARS) or "(untitled)"
    subtitle = _text(meta.get(fields.subtitle)) if fields.subtitle else None
    tags_text = _text(meta.get(fields.tags)) if fields.tags else None
    tags = [t.strip() for t in tags_text.replace("|", ";").replace(",", ";").split(";")] if tags_text else []
    image = _text(meta.get(fields.image)) if fields.image else None
    return Shown(
        title=title,
        snippet=_cut(body, SNIPPET_CHARS),
        subtitle=subtitle.replace(";", ", ") if subtitle else None,
        year=_text(meta.get(fields.year)) if fields.year else None,
        tags=[t for t in tags if t][:MAX_TAGS],
        image=image if image and image.startswith(("http://", "https://")) else None,
    )
