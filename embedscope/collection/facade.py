"""`Collection`: the public Python API. The CLI, the HTTP server and the web page are thin layers
over it, and it is a thin facade itself over modules that each own one job:
`opening` (where collections live), `items` (writing items; the views search derives from them),
`versions` (loading a version), `embedding` (writing one), `checks` (`info`'s and `check`'s
reports), and below it `search.pipeline` (every search) and `search.recipe` (recipes).

from embedscope import Collection
books = Collection.create("books")
books.ingest("books.csv", id_field="isbn13", template="{title}. {description}")
books.embed("minilm")
books.search("atmospheric, female lead, worldbuilding, funny", k=10, where="published_year >= 2000")
books.similar("9780002005883")
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypedDict, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.collection import checks, embedding, opening, versions
from embedscope.collection.items import ItemViews, check_id_field, stored_spec, update_record, write_items
from embedscope.collection.state import StoredState
from embedscope.collection.versions import VersionCache
from embedscope.display import DisplayFields
from embedscope.encoders.base import Encoder
from embedscope.encoders.document import Document
from embedscope.engines.base import ProgressFn
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.index.quantized import decoded
from embedscope.jsontypes import JSONMapping, JSONObject, JSONValue
from embedscope.names import check_name
from embedscope.search import recipe as _recipe
from embedscope.search.base import Hit
from embedscope.search.pipeline import SearchPipeline
from embedscope.search.rerank import WorkKey
from embedscope.search.versions import LoadedVersion
from embedscope.sources import Source, load_items
from embedscope.store import locate
from embedscope.store.base import Item, Store, VersionData, VersionInfo

HYBRID = _recipe.HYBRID  # `embed("hybrid")`: embeds a sparse and a dense version and a recipe fusing them


P = ParamSpec("P")
R = TypeVar("R")


def _holding_writer_lock(
    method: Callable[Concatenate[Collection, P], R],
) -> Callable[Concatenate[Collection, P], R]:
    """Run a Collection method holding its store's writer lock (re-entrant: nested calls are fine)."""

    @functools.wraps(method)
    def locked(self: Collection, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.store.writing():
            return method(self, *args, **kwargs)

    return locked


class _Run(TypedDict):
    """How `embed` runs (the same for both halves of a hybrid, but for the sparse half's engine)."""

    batch_size: int
    refit: bool
    progress: ProgressFn | None
    engine: str
    address: str | None


class Collection(StoredState):
    """Items with metadata plus embedding versions, one active (raw stored state: `StoredState`)."""

    def __init__(self, name: str, store: Store) -> None:
        self.name = name
        self.store = store
        self._items = ItemViews(store)
        self._loaded = VersionCache(store, name, self.document_hashes)
        #: the search path (`embedscope.search.pipeline`); the server makes its own with its cache
        self.pipeline = SearchPipeline(self)

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        root: str | Path | None = None,
        *,
        exist_ok: bool = True,
        store: str | None = None,
    ) -> Collection:
        """Create (or open) a collection. `store` is a PostgreSQL URL for the PostgreSQL + pgvector
        store; without it, $EMBEDSCOPE_STORE decides, else the embedded store (store/locate.py)."""
        return cls(name, opening.create_store(name, root, exist_ok=exist_ok, url=store))

    @classmethod
    def open(cls, name: str, root: str | Path | None = None) -> Collection:
        return cls(name, opening.open_store(name, root))

    @classmethod
    def create_from(
        cls,
        name: str,
        source: Source,
        root: str | Path | None = None,
        *,
        default_index: str | None = None,
        store: str | None = None,
        **ingest_args: Any,  # Any: `ingest`'s keyword arguments, passed on whole
    ) -> tuple[Collection, dict[str, int]]:
        """Ingest into `name`, creating it if needed (what `embedscope ingest -c NAME` does), in the
        store `create` picks; a failed ingest never leaves an empty collection behind (`ingest_new`)."""
        path = opening.collection_path(name, root)
        if not locate.exists(path):  # both ways check `default_index` before writing anything
            new, counts = opening.ingest_new(path, store, source, default_index, ingest_args)
            return cls(name, new), counts
        col = cls(name, locate.open_store(path, url=store))  # a contradicting `store` is an error
        if default_index is not None:
            col.set_default_index(default_index)
        return col, col.ingest(source, **ingest_args)

    def close(self) -> None:
        self.store.close()

    # --- items ------------------------------------------------------------------------------------
    def ingest(
        self,
        source: Source,
        *,
        id_field: str | None = None,
        text: str | None = None,
        template: str | None = None,
        metadata: Sequence[str] | None = None,
        types: str | Mapping[str, str] | None = None,
        fmt: str | None = None,
        encoding: str = "utf-8",
        from_text: bool | None = None,
        replace: bool = False,
    ) -> dict[str, int]:
        """Add or update items from a file, a DataFrame or records, in one atomic transaction.

        What is not given (id field, text field or template, metadata fields, each field's type) is
        what the collection stored at its last ingest, so every ingest and HTTP write reads records
        alike. `types`: "zip=text,year=int" or a mapping (field_types.py); `from_text`: values are
        text as written, typed as a CSV's are (default: CSV only). `replace=True` makes the
        collection equal to the input, and is the only way to change its id field. Returns counts:
        added, updated, unchanged, deleted (and retyped, when an input widened a field's type)."""
        stored = stored_spec(self.store)
        items, spec = load_items(
            source,
            id_field=id_field,
            text=text,
            template=template,
            metadata=metadata,
            types=types,
            fmt=fmt,
            encoding=encoding,
            from_text=from_text,
            stored=stored,
            replace=replace,
        )
        check_id_field(self.store, self.name, spec.id_field, replace=replace)
        return write_items(self.store, items, spec, replace=replace)

    def upsert(self, records: Sequence[JSONMapping], **kwargs: Any) -> dict[str, int]:  # Any: ingest's
        """Add or update records (`POST /items`), read by the stored spec as ingests are, so an item
        looks the same however it arrived (a chosen metadata field a record lacks is null)."""
        return self.ingest(records, **kwargs)

    def update(self, item_id: str, fields: JSONMapping) -> dict[str, int]:
        """Change some fields of one item (`PUT /items/{id}`); a template's text is rebuilt."""
        return self.upsert([update_record(self.store, self.name, item_id, fields)])

    def ids(self) -> list[str]:
        """Every item's id, in insertion order (reads no texts)."""
        return list(self.store.item_hashes())

    @property
    def location(self) -> str:
        """Where the collection lives: a folder (the embedded store) or a database URL (no password)."""
        return self.store.location

    def field_types(self) -> dict[str, str]:
        """Each kept field's type (field_types.py: text, int, float, bool or json), as stored."""
        return dict(spec.types) if (spec := stored_spec(self.store)) else {}

    def delete(self, ids: Sequence[str]) -> int:
        return self.store.delete_items(ids)

    def get(self, item_id: str) -> Item:
        item = self.store.get_items([item_id])[0]
        if item is None:
            raise NotFoundError(f"collection '{self.name}' has no item '{item_id}'")
        return item

    def get_items(self, ids: Sequence[str]) -> list[Item | None]:
        """The items of `ids`, in that order (None where an id is unknown)."""
        return self.store.get_items(ids)

    def items(self) -> list[Item]:
        return list(self.store.iter_items())

    def __len__(self) -> int:
        return self.store.count()

    def metadata_frame(self) -> tuple[pd.DataFrame, dict[str, int]]:
        """Metadata of all items as a frame (index = item id), cached per data revision."""
        return self._items.metadata_frame()

    def display_fields(self) -> DisplayFields:
        """Which metadata field is the title, subtitle (authors), tags, year, image: guessed from the
        field names unless the `display_fields` setting names them (see embedscope.display)."""
        return self._items.display_state()[1]

    def set_display_fields(self, fields: JSONObject) -> None:
        """Name the display fields, e.g. {"title": "name", "subtitle": "director"}."""
        self._items.set_display_fields(fields)

    def work_keys(self) -> dict[str, WorkKey | None]:
        """Item id -> the work it is an edition of (normalised title and authors), for collapsing
        repeated works in results; computed once per data revision."""
        return self._items.display_state()[2]

    # --- versions ---------------------------------------------------------------------------------
    def versions(self) -> list[VersionInfo]:
        return self.store.list_versions()

    @property
    def active_version(self) -> str:
        return versions.active_version(self.store, self.name)

    @property
    def default_search(self) -> str:
        """What a search with no version answers with: a recipe made the default by `activate`
        (e.g. `hybrid`), else the active version. The active version stays a stored version, since
        more-like-this, recommendations and projections need vectors of their own."""
        return self.default_search_using(self.recipes)

    def default_search_using(self, recipes: Callable[[], Mapping[str, _recipe.Recipe]]) -> str:
        """`default_search`, for a caller that reads the recipes itself (once) and passes the reader."""
        name = self.store.get_setting("default_search")
        if name and name in recipes():
            return name
        return self.active_version

    def activate(self, name: str) -> None:
        """Make a version, or a search recipe, what searches use by default."""
        versions.activate(self.store, self.name, name, self.recipes())

    def document(self, version: str | VersionInfo) -> Document:
        """How the version builds each item's document (its stored template; the item's text by default)."""
        return Document.parse(_info(self.store, version).document)

    def document_hashes(self, version: str | VersionInfo) -> dict[str, str]:
        """Item id -> the hash of the item's document as the version would build it now."""
        return self._items.document_hashes(self.document(version))

    def is_current(self, version: str | VersionInfo) -> bool:
        """The version encodes every item's document as it is now (nothing its document sees changed)."""
        return checks.is_current(self.store, _info(self.store, version), self.document_hashes)

    def delete_version(self, version: str) -> JSONObject:
        """Delete a version (items kept): `summary()`, "was_active", "broken_recipes" (that fused it)."""
        was_active = self._loaded.delete(version)
        broken = sorted(n for n, r in self.stored_recipes().items() if version in r.parts)
        return {**self.summary(), "was_active": was_active, "broken_recipes": broken}

    def set_default_index(self, kind: str) -> None:
        """The index new versions get unless `embed(index=...)` says otherwise."""
        self.store.set_setting("default_index", opening.check_index_kind(kind))

    @_holding_writer_lock
    def embed(
        self,
        encoder: str | Encoder = "minilm",
        params: JSONObject | None = None,
        *,
        version: str | None = None,
        index: str | None = None,
        index_params: JSONObject | None = None,
        batch_size: int = 64,
        refit: bool = False,
        activate: bool = False,
        progress: ProgressFn | None = None,
        engine: str = "local",
        address: str | None = None,
        document: str | None = None,
    ) -> VersionInfo:
        """Encode the collection into the embedding version `version` (default: the encoder name).
        `encoder`: a name, or an Encoder made by the caller (`tune`'s), fitted here unless it is.
        `document`: the template each item is encoded as (`encoders.document`, e.g. "{categories}.
        {text}"; BM25F boosts "{title^2} {text}"); None keeps the version's own, else the item's text.
        Only new or changed documents are encoded, the rest reused from this version or one with the
        same setup (`collection.embedding`; `refit` starts afresh). The writer lock is held
        throughout: a second writer waits briefly, then gets ConflictError "busy". `engine="ray"`
        encodes on a Ray cluster (`address`, else a local Ray); everything else is the same."""
        run = _Run(batch_size=batch_size, refit=refit, progress=progress, engine=engine, address=address)
        if encoder == HYBRID:
            if document is not None:
                raise EmbedscopeError(embedding.HYBRID_DOCUMENTS)
            return _embed_hybrid(self, params, activate=activate, **run)
        version = check_name(version or embedding.encoder_name(encoder), "version")
        embedding.embed_version(
            self.store,
            self.name,
            version,
            encoder,
            params,
            index=index,
            index_params=index_params,
            document=document,
            **run,
        )
        if activate:
            self.activate(version)
        self._loaded.forget(version)
        return self.version_info(version)

    @_holding_writer_lock
    def add_version(
        self,
        version: str,
        encoder: Encoder,
        data: VersionData,
        *,
        index: str,
        stats: JSONObject,
        content: str,
    ) -> VersionInfo:
        """Store vectors made outside `embed` (a behavioural version) by its write path (`add_made`)."""
        embedding.add_made(self.store, version, encoder, data, index=index, stats=stats, content=content)
        self._loaded.forget(version)
        return self.version_info(version)

    def check_embed(self, encoder: str, params: JSONObject | None = None, **where: JSONValue) -> list[str]:
        """Everything `embed` with these arguments (`version`, `index`, `index_params`) can know
        before it encodes, checked without writing or encoding (`embedding.check_embed`): the server
        answers a bad job with a 4xx, not a 202 and a failed job. Returns the versions it would write."""
        return embedding.check_embed(self.store, self.name, encoder, params, **where)

    # --- search recipes -----------------------------------------------------------------------------
    def recipes(self) -> dict[str, _recipe.Recipe]:
        """Stored search recipes, plus the implicit `hybrid` when a sparse and a dense version exist."""
        return _recipe.all_recipes(self.store, self.versions)

    def stored_recipes(self) -> dict[str, _recipe.Recipe]:
        """The recipes stored with the collection (`recipes` adds the implicit `hybrid`)."""
        return _recipe.stored_recipes(self.store)

    @_holding_writer_lock
    def create_recipe(
        self,
        name: str,
        parts: Sequence[str],
        *,
        fusion: str = _recipe.DEFAULT_FUSION,
        params: JSONObject | None = None,
        weights: Sequence[float] | None = None,
        depth: int = _recipe.DEFAULT_DEPTH,
        stages: JSONMapping | None = None,
        replace: bool = False,
    ) -> _recipe.Recipe:
        """Store a named search configuration fusing versions (replacing one only with `replace`);
        search it by its name. `stages`: query stages by name with their options
        (embedscope.search.query), e.g. {"split": {"fuse": "max"}, "rm3": {}}."""
        recipe = _recipe.make_recipe(
            name, parts, fusion=fusion, params=params, weights=weights, depth=depth, stages=stages
        )
        return _recipe.save_recipe(self.store, recipe, self.versions(), self.name, replace=replace)

    @_holding_writer_lock
    def delete_recipe(self, name: str) -> None:
        _recipe.delete_recipe(self.store, name, self.name)

    def changes_since(self, version: str | LoadedVersion | None = None) -> dict[str, list[str]]:
        """Ids added, changed (their document: a metadata change the document does not read is
        none) and deleted since `version` was written."""
        v = version if isinstance(version, LoadedVersion) else self.load_version(version)
        return checks.changes(self.store, v, self.document_hashes)

    def load_version(self, version: str | None = None) -> LoadedVersion:
        """The version's vectors, fitted encoder and index, cached until the version changes."""
        return self._loaded.load(version or self.active_version)

    def encoder(self, version: str | None = None) -> Encoder:
        return self.load_version(version).encoder

    def vectors(self, version: str | None = None) -> tuple[list[str], np.ndarray | sp.csr_matrix]:
        """The version's ids and vectors: float32 (f16/i8 codes decoded whole), or CSR (sparse)."""
        v = self.load_version(version)
        return v.data.ids, decoded(v.data.vectors)

    def vectors_made_by(self, encoder: JSONMapping, items: Sequence[Item]) -> np.ndarray | None:
        """Stored vectors of the items' texts by `encoder`; NaN where none (embedding.teacher_vectors)."""
        return embedding.teacher_vectors(self.store, encoder, items, [i.text for i in items])

    # --- search -----------------------------------------------------------------------------------
    def allowed_rows(
        self, v: LoadedVersion, where: str | None, exclude: Sequence[str] = ()
    ) -> np.ndarray | None:
        """Row mask: rows of items that still exist, match the filter and are not excluded."""
        return self._items.allowed_rows(v, where, exclude)

    def search_vectors(
        self,
        queries: np.ndarray | sp.csr_matrix,
        k: int = 10,
        *,
        version: str | LoadedVersion | None = None,
        where: str | None = None,
        exclude: Sequence[str] = (),
        exact: bool = False,
    ) -> list[list[Hit]]:
        """Nearest items for query vectors already in the version's space (one list per row)."""
        results = self.pipeline.search_vectors(
            queries, k, version=version, where=where, exclude=exclude, exact=exact
        )
        return [r.hits for r in results]

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        where: str | None = None,
        version: str | None = None,
        exact: bool = False,
        collapse: bool = True,
    ) -> list[Hit]:
        """Semantic search: encode the query with the version's encoder, then nearest items.

        `version` may name a recipe (e.g. "hybrid", see `recipes`), which fuses several versions.
        `collapse` keeps one edition of each work (same title and author), the best-ranked one."""
        return self.pipeline.search(query, k, using=version, where=where, exact=exact, collapse=collapse).hits

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        where: str | None = None,
        version: str | None = None,
        collapse: bool = True,
    ) -> list[Hit]:
        """More like this: items nearest to an item's own vector, the item itself (and, with
        `collapse`, its other editions) excluded."""
        return self.pipeline.similar(item_id, k, using=version, where=where, collapse=collapse).hits

    # --- description ------------------------------------------------------------------------------
    def info(self) -> JSONObject:
        """Items, metadata types, versions (stale, active, damaged files) and recipes (`checks.describe`)."""
        frame, recipes, stored = self.metadata_frame()[0], self.recipes(), self.stored_recipes()
        return checks.describe(
            self.name, self.store, frame, recipes, stored, lambda: self.default_search, self.document_hashes
        )

    def summary(self) -> JSONObject:
        """What `embedscope collections` and the server's listings show of the collection."""
        return checks.summary(self.store, self.name, len(self), lambda: self.default_search)

    def check(self) -> JSONObject:
        """Whether every version can answer, each damaged one with the commands that repair it
        (`checks.check_collection`); `embedscope check` prints it and exits 1 when not ok."""
        return checks.check_collection(self.name, self.store, self.load_version, self.document_hashes)

    # last: mypy reads a class's names in order, and this one shadows `list` in annotations below it
    @staticmethod
    def list(root: str | Path | None = None) -> list[str]:
        return opening.list_collections(root)


def _embed_hybrid(
    col: Collection,
    params: JSONObject | None,
    *,
    activate: bool,
    **kwargs: Any,  # Any: `embed`'s keywords
) -> VersionInfo:
    """`embed --encoder hybrid`: a sparse and a dense version (named after their encoders) and the
    recipe `hybrid` fusing them; `activate` makes the recipe the default search and the dense
    part the active version (more-like-this, recommendations and projections use its vectors)."""
    plan = _recipe.hybrid_shortcut(params)
    # the sparse half is count-based and fast in-process; only the dense half uses the engine
    local = {**kwargs, "engine": "local", "address": None}
    col.embed(plan.sparse, plan.sparse_params, version=plan.sparse, document=plan.sparse_document, **local)
    dense = col.embed(
        plan.dense, plan.dense_params, version=plan.dense, document=plan.dense_document, **kwargs
    )
    col.create_recipe(HYBRID, [plan.sparse, plan.dense], **plan.recipe, replace=True)
    if activate:
        col.activate(plan.dense)
        col.activate(HYBRID)
    return dense


def _info(store: Store, version: str | VersionInfo) -> VersionInfo:
    return version if isinstance(version, VersionInfo) else store.get_version(version)
