"""Search recipes: named search configurations that fuse several embedding versions ("hybrid").

A recipe is data, not an encoder: its parts are version names, and it says how their candidate
lists are fused (a method from `fusion.FUSIONS` with its parameters), how much each part weighs and
how deep each part is searched before fusing. Recipes live in the collection's settings
(`Store.get_setting("recipes")`), so every store backend keeps them, and a recipe name is accepted
wherever a version name is for search.

    books.create_recipe("hybrid", ["bm25", "minilm"], fusion="convex", weights=[0.3, 0.7],
                        params={"normalization": "tmm"})
    books.search("cozy mystery", version="hybrid")

A collection without a stored `hybrid` recipe still has one when it holds a sparse and a dense
version: BM25 (or another sparse version) with the active dense version, fused with the defaults
below (`default_recipe`).

This module is pure: it parses, validates and stores recipes through the `Settings` interface (a
`Store` is one) and the version list it is given; it never imports the collection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from embedscope.encoders.document import Document
from embedscope.encoders.registry import create_encoder, encoder_class
from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.jsontypes import JSONMapping, JSONObject, JSONValue
from embedscope.names import check_name
from embedscope.search.fusion import fusion_method
from embedscope.search.query import check_stages, describe

if TYPE_CHECKING:
    from embedscope.store.base import VersionInfo

SETTING = "recipes"
HYBRID = "hybrid"  # the name `embed --encoder hybrid` and the implicit default recipe use
#: fuse deep enough that an item ranked low by one part can still rise (per part, before fusion)
DEFAULT_DEPTH = 100
#: a recipe's fusion when none is named: a convex combination of z-score-normalised scores with
#: equal weights. Chosen by 5-fold cross-validation over SciFact's queries (10 shuffles; held-out
#: nDCG@10 0.7308 against RRF's 0.7192; weight 0.5 picked in 47 of 50 training splits, in the middle
#: of a plateau) and confirmed on the books vibe development set (docs/evaluation.md,
#: bench/bench_hybrid.py). Equal weights need no tuning; z-scores put both parts on one scale.
DEFAULT_FUSION = "convex"
DEFAULT_PARAMS: JSONObject = {"normalization": "zscore", "missing": "cutoff"}
#: what `hybrid` (sparse part, dense part) is when nobody says otherwise: the implicit recipe,
#: `embed --encoder hybrid` and `evaluate`'s hybrid. make_recipe keyword arguments; the one place to
#: change the default (weights, if given, are in the order sparse, dense).
DEFAULT_HYBRID: JSONObject = {
    "fusion": DEFAULT_FUSION,
    "params": dict(DEFAULT_PARAMS),
    "weights": None,
    "depth": DEFAULT_DEPTH,
    # a query of more than 40 words is also searched sentence by sentence, each part's runs fused by
    # the mean of their z-scores with the whole query's: on the books dev set's 40 long requests
    # nDCG@10 0.723 -> 0.768 (CV held-out 0.588 -> 0.596 over all 106 queries; picked in 40 of 50
    # training splits); short queries (and all of SciFact's) never reach it (docs/evaluation.md)
    "stages": {"split": {"by": "sentence", "fuse": "convex", "min_words": 40, "whole": True}},
}


@dataclass(frozen=True)
class Recipe:
    """Parts (version names), fusion method + parameters, per-part weights, candidate depth, and the
    query stages (`search.query`: split, terms, rm3, rocchio, adaptive; none by default)."""

    name: str
    parts: tuple[str, ...]
    fusion: str = DEFAULT_FUSION
    params: JSONObject = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    #: one per part, summing to 1 (None = equal weights)
    weights: tuple[float, ...] | None = None
    depth: int = DEFAULT_DEPTH
    #: stage name -> its options, every option filled in (`search.query.check_stages`)
    stages: dict[str, JSONObject] = field(default_factory=dict)

    @property
    def part_weights(self) -> tuple[float, ...]:
        return self.weights or tuple(1.0 / len(self.parts) for _ in self.parts)

    def to_dict(self) -> JSONObject:
        d = asdict(self)
        d["parts"], d["weights"] = list(self.parts), list(self.part_weights)
        return d

    @classmethod
    def from_dict(cls, data: JSONMapping) -> Recipe:
        weights = data.get("weights")
        return cls(
            name=str(data["name"]),
            parts=tuple(data["parts"]),
            fusion=str(data.get("fusion", DEFAULT_FUSION)),
            params=dict(data.get("params") or {}),
            weights=tuple(float(w) for w in weights) if weights else None,
            depth=int(data.get("depth", DEFAULT_DEPTH)),
            stages={k: dict(v) for k, v in (data.get("stages") or {}).items()},
        )

    def label(self) -> str:
        """What served it, for people: 'hybrid(bm25+minilm)'."""
        return f"{self.name}({'+'.join(self.parts)})"

    def describe(self) -> str:
        """Everything it does, for people: parts and weights, fusion, depth, stages."""
        parts = " + ".join(f"{p} ({w:.2f})" for p, w in zip(self.parts, self.part_weights, strict=True))
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        stages = f"; stages: {describe(self.stages)}" if self.stages else ""
        return f"{parts}, fusion {self.fusion} ({params}), {self.depth} candidates per part{stages}"


def make_recipe(
    name: str,
    parts: Sequence[str],
    *,
    fusion: str = DEFAULT_FUSION,
    params: JSONMapping | None = None,
    weights: Sequence[float] | None = None,
    depth: int = DEFAULT_DEPTH,
    stages: JSONMapping | None = None,
) -> Recipe:
    """A validated recipe (versions are not checked here; `validate_against` does that). One part is
    enough when the recipe has query stages (e.g. BM25 with RM3)."""
    check_name(name, "recipe")
    parts = tuple(p.strip() for p in parts if p and p.strip())
    if len(parts) < (1 if stages else 2):
        raise EmbedscopeError(
            "a recipe fuses at least two versions, e.g. --parts bm25,minilm (one, with query stages)"
        )
    if len(set(parts)) != len(parts):
        raise EmbedscopeError(f"a version appears twice in the parts: {', '.join(parts)}")
    full_params = fusion_method(fusion).check(dict(params or {}))  # defaults filled in
    norm: tuple[float, ...] | None = None
    if weights is not None:
        w = [float(x) for x in weights]
        if len(w) != len(parts):
            raise EmbedscopeError(f"{len(w)} weight(s) for {len(parts)} parts; give one per part")
        if any(x < 0 or x != x for x in w) or sum(w) <= 0:
            raise EmbedscopeError("weights must be >= 0 and not all 0")
        norm = tuple(x / sum(w) for x in w)
    if not 1 <= int(depth) <= 10_000:
        raise EmbedscopeError("depth (candidates per part) must be between 1 and 10000")
    return Recipe(name, parts, fusion, full_params, norm, int(depth), check_stages(stages, len(parts)))


def validate_against(recipe: Recipe, versions: Sequence[VersionInfo], collection: str) -> None:
    """Every part is one of the collection's `versions` that can encode a query text; the name is
    not a version's. `collection`: its name, for the messages."""

    by_name = {v.name: v for v in versions}
    if recipe.name in by_name:
        raise EmbedscopeError(f"'{recipe.name}' is a version of '{collection}'; name the recipe otherwise")
    for part in recipe.parts:
        info = by_name.get(part)
        if info is None:
            known = ", ".join(by_name) or "none"
            raise NotFoundError(
                f"recipe part '{part}' is not a version of '{collection}' (versions: {known})"
            )
        if not encoder_class(info.encoder["name"]).encodes_text:
            raise EmbedscopeError(f"version '{part}' ({info.encoder['name']}) cannot encode a query text")


