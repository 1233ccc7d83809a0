"""Typed request and response bodies of the HTTP API.

They are the API's documentation (FastAPI renders them into the OpenAPI spec at /docs) and its
validation (pydantic rejects wrong types, empty queries and out-of-range k with a 422 that says
which field is wrong, before any of our code runs).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

K_MAX = 1000
QUERY_MAX = 2000  # characters; a "vibe" is a sentence, and MiniLM reads 256 word pieces at most
WHERE_MAX = 2000


class _Strict(BaseModel):
    # unknown fields are an error, not silently ignored (a typo like "wehre" would drop the filter)
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    query: str = Field(
        min_length=1,
        max_length=QUERY_MAX,
        pattern=r"\S",
        description="free text: a title, a question, a vibe",
        examples=["atmospheric, female lead, worldbuilding, funny"],
    )
    k: int = Field(10, ge=1, le=K_MAX, description="number of results")
    where: str | None = Field(
        None,
        max_length=WHERE_MAX,
        description="metadata filter",
        examples=["published_year >= 2000 and categories contains 'Fiction'"],
    )
    version: str | None = Field(
        None, description="embedding version or search recipe, e.g. hybrid (default: the active version)"
    )
    encoder: str | None = Field(
        None, description="pick the version built with this encoder (alternative to `version`)"
    )


class SimilarRequest(_Strict):
    id: str = Field(min_length=1, description="item id")
    k: int = Field(10, ge=1, le=K_MAX)
    where: str | None = Field(None, max_length=WHERE_MAX)
    version: str | None = None
    encoder: str | None = None


class RecommendRequest(_Strict):
    user: str | None = Field(None, min_length=1, description="user id (from the interactions data)")
    items: list[str] | None = Field(
        None, min_length=1, max_length=K_MAX, description="item ids the user liked (when there is no user id)"
    )
    k: int = Field(10, ge=1, le=K_MAX)
    where: str | None = Field(None, max_length=WHERE_MAX)
    version: str | None = None
    profile: str = Field(
        "mean", description="user profile: mean, recency, multi, ... (see embedscope recommend)"
    )


class CompareRequest(_Strict):
    query: str = Field(min_length=1, max_length=QUERY_MAX, pattern=r"\S")
    versions: list[str] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="versions or recipes (default: every version and recipe)",
    )
    k: int = Field(10, ge=1, le=K_MAX)
    where: str | None = Field(None, max_length=WHERE_MAX)


class HitOut(BaseModel):
    """A hit as a person sees it (embedscope.display.show), with the raw metadata beside it."""

    id: str
    score: float
    title: str = Field(description="display title (collection setting `display_fields` or a guess)")
    snippet: str = Field(description="the start of the item's text")
    subtitle: str | None = Field(None, description="e.g. the authors")
    year: str | None = None
    tags: list[str] = Field([], description="e.g. the categories")
    image: str | None = Field(None, description="thumbnail URL (http or https)")
    metadata: dict[str, Any]


class Stages(BaseModel):
    encode_ms: float = Field(0.0, description="query -> vector (0 when answered from the query cache)")
    search_ms: float = Field(0.0, description="filter mask + candidate lookup in each version's index")
    rank_ms: float = Field(0.0, description="fusion, collapsing repeated works, items and display fields")


class SearchResponse(BaseModel):
    collection: str
    version: str
    encoder: str
    query: str | None = None
    k: int
    where: str | None = None
    cached: bool = Field(False, description="the query vector came from the LRU cache")
    took_ms: float
    stages: Stages
    hits: list[HitOut]


class CompareRun(BaseModel):
    version: str
    encoder: str | None = None
    took_ms: float | None = None
    hits: list[HitOut] = []
    error: str | None = Field(None, description="why this version could not answer (others still do)")


class CompareResponse(BaseModel):
    collection: str
    query: str
    k: int
    runs: list[CompareRun]
    overlap: dict[str, float] = Field(
        description="Jaccard overlap of the result ids, for each pair 'a|b' of versions that answered"
    )


class RecommendedOut(HitOut):
    because: list[str] = Field([], description="ids of the history items nearest to this one")


class RecommendResponse(BaseModel):
    collection: str
    user: str | None
    profile: str
    version: str | None
    history_size: int
    fallback: bool = Field(description="True when these are popular items, not personalised")
    message: str | None
    took_ms: float
    hits: list[RecommendedOut]


class ItemOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]
    title: str


class FilterField(BaseModel):
    field: str
    kind: str = Field(description="'range' (numbers: min/max) or 'contains' (text)")
    min: float | None = None
    max: float | None = None


class Display(BaseModel):
    title: str | None = Field(None, description="field shown as the card title")
    subtitle: str | None = Field(None, description="e.g. authors")
    tags: str | None = Field(None, description="e.g. categories")
    year: str | None = None
    image: str | None = Field(None, description="thumbnail URL field")
    filters: list[FilterField] = []
    suggestions: list[str] = Field([], description="example queries shown as buttons")


class VersionOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    encoder: dict[str, Any]
    dim: int
    count: int
    index: dict[str, Any]
    sparse: bool
    metric: str
    active: bool
    stale: bool
    created_at: str
    updated_at: str
    stats: dict[str, Any] = {}


class RecipeOut(BaseModel):
    name: str
    parts: list[str] = Field(description="the versions it fuses")
    fusion: str = Field(description="rrf | convex")
    params: dict[str, Any]
    weights: list[float] = Field(description="one per part")
    depth: int = Field(description="candidates per part before fusion")
    stored: bool = Field(True, description="False: the implicit default `hybrid` (no stored recipe)")


class CollectionInfo(BaseModel):
    name: str
    items: int
    id_field: str | None
    text: dict[str, Any] | None
    metadata_fields: dict[str, str]
    active_version: str | None
    default_search: str | None = Field(
        None, description="what a search with no version uses: the active version or a recipe (e.g. hybrid)"
    )
    versions: list[VersionOut]
    recipes: list[RecipeOut] = Field([], description="search recipes: search them by name like a version")
    display: Display


class CollectionSummary(BaseModel):
    name: str
    items: int
    active_version: str | None
    versions: list[str]


class Health(BaseModel):
    status: str
    collections: list[CollectionSummary]
    writes_enabled: bool


class UpsertRequest(_Strict):
    records: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=10_000,
        description="items as in the ingested file: the id field, the text field(s), metadata fields",
    )


class DeleteRequest(_Strict):
    ids: list[str] = Field(min_length=1, max_length=10_000)


class WriteResult(BaseModel):
    collection: str
    counts: dict[str, int]
    note: str = Field(
        "search uses the embedded items; call POST .../versions/{version}/embed to embed the changes",
        description="what to do next",
    )


class EmbedRequest(_Strict):
    encoder: str | None = Field(
        None, description="default: the version's own encoder (needed for a new version)"
    )
    params: dict[str, Any] | None = Field(None, description="encoder parameters (default: the version's)")
    index: str | None = Field(None, description="hnsw | exact (default: as before)")
    activate: bool = False
    refit: bool = Field(
        False, description="re-fit the encoder (e.g. a new BM25 vocabulary) and encode everything"
    )


class EmbedJob(BaseModel):
    id: str
    collection: str
    version: str
    status: str = Field("queued", description="queued | running | done | failed")
    started_at: str | None = None
    finished_at: str | None = None
    done: int = 0
    total: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    error: str = Field(description="what is wrong, in one line")
    detail: list[dict[str, Any]] | None = None
