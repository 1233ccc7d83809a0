"""What the search path hands out: hits, and a result that says how it was made."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONMapping, JSONObject, JSONValue

#: an option's default and its check (an error message, or None when the value is fine)
OptionSpec = dict[str, tuple[JSONValue, Callable[[object], str | None]]]


def check_options(what: str, spec: OptionSpec, given: JSONMapping) -> JSONObject:
    """The full option set of a fusion method or a query stage (defaults filled in); an
    EmbedscopeError naming `what` for unknown or bad options."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        valid = ", ".join(f"{k}={v[0]}" for k, v in spec.items()) or "none"
        raise EmbedscopeError(f"unknown {what} parameter(s) {', '.join(unknown)}; valid: {valid}")
    out = {}
    for name, (default, check) in spec.items():
        value = given.get(name, default)
        problem = check(value)
        if problem:
            raise EmbedscopeError(f"{what} parameter {name}={value!r}: {problem}")
        out[name] = value
    return out


def positive_int(v: object) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else "must be a positive integer"


def number_in(lo: float, hi: float) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"must be a number between {lo} and {hi}"

    return check


def one_of(choices: Sequence[str]) -> Callable[[object], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def boolean(v: object) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


@dataclass
class Hit:
    id: str
    #: the ranking's own score (cosine, BM25, a fused sum): its scale depends on what answered
    score: float
    text: str
    metadata: JSONObject = field(default_factory=dict)
    #: 0..1 on a stated scale (search/relevance.py), for a text query answered by a measured dense
    #: model; None where there is none (BM25 alone, more-like-this)
    relevance: float | None = None

    def to_dict(self) -> JSONObject:
        return asdict(self)


#: the stages a query passes through, timed in seconds (the server's metrics and responses show them)
STAGES = ("encode", "search", "rank")


@dataclass
class SearchResult:
    hits: list[Hit]
    #: the version or recipe that answered
    using: str
    #: its encoder, or for a recipe its parts: "hybrid(bm25+minilm)"
    encoder: str
    #: seconds per stage: encode (query -> vectors), search (filter mask + candidate lookup),
    #: rank (fusion, rerank, items -> hits)
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    #: every query vector came from the caller's cache
    cached: bool = False
    #: parts that knew none of the query's terms and were left out of the fusion
    skipped_parts: list[str] = field(default_factory=list)
    #: candidates dropped as repeats of a better-ranked work
    collapsed: int = 0

    @property
    def good_match(self) -> bool | None:
        """False: "no good match", no hit reaches relevance GOOD (the nearest items are still the
        hits); None: the search has no relevance scale (search/relevance.py)."""
        from embedscope.search.relevance import good_match

        return good_match([h.relevance for h in self.hits])

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())