@dataclass(frozen=True)
class HybridShortcut:
    """What `embed --encoder hybrid` builds: two versions and the recipe fusing them."""

    sparse: str = "bm25"
    sparse_params: JSONObject = field(default_factory=dict)
    dense: str = "minilm"
    dense_params: JSONObject = field(default_factory=dict)
    #: document templates of the two versions (embedscope.encoders.document; None: the item's text)
    sparse_document: str | None = None
    dense_document: str | None = None
    #: make_recipe keyword arguments: fusion, params, weights, depth
    recipe: JSONObject = field(default_factory=dict)


def hybrid_shortcut(params: JSONMapping | None) -> HybridShortcut:
    """Read `embed --encoder hybrid --param ...`: sparse, dense, sparse_params, dense_params,
    sparse_document, dense_document (the two versions) and fusion, params, weights, depth, stages
    (the recipe); checked before any encoding."""

    p = dict(params or {})
    encoder_keys = ("sparse", "sparse_params", "dense", "dense_params", "sparse_document", "dense_document")
    recipe_keys = ("fusion", "params", "weights", "depth", "stages")
    unknown = sorted(set(p) - set(encoder_keys) - set(recipe_keys))
    if unknown:
        raise EmbedscopeError(
            f"hybrid has no parameter {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(encoder_keys + recipe_keys)}"
        )
    given = {k: p[k] for k in recipe_keys if k in p}
    recipe = {**DEFAULT_HYBRID, **given}
    if "fusion" in given and "params" not in given:
        recipe.pop("params")  # the default's parameters are those of the default fusion
    shortcut = HybridShortcut(**{k: p[k] for k in encoder_keys if k in p}, recipe=recipe)
    for template in (shortcut.sparse_document, shortcut.dense_document):
        Document.parse(template)  # a bad template fails before anything is encoded
    sparse = create_encoder(shortcut.sparse, shortcut.sparse_params)
    dense = create_encoder(shortcut.dense, shortcut.dense_params)
    if not sparse.sparse or dense.sparse:
        raise EmbedscopeError(
            "hybrid needs a sparse encoder as 'sparse' (e.g. bm25) and a dense one as 'dense'"
        )
    make_recipe(HYBRID, [shortcut.sparse, shortcut.dense], **shortcut.recipe)  # validates the fusion settings
    return shortcut


