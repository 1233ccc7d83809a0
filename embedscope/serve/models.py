"""Typed request and response bodies of the HTTP API.

They are the API's documentation (FastAPI renders them into the OpenAPI spec at /docs) and its
validation (pydantic rejects wrong types, empty queries and out-of-range k with a 422 that says
which field is wrong, before any of our code runs).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from embedscope.jsontypes import JSONObject

K_MAX = 1000
QUERY_MAX = 2000  # characters; a "vibe" is a sentence, and MiniLM reads 256 word pieces at most
WHERE_MAX = 2000
SESSION_MAX = 128
SESSION_PATTERN = r"^[A-Za-z0-9_.:-]+$"  # an opaque id; kept plain because it is written to the event log


def _not_a_flag(value: object) -> object:
    # pydantic's lax mode reads JSON true as 1; a query string ("10") still parses as usual
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true or false")
    return value


#: an integer field that refuses booleans (`"k": true` is a 422, not k = 1)
Count = Annotated[int, BeforeValidator(_not_a_flag)]
#: a JSON-only flag: true or false, never 1, 0 or "yes"
Flag = Annotated[bool, Field(strict=True)]


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
    k: Count = Field(10, ge=1, le=K_MAX, description="number of results")
    where: str | None = Field(
        None,
        max_length=WHERE_MAX,
        description="metadata filter: comparisons, and/or/not, in [...]; `contains` is a substring test "
        "('Fiction' also matches 'Juvenile Nonfiction'), `has` an element test (a list's element or a "
        "comma-separated part of a text), `startswith` a prefix test; all ignore case",
        examples=["published_year >= 2000 and categories has 'Fiction'"],
    )
    version: str | None = Field(
        None,
        description="embedding version or search recipe, e.g. hybrid (default: the collection's default "
        "search, `default_search` in its info)",
    )
    encoder: str | None = Field(
        None, description="pick the version built with this encoder (alternative to `version`)"
    )
    session: str | None = Field(
        None,
        min_length=1,
        max_length=SESSION_MAX,
        pattern=SESSION_PATTERN,
        description="the searcher's session id (the page keeps one in localStorage): while an online "
        "experiment runs, a search with a session and no version or encoder is served the experiment",
    )


class SimilarRequest(_Strict):
    id: str = Field(min_length=1, description="item id")
    k: Count = Field(10, ge=1, le=K_MAX)
    where: str | None = Field(None, max_length=WHERE_MAX)
    version: str | None = None
    encoder: str | None = None


class RecommendRequest(_Strict):
    user: str | None = Field(None, min_length=1, description="user id (from the interactions data)")
    items: list[str] | None = Field(
        None, min_length=1, max_length=K_MAX, description="item ids the user liked (when there is no user id)"
    )
    k: Count = Field(10, ge=1, le=K_MAX)
    where: str | None = Field(None, max_length=WHERE_MAX)
    version: str | None = None
    profile: str | None = Field(
        None,
        description="user profile: mean, recency, multi (see embedscope recommend); default: the one "
        "measured with the default version, else mean",
    )


class CompareRequest(_Strict):
    query: str = Field(min_length=1, max_length=QUERY_MAX, pattern=r"\S")
    versions: list[str] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="versions or recipes (default: every version and recipe)",
    )
    k: Count = Field(10, ge=1, le=K_MAX)
    where: str | None = Field(None, max_length=WHERE_MAX)


class HitOut(BaseModel):
    """A hit as a person sees it (embedscope.display.show), with the raw metadata beside it."""

    id: str
    score: float = Field(
        description="the ranking's own score: cosine, BM25 or a fused sum, on no fixed scale; "
        "compare within one list only"
    )
    relevance: float | None = Field(
        None,
        description="0..1 on a stated scale: (cosine - 0.2) / 0.5 of the query and the item in the "
        "measured dense model (all-MiniLM-L6-v2; a recipe's dense part), clipped; >= 0.5 is a good "
        "match. Null where there is no such model (BM25 alone, more-like-this). docs/serve.md",
    )
    match: str | None = Field(
        None, description="relevance in words: strong (>= 0.75), good (>= 0.5), weak (>= 0.25), poor"
    )
    title: str = Field(description="display title (collection setting `display_fields` or a guess)")
    snippet: str = Field(description="the start of the item's text")
    subtitle: str | None = Field(None, description="e.g. the authors")
    year: str | None = None
    tags: list[str] = Field([], description="e.g. the categories")
    image: str | None = Field(None, description="thumbnail URL (http or https)")
    metadata: JSONObject


class Stages(BaseModel):
    encode_ms: float = Field(0.0, description="query -> vector (0 when answered from the query cache)")
    search_ms: float = Field(0.0, description="filter mask + candidate lookup in each version's index")
    rank_ms: float = Field(0.0, description="fusion, collapsing repeated works, items and display fields")


class ExperimentShown(BaseModel):
    """The running experiment a search was part of: what POST .../click needs to log a click."""

    name: str
    method: str = Field(description="interleave | ab")
    impression: str = Field(description="id of this result list; send it back with each click")
    side: str | None = Field(None, description="A/B: the side this session is bucketed to (a or b)")


class SearchResponse(BaseModel):
    collection: str
    version: str = Field(description="the version or recipe that answered; both sides' when interleaved")
    encoder: str
    query: str | None = None
    k: int
    where: str | None = None
    cached: bool = Field(False, description="the query vector came from the LRU cache")
    took_ms: float
    stages: Stages
    hits: list[HitOut]
    good_match: bool | None = Field(
        None,
        description="false: no good match, no hit reaches relevance 0.5 (the nearest items are still "
        "returned); null: no relevance scale (see HitOut.relevance)",
    )
    experiment: ExperimentShown | None = Field(
        None, description="set when the hits are an online experiment's list (see docs/online.md)"
    )


class CompareRun(BaseModel):
    """One configuration's answer: the shape `compare --json` prints too (compare.py `to_json`)."""

    target: str | None = Field(None, description="what was asked for: a version, recipe or encoder")
    version: str
    encoder: str | None = None
    source: str | None = Field(None, description='"version minilm", "recipe hybrid(...)", "on the fly"')
    fit_s: float = 0.0
    took_ms: float | None = None
    encode_ms: float | None = None
    search_ms: float | None = None
    hits: list[HitOut] = []
    error: str | None = Field(None, description="why this version could not answer (others still do)")