# --- storage (through the Store contract's settings) -------------------------------------------------
class Settings(Protocol):
    """Where recipes are kept: a collection's settings, read and written as `Store` does."""

    def get_setting(self, key: str, default: JSONValue = None) -> JSONValue: ...

    def set_setting(self, key: str, value: JSONValue) -> None: ...


def stored_recipes(settings: Settings) -> dict[str, Recipe]:
    out = {n: Recipe.from_dict(d) for n, d in (settings.get_setting(SETTING) or {}).items()}
    legacy = settings.get_setting(HYBRID)  # written by `embed --encoder hybrid` before recipes existed
    if legacy and HYBRID not in out:
        weighted = legacy.get("fusion") == "weighted"
        alpha = float(legacy.get("alpha", 0.5))
        out[HYBRID] = make_recipe(
            HYBRID,
            [legacy["sparse"], legacy["dense"]],
            fusion="convex" if weighted else "rrf",
            params={"normalization": "minmax"} if weighted else {"k": int(legacy.get("rrf_k", 60))},
            weights=[alpha, 1 - alpha] if weighted else None,
        )
    return out


def save_recipe(
    settings: Settings,
    recipe: Recipe,
    versions: Sequence[VersionInfo],
    collection: str,
    *,
    replace: bool = False,
) -> Recipe:
    """Validate `recipe` against the collection's `versions`, then store it. A stored recipe of its
    name is replaced only with `replace` (the same definition again is fine): a second `hybrid
    create` must not silently overwrite the `hybrid` searches use (issue 17)."""
    validate_against(recipe, versions, collection)
    old = stored_recipes(settings).get(recipe.name)
    if old is not None and not replace and old.to_dict() != recipe.to_dict():
        raise ConflictError(
            f"collection '{collection}' already has a recipe '{recipe.name}' ({old.label()}); give "
            "another name, or replace it (CLI: --replace)"
        )
    all_ = {n: r.to_dict() for n, r in stored_recipes(settings).items()}
    all_[recipe.name] = recipe.to_dict()
    settings.set_setting(SETTING, all_)
    return recipe


def delete_recipe(settings: Settings, name: str, collection: str) -> None:
    stored = stored_recipes(settings)
    if name not in stored:
        known = ", ".join(stored) or "none"
        raise NotFoundError(f"collection '{collection}' has no stored recipe '{name}' (recipes: {known})")
    del stored[name]
    settings.set_setting(SETTING, {n: r.to_dict() for n, r in stored.items()})
    if name == HYBRID:
        settings.set_setting(HYBRID, None)


def default_recipe(settings: Settings, versions: Sequence[VersionInfo]) -> Recipe | None:
    """BM25 (else any sparse version) + the active dense version (else any dense one), default fusion;
    None when the collection (its `versions`) lacks a sparse or a dense text version."""

    versions = [v for v in versions if encoder_class(v.encoder["name"]).encodes_text]
    sparse = [v.name for v in versions if v.sparse]
    dense = [v.name for v in versions if not v.sparse]
    if not sparse or not dense:
        return None
    active = settings.get_setting("active_version")
    bm25 = [v.name for v in versions if v.sparse and v.encoder.get("name") == "bm25"]
    return make_recipe(
        HYBRID, [(bm25 or sparse)[0], active if active in dense else dense[0]], **DEFAULT_HYBRID
    )


def all_recipes(settings: Settings, versions: Callable[[], Sequence[VersionInfo]]) -> dict[str, Recipe]:
    """Stored recipes, plus the implicit `hybrid` when none is stored under that name and it can be
    made from the collection's versions (`versions` reads them, only when needed)."""
    out = stored_recipes(settings)
    if HYBRID in out:
        return out  # the usual case once `embed --encoder hybrid` ran: no version list to read
    listed = versions()
    if HYBRID not in {v.name for v in listed}:
        implicit = default_recipe(settings, listed)
        if implicit is not None:
            out[HYBRID] = implicit
    return out