class CompareResponse(BaseModel):
    collection: str
    query: str
    k: int
    where: str | None = None
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
    version_reason: str | None = Field(None, description="why this version (see embedscope recommend)")
    history_size: int
    fallback: bool = Field(description="True when these are popular items, not personalised")
    message: str | None
    took_ms: float
    hits: list[RecommendedOut]


class ItemOut(BaseModel):
    id: str
    text: str
    metadata: JSONObject
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
    encoder: JSONObject
    dim: int
    count: int
    index: JSONObject
    sparse: bool
    metric: str
    active: bool
    stale: bool
    created_at: str
    updated_at: str
    stats: JSONObject = {}
    document: str | None = Field(None, description="the document template (None: the item's text)")


class RecipeOut(BaseModel):
    name: str
    parts: list[str] = Field(description="the versions it fuses")
    fusion: str = Field(description="rrf | convex")
    params: JSONObject
    weights: list[float] = Field(description="one per part")
    depth: int = Field(description="candidates per part before fusion")
    stages: dict[str, JSONObject] = Field(
        {}, description="query stages (split, terms, rm3, rocchio, adaptive) with their options"
    )
    stored: bool = Field(True, description="False: the implicit default `hybrid` (no stored recipe)")


class CollectionInfo(BaseModel):
    name: str
    items: int
    id_field: str | None
    text: JSONObject | None
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
    active_version: str | None = Field(
        description="the version whose vectors more-like-this, recommendations and maps use"
    )
    default_search: str | None = Field(
        None, description="what a search with no version uses: the active version or a recipe"
    )
    versions: list[str]


class Health(BaseModel):
    status: str
    collections: list[CollectionSummary]
    writes_enabled: bool


class UpsertRequest(_Strict):
    records: list[JSONObject] = Field(
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
    params: JSONObject | None = Field(None, description="encoder parameters (default: the version's)")
    index: str | None = Field(None, description="hnsw | exact (default: as before)")
    activate: Flag = False
    refit: Flag = Field(
        False, description="re-fit the encoder (e.g. a new BM25 vocabulary) and encode everything"
    )
    document: str | None = Field(
        None,
        max_length=2000,
        description="what each item is encoded as: a template over its metadata fields and {text}, e.g. "
        "'{title}. {authors}. {text}', '{title^2} {text}' (BM25F boost); default: the version's own",
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
    result: JSONObject | None = None


class ErrorOut(BaseModel):
    error: str = Field(description="what is wrong, in one line")
    detail: list[JSONObject] | None = None


class ExperimentStart(_Strict):
    a: str = Field(min_length=1, description="side A: a version or a search recipe (e.g. minilm)")
    b: str = Field(min_length=1, description="side B, compared with A (e.g. hybrid)")
    method: Literal["interleave", "ab"] = Field(
        "interleave", description="interleave: one merged list per query; ab: each session sees one side"
    )
    name: str | None = Field(None, description="default: A-vs-B")


class ExperimentOut(BaseModel):
    name: str
    a: str
    b: str
    method: str
    status: str = Field(description="running | stopped")
    started_at: str
    stopped_at: str | None = None


class ExperimentReport(ExperimentOut):
    """`embedscope experiment report --json`: the fields depend on the method (docs/online.md)."""

    model_config = ConfigDict(extra="allow")
    impressions: int
    clicked_impressions: int
    winner: str | None = Field(description="a, b, or null while no side wins at the significance level")
    verdict: str
    test: JSONObject = Field(description="name and p-value of the significance test")


class ClickRequest(_Strict):
    experiment: str = Field(min_length=1, max_length=64, description="`experiment.name` of the search answer")
    impression: str = Field(min_length=1, max_length=64, description="`experiment.impression` of the answer")
    position: Count = Field(ge=0, lt=K_MAX, description="0-based position of the clicked result in that list")
    item: str | None = Field(None, max_length=1000, description="its id; checked against the list if given")


class ClickOut(BaseModel):
    experiment: str
    impression: str
    position: int
    item: str
    logged_at: str
    duplicate: bool = Field(
        False, description="this position of the list was clicked before: logged once, nothing written now"
    )


class LegendEntry(BaseModel):
    label: str
    color: str


class ProjectionOut(BaseModel):
    """A version's items in 2-D (embedscope.projection), as the page's map draws them."""

    collection: str
    version: str = Field(description="the version drawn (a recipe draws its first dense part)")
    method: str = Field(description="pca | umap | tsne")
    sample: int
    seed: int
    cached: bool = Field(description="the coordinates came from the projection cache")
    seconds: float = Field(description="time to compute them (0 when cached)")
    available: list[str] = Field(description="methods with coordinates cached for this version and sample")
    ids: list[str]
    titles: list[str]
    details: list[str] = Field([], description="per point: authors · year · categories, shown on hover")
    x: list[float]
    y: list[float]
    color_by: str | None = None
    colors: list[str] | None = Field(None, description="a colour per point when `color_by` is set")
    legend: list[LegendEntry] = []
