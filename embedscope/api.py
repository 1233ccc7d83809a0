"""The public Python API. The CLI, the HTTP server and the web page are thin layers over it.

from embedscope import Collection
books = Collection.create("books")
books.ingest("books.csv", id_field="isbn13", template="{title}. {description}")
books.embed("minilm")
books.search("atmospheric, female lead, worldbuilding, funny", k=10, where="published_year >= 2000")
books.similar("9780002005883")
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.display import DisplayFields
from embedscope.encoders.base import Encoder
from embedscope.encoders.registry import create_encoder
from embedscope.engines import create_engine
from embedscope.engines.base import ProgressFn
from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.filters import evaluate_filter
from embedscope.index import VectorIndex, create_index
from embedscope.search import recipe as _recipe
from embedscope.search.base import Hit
from embedscope.search.pipeline import SearchPipeline
from embedscope.search.rerank import WorkKey, work_key
from embedscope.sources import TextSpec, load_items
from embedscope.store import locate
from embedscope.store.base import Item, Store, VersionData, VersionInfo, fingerprint
from embedscope.store.embedded import now

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HYBRID = _recipe.HYBRID  # `embed("hybrid")`: embeds a sparse and a dense version and a recipe fusing them


def default_root() -> Path:
    """Where collections live: $EMBEDSCOPE_HOME, else ~/.embedscope."""
    return Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")


@dataclass
class LoadedVersion:
    info: VersionInfo
    data: VersionData
    encoder: Encoder
    index: VectorIndex
    row_of: dict[str, int]
    #: changes whenever the version is rewritten; key caches of anything derived from it on this
    revision: str = ""
    #: (data revision, position of each row's item in the metadata frame or -1 if deleted)
    item_positions: tuple[int, np.ndarray] | None = None


def _holding_writer_lock(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a Collection method holding its store's writer lock (re-entrant: nested calls are fine)."""

    @functools.wraps(method)
    def locked(self: Collection, *args: Any, **kwargs: Any) -> Any:
        with self.store.writing():
            return method(self, *args, **kwargs)

    return locked


def _check_index_kind(kind: str) -> str:
    from embedscope.index.base import INDEX_KINDS

    if kind not in INDEX_KINDS:
        raise EmbedscopeError(f"unknown index '{kind}'; valid: {', '.join(INDEX_KINDS)}")
    return kind


def _check_name(name: str, what: str = "collection") -> str:
    if not _NAME.match(name or ""):
        raise EmbedscopeError(f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.' (max 64)")
    return name


class Collection:
    """Items with metadata plus any number of embedding versions, one of them active."""

    def __init__(self, name: str, store: Store) -> None:
        self.name = name
        self.store = store
        self._versions: dict[str, tuple[str, LoadedVersion]] = {}
        self._frame: tuple[int, pd.DataFrame, dict[str, int]] | None = None
        self._display: tuple[int, DisplayFields, dict[str, WorkKey | None]] | None = None
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
        _check_name(name)
        path = Path(root or default_root()) / name
        if locate.exists(path) and not exist_ok:
            raise EmbedscopeError(f"collection '{name}' already exists at {path}")
        return cls(name, locate.open_store(path, create=True, url=store))

    @classmethod
    def open(cls, name: str, root: str | Path | None = None) -> Collection:
        _check_name(name)
        try:
            return cls(name, locate.open_store(Path(root or default_root()) / name))
        except NotFoundError:
            known = ", ".join(cls.list(root)) or "none"
            raise NotFoundError(f"collection '{name}' does not exist (collections: {known})") from None

    @classmethod
    def create_from(
        cls,
        name: str,
        source: str | Path | pd.DataFrame | Sequence[dict[str, Any]],
        root: str | Path | None = None,
        *,
        default_index: str | None = None,
        store: str | None = None,
        **ingest_args: Any,
    ) -> tuple[Collection, dict[str, int]]:
        """Ingest into `name`, creating it if needed (what `embedscope ingest -c NAME` does), in the
        store `create` picks (`store`: a PostgreSQL URL).

        The input is read and validated before a new collection is created, and a new collection
        whose first write fails anyway (a full disk) is removed again: a failed ingest never leaves
        an empty collection behind."""
        _check_name(name)
        if default_index is not None:
            _check_index_kind(default_index)
        path = Path(root or default_root()) / name
        if locate.exists(path):
            col = cls(name, locate.open_store(path, url=store))  # a contradicting `store` is an error
            if default_index is not None:
                col.set_default_index(default_index)
            return col, col.ingest(source, **ingest_args)
        replace = ingest_args.pop("replace", False)
        items, spec = load_items(source, **ingest_args)
        try:
            col = cls.create(name, root, store=store)
        except BaseException:  # e.g. no space for the database: remove what was begun
            shutil.rmtree(path, ignore_errors=True)
            raise
        try:
            if default_index is not None:
                col.set_default_index(default_index)
            counts = col._write_items(items, spec, ingest_args.get("id_field", "id"), replace=replace)
        except BaseException:
            col._discard_if_empty()
            raise
        return col, counts

    def _discard_if_empty(self) -> None:
        """Remove this collection if it holds nothing (a creation whose first write failed)."""
        if len(self) == 0 and not self.versions():
            path = self.store.path
            self.store.destroy()
            self.close()
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def list(root: str | Path | None = None) -> list[str]:
        return locate.list_collections(Path(root or default_root()))

    def close(self) -> None:
        self.store.close()

    def folder(self, name: str) -> Path:
        """A folder for files derived from this collection (experiment logs, projection caches),
        beside its stored data so they move and are deleted with it; created on first use."""
        base = getattr(self.store, "path", None) or default_root() / self.name
        path = Path(base) / _check_name(name, "folder")
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- items ------------------------------------------------------------------------------------
    def ingest(
        self,
        source: str | Path | pd.DataFrame | Sequence[dict[str, Any]],
        *,
        id_field: str = "id",
        text: str | None = None,
        template: str | None = None,
        metadata: Sequence[str] | None = None,
        fmt: str | None = None,
        encoding: str = "utf-8",
        replace: bool = False,
    ) -> dict[str, int]:
        """Add or update items from a file, a DataFrame or records, in one atomic transaction.

        `replace=True` makes the collection equal to the input (items not in it are deleted); it is
        also the only way to change the collection's id field, since the same items under other
        ids would be stored twice."""
        items, spec = load_items(
            source,
            id_field=id_field,
            text=text,
            template=template,
            metadata=metadata,
            fmt=fmt,
            encoding=encoding,
            default_text=self.store.get_setting("text_spec"),
        )
        stored_id = self.store.get_setting("id_field")
        if stored_id is not None and stored_id != id_field and not replace and len(self):
            raise EmbedscopeError(
                f"collection '{self.name}' identifies items by '{stored_id}', not '{id_field}': "
                f"ingest with --id-field {stored_id} (or --replace to re-key every item)"
            )
        return self._write_items(items, spec, id_field, replace=replace)

    def _write_items(
        self, items: list[Item], spec: TextSpec, id_field: str, *, replace: bool
    ) -> dict[str, int]:
        settings = {"text_spec": {"field": spec.field, "template": spec.template}, "id_field": id_field}
        return self.store.upsert_items(items, replace_all=replace, settings=settings)

    def upsert(self, records: Sequence[dict[str, Any]], **kwargs: Any) -> dict[str, int]:
        kwargs.setdefault("id_field", self.store.get_setting("id_field", "id"))
        return self.ingest(records, **kwargs)

    def delete(self, ids: Sequence[str]) -> int:
        return self.store.delete_items(ids)

    def get(self, item_id: str) -> Item:
        item = self.store.get_items([item_id])[0]
        if item is None:
            raise NotFoundError(f"collection '{self.name}' has no item '{item_id}'")
        return item

    def items(self) -> list[Item]:
        return list(self.store.iter_items())

    def texts(self) -> list[str]:
        return [i.text for i in self.store.iter_items()]

    def __len__(self) -> int:
        return self.store.count()

    def metadata_frame(self) -> tuple[pd.DataFrame, dict[str, int]]:
        """Metadata of all items as a frame (index = item id), cached per data revision."""
        rev = self.store.data_revision()
        if self._frame is None or self._frame[0] != rev:
            items = list(self.store.iter_items())
            frame = pd.DataFrame.from_records([i.metadata for i in items], index=[i.id for i in items])
            self._frame = (rev, frame, {i.id: n for n, i in enumerate(items)})
        return self._frame[1], self._frame[2]

    def display_fields(self) -> DisplayFields:
        """Which metadata field is the title, subtitle (authors), tags, year, image: guessed from the
        field names unless the `display_fields` setting names them (see embedscope.display)."""
        return self._display_state()[1]

    def set_display_fields(self, fields: dict[str, Any]) -> None:
        """Name the display fields, e.g. {"title": "name", "subtitle": "director"}."""
        self.store.set_setting("display_fields", fields)
        self._display = None

    def work_keys(self) -> dict[str, WorkKey | None]:
        """Item id -> the work it is an edition of (normalised title and authors), for collapsing
        repeated works in results; computed once per data revision."""
        return self._display_state()[2]

    def _display_state(self) -> tuple[int, DisplayFields, dict[str, WorkKey | None]]:
        rev = self.store.data_revision()
        if self._display is None or self._display[0] != rev:
            frame, _ = self.metadata_frame()
            fields = DisplayFields.choose(list(frame.columns), self.store.get_setting("display_fields") or {})
            keys: dict[str, WorkKey | None] = {}
            if fields.title:
                cols = [c for c in (fields.title, fields.subtitle) if c]
                for item_id, row in zip(frame.index, frame[cols].to_dict("records"), strict=True):
                    keys[item_id] = work_key(row, fields)
            self._display = (rev, fields, keys)
        return self._display

    # --- versions ---------------------------------------------------------------------------------
    def versions(self) -> list[VersionInfo]:
        return self.store.list_versions()

    @property
    def active_version(self) -> str:
        name = self.store.get_setting("active_version")
        if not name:
            raise NotFoundError(
                f"collection '{self.name}' has no embeddings yet; run `embedscope embed {self.name}`"
            )
        return name

    @property
    def default_search(self) -> str:
        """What a search with no version answers with: a recipe made the default by `activate`
        (e.g. `hybrid`), else the active version. The active version stays a stored version, since
        more-like-this, recommendations and projections need vectors of their own."""
        return self._default_search(self.recipes)

    def _default_search(self, recipes: Callable[[], Mapping[str, _recipe.Recipe]]) -> str:
        """`default_search`, for a caller that reads the recipes itself (once) and passes the reader."""
        name = self.store.get_setting("default_search")
        if name and name in recipes():
            return name
        return self.active_version

    def activate(self, name: str) -> None:
        """Make a version, or a search recipe, what searches use by default."""
        if name in {v.name for v in self.versions()}:
            self.store.activate_version(name)
            self.store.set_setting("default_search", None)
        elif name in self.recipes():
            self.store.set_setting("default_search", name)
        else:
            versions = ", ".join(v.name for v in self.versions()) or "none"
            recipes = ", ".join(self.recipes()) or "none"
            raise NotFoundError(
                f"collection '{self.name}' has no version or recipe '{name}' "
                f"(versions: {versions}; recipes: {recipes})"
            )

    def delete_version(self, version: str) -> None:
        self.store.delete_version(version)
        self._versions.pop(version, None)

    def set_default_index(self, kind: str) -> None:
        """The index new versions get unless `embed(index=...)` says otherwise."""
        self.store.set_setting("default_index", _check_index_kind(kind))

    @_holding_writer_lock
    def embed(
        self,
        encoder: str | Encoder = "minilm",
        params: dict[str, Any] | None = None,
        *,
        version: str | None = None,
        index: str | None = None,
        index_params: dict[str, Any] | None = None,
        batch_size: int = 64,
        refit: bool = False,
        activate: bool = False,
        progress: ProgressFn | None = None,
        engine: str = "local",
        address: str | None = None,
    ) -> VersionInfo:
        """Encode the collection into the embedding version `version` (default: the encoder name).

        If the version exists with the same encoder configuration, only new and changed items are
        encoded (the fitted encoder is reused unless `refit`); deleted items are dropped. The
        collection's writer lock is held throughout: a second writer waits briefly, then gets
        ConflictError "busy", rather than both encoding and the last one silently winning.
        `engine="ray"` encodes on a Ray cluster (`address`, else a local Ray); everything else,
        the incremental choice and the write through the store included, is the same.
        `encoder` may also be an Encoder the caller made (`embedscope tune`'s, which learns from
        pairs beyond the items): it is fitted here unless it already is (or `refit`)."""
        if isinstance(encoder, str) and encoder == HYBRID:
            return self._embed_hybrid(
                params,
                batch_size=batch_size,
                refit=refit,
                activate=activate,
                progress=progress,
                engine=engine,
                address=address,
            )
        if isinstance(encoder, Encoder):
            if params:
                raise EmbedscopeError("give the parameters to the encoder object, not to embed()")
            enc, encoder = encoder, encoder.name
        else:
            enc = create_encoder(encoder, params)
        version = _check_name(version or encoder, "version")
        runner = create_engine(engine, address=address)
        runner.check(enc)
        items = list(self.store.iter_items())
        if not items:
            raise EmbedscopeError(f"collection '{self.name}' is empty; ingest items first")
        old = {v.name: v for v in self.versions()}.get(version)
        kind = (
            index
            or (old.index["kind"] if old else None)
            or self.store.get_setting("default_index")
            or ("exact" if enc.sparse else "hnsw")
        )
        if kind == "hnsw" and enc.sparse:
            raise EmbedscopeError(f"encoder '{encoder}' is sparse: use --index exact")
        idx = self.store.new_index(
            kind, index_params or (old.index.get("params", {}) if old and old.index["kind"] == kind else {})
        )
        if idx.params.get("dtype") == "i8" and enc.metric != "cosine":
            raise EmbedscopeError(
                f"hnsw dtype i8 normalises vectors: it suits cosine encoders, not '{encoder}' "
                f"({enc.metric}); use dtype f16 or f32"
            )
        old_rows: dict[str, int] = {}
        started = time.perf_counter()
        if old is not None and old.encoder == enc.config() and not refit:
            data, enc, _ = self.store.read_version(version)
            current = {i.id: i.hash for i in items}
            old_rows = {
                i: r
                for r, (i, h) in enumerate(zip(data.ids, data.hashes, strict=True))
                if current.get(i) == h
            }
            old_vectors = data.vectors
        elif enc.requires_fit and (refit or not enc.fitted):
            enc.fit_items([i.text for i in items], [i.metadata for i in items])
        fit_s = time.perf_counter() - started
        todo = [i for i in items if i.id not in old_rows]
        new_vectors = (
            runner.encode(enc, [i.text for i in todo], batch_size=batch_size, progress=progress)
            if todo
            else None
        )
        row_ids = [i.id for i in items]
        if old_rows:
            # assemble rows in item order: reused rows from the old matrix, the rest freshly encoded
            pos_new = {i.id: n for n, i in enumerate(todo)}
            parts = []
            for iid in row_ids:
                parts.append(("old", old_rows[iid]) if iid in old_rows else ("new", pos_new[iid]))
            vectors = _gather(old_vectors, new_vectors, parts)
        else:
            vectors = new_vectors
        encode_s = time.perf_counter() - started - fit_s
        t0 = time.perf_counter()
        idx.build(vectors)
        index_s = time.perf_counter() - t0
        hashes = [i.hash for i in items]
        stamp = now()
        nbytes = (
            (vectors.data.nbytes + vectors.indices.nbytes + vectors.indptr.nbytes)
            if sp.issparse(vectors)
            else vectors.nbytes
        )
        info = VersionInfo(
            name=version,
            encoder=enc.config(),
            dim=int(vectors.shape[1]),
            count=len(items),
            fingerprint=fingerprint(zip(row_ids, hashes, strict=True)),
            index={"kind": kind, "params": idx.params},
            sparse=bool(sp.issparse(vectors)),
            metric=enc.metric,
            created_at=old.created_at if old else stamp,
            updated_at=stamp,
            stats={
                "encoded": len(todo),
                "reused": len(old_rows),
                "fit_seconds": round(fit_s, 3),
                "encode_seconds": round(encode_s, 3),
                "items_per_second": round(len(todo) / encode_s, 1) if todo and encode_s > 0 else None,
                "index_seconds": round(index_s, 3),
                "vector_bytes": int(nbytes),
                "index_bytes": int(idx.nbytes()),
                **({"engine": runner.stats} if todo else {}),
            },
        )
        self.store.write_version(
            info, VersionData(row_ids, hashes, vectors), enc, None if kind == "exact" else idx
        )
        if activate:
            self.activate(version)
        self._versions.pop(version, None)
        return {v.name: v for v in self.versions()}[version]

    def _embed_hybrid(self, params: dict[str, Any] | None, *, activate: bool, **kwargs: Any) -> VersionInfo:
        """The `embed --encoder hybrid` shortcut: embed a sparse and a dense version (named after their
        encoders) and store the recipe `hybrid` fusing them (see embedscope.search.recipe);
        `activate` makes the recipe the default search and the dense part the active version, whose
        vectors more-like-this, recommendations and projections use (BM25's word counts would
        otherwise be active: the sparse part is embedded first)."""
        plan = _recipe.hybrid_shortcut(params)
        # the sparse half is count-based and fast in-process; only the dense half uses the engine
        local = {**kwargs, "engine": "local", "address": None}
        self.embed(plan.sparse, plan.sparse_params, version=plan.sparse, **local)
        dense = self.embed(plan.dense, plan.dense_params, version=plan.dense, **kwargs)
        self.create_recipe(HYBRID, [plan.sparse, plan.dense], **plan.recipe)
        if activate:
            self.activate(plan.dense)
            self.activate(HYBRID)
        return dense

    # --- search recipes -----------------------------------------------------------------------------
    def recipes(self) -> dict[str, _recipe.Recipe]:
        """Stored search recipes, plus the implicit `hybrid` when a sparse and a dense version exist."""
        return _recipe.all_recipes(self)

    @_holding_writer_lock
    def create_recipe(
        self,
        name: str,
        parts: Sequence[str],
        *,
        fusion: str = _recipe.DEFAULT_FUSION,
        params: dict[str, Any] | None = None,
        weights: Sequence[float] | None = None,
        depth: int = _recipe.DEFAULT_DEPTH,
    ) -> _recipe.Recipe:
        """Store (or replace) a named search configuration fusing versions; search it by its name."""
        recipe = _recipe.make_recipe(name, parts, fusion=fusion, params=params, weights=weights, depth=depth)
        return _recipe.save_recipe(self, recipe)

    @_holding_writer_lock
    def delete_recipe(self, name: str) -> None:
        _recipe.delete_recipe(self, name)

    def load_version(self, version: str | None = None) -> LoadedVersion:
        """The version's vectors, fitted encoder and index, cached until the version changes."""
        name = version or self.active_version
        for _ in range(5):
            revision = self.store.version_revision(name)
            cached = self._versions.get(name)
            if cached and cached[0] == revision:
                return cached[1]
            info = self.store.get_version(name)
            data, enc, idx = self.store.read_version(name)
            if self.store.version_revision(name) == revision:
                break  # record and files are of one revision (a writer may have replaced it meanwhile)
        else:
            raise ConflictError(f"collection '{self.name}' is busy: version '{name}' keeps changing; retry")
        if idx is None:
            idx = create_index("exact").build(data.vectors)
        elif hasattr(idx, "attach_vectors"):
            idx.attach_vectors(np.asarray(data.vectors))
        loaded = LoadedVersion(info, data, enc, idx, {i: r for r, i in enumerate(data.ids)}, revision)
        self._versions[name] = (revision, loaded)
        return loaded

    def encoder(self, version: str | None = None) -> Encoder:
        return self.load_version(version).encoder

    def vectors(self, version: str | None = None) -> tuple[list[str], np.ndarray | sp.csr_matrix]:
        v = self.load_version(version)
        return v.data.ids, v.data.vectors

    # --- search -----------------------------------------------------------------------------------
    def allowed_rows(
        self, v: LoadedVersion, where: str | None, exclude: Sequence[str] = ()
    ) -> np.ndarray | None:
        """Row mask: rows of items that still exist, match the filter and are not excluded."""
        frame, pos = self.metadata_frame()
        rev = self.store.data_revision()
        if v.item_positions is None or v.item_positions[0] != rev:
            # computed once per version and data revision, not per query (a hot path)
            v.item_positions = (rev, np.array([pos.get(i, -1) for i in v.data.ids], dtype=np.int64))
        item_pos = v.item_positions[1]
        ok = item_pos >= 0  # rows whose item was deleted since embedding never match
        if where is None and not exclude and ok.all():
            return None
        if where:
            matches = evaluate_filter(where, frame)
            ok = ok & matches[np.maximum(item_pos, 0)] if len(matches) else np.zeros_like(ok)
        for item_id in exclude:
            r = v.row_of.get(item_id)
            if r is not None:
                ok[r] = False
        return ok

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
    def info(self) -> dict[str, Any]:
        current = fingerprint(self.store.item_hashes().items())
        active = self.store.get_setting("active_version")
        versions = []
        for v in self.versions():
            d = v.to_dict()
            d["stale"] = v.fingerprint != current
            d["active"] = v.name == active
            d["problems"] = self.store.inspect_version(v.name)  # cheap: `check` goes further
            versions.append(d)
        frame, _ = self.metadata_frame()
        stored = _recipe.stored_recipes(self)
        return {
            "name": self.name,
            "path": str(self.store.path),
            "store": self.store.location,
            "items": len(self),
            "id_field": self.store.get_setting("id_field"),
            "text": self.store.get_setting("text_spec"),
            "metadata_fields": {c: str(frame[c].dtype) for c in frame.columns},
            "active_version": active,
            "default_search": self.default_search if active else None,
            "versions": versions,
            "recipes": [{**r.to_dict(), "stored": n in stored} for n, r in self.recipes().items()],
        }

    def check(self) -> dict[str, Any]:
        """Whether every version can answer: its files present and loadable, ids, vectors and index
        of one size, the index finding the version's own vectors, the encoder producing vectors of
        the version's dimension. Each damaged version comes with the commands that repair it.

        Returns {"name", "ok", "problems" (collection-level), "versions": [{"name", "ok",
        "problems", "repair"}]}; `embedscope check` prints it and exits 1 when not ok."""
        versions = []
        for v in self.versions():
            problems = self.store.inspect_version(v.name) or self._check_loaded(v)
            versions.append(
                {
                    "name": v.name,
                    "ok": not problems,
                    "problems": problems,
                    "repair": self._repair_hint(v) if problems else None,
                }
            )
        problems = []
        active = self.store.get_setting("active_version")
        if active is not None and active not in {v["name"] for v in versions}:
            problems.append(
                f"the active version '{active}' does not exist: `embedscope activate {self.name} VERSION`"
            )
        ok = not problems and all(v["ok"] for v in versions)
        return {"name": self.name, "ok": ok, "problems": problems, "versions": versions}

    def _check_loaded(self, info: VersionInfo, sample: int = 20) -> list[str]:
        """The deep half of `check`: load the version as a search would, then ask it questions."""
        from embedscope.encoders.registry import encoder_class

        try:
            v = self.load_version(info.name)
        except EmbedscopeError as exc:
            return [str(exc)]
        problems = []
        vectors, n = v.data.vectors, v.data.vectors.shape[0]
        values = vectors.data if sp.issparse(vectors) else np.asarray(vectors)
        if not np.isfinite(values).all():
            problems.append("some vectors hold NaN or infinite values")
        if len(v.row_of) != len(v.data.ids):
            problems.append(f"{len(v.data.ids) - len(v.row_of)} duplicate id(s) among the vectors")
        if v.index.size != n:
            problems.append(f"the index holds {v.index.size} vectors, the version {n}")
        elif n:
            rows = np.unique(np.linspace(0, n - 1, num=min(n, sample)).astype(np.int64))
            queries = vectors[rows] if sp.issparse(vectors) else np.asarray(vectors[rows])
            own = (
                np.asarray(queries.multiply(queries).sum(axis=1)).ravel()
                if sp.issparse(queries)
                else np.einsum("ij,ij->i", queries, queries)
            )
            try:
                found_rows, scores = v.index.search(queries, 1)
            except Exception as exc:  # check reports any failure of the index, whatever raised it
                problems.append(f"the index cannot search: {exc.__class__.__name__}: {exc}")
            else:
                # itself, or a row with the same score (duplicate texts have identical vectors)
                found = (found_rows[:, 0] == rows) | (scores[:, 0] >= own - 1e-2)
                if found.mean() < 0.9:
                    problems.append(
                        f"the index does not find the version's own vectors ({int((~found).sum())} of "
                        f"{len(rows)} sampled rows missed): it does not match the vectors"
                    )
        if encoder_class(info.encoder["name"]).encodes_text and v.data.ids:
            first = self.store.get_items(v.data.ids[:1])[0]
            try:
                width = v.encoder.encode([first.text if first else "check"]).shape[1]
            except Exception as exc:  # as above: the point is to say what fails
                problems.append(f"the encoder cannot encode: {exc.__class__.__name__}: {exc}")
            else:
                if width != info.dim:
                    problems.append(
                        f"the encoder makes vectors of dimension {width}, the version has {info.dim}"
                    )
        return problems

    def _repair_hint(self, info: VersionInfo) -> str:
        """The commands that rebuild a version from the items, or remove it."""
        from embedscope.encoders.registry import encoder_class

        name = info.encoder["name"]
        defaults = encoder_class(name).defaults
        params = [
            f" --param {shlex.quote(f'{k}={json.dumps(v)}')}"
            for k, v in info.encoder.get("params", {}).items()
            if defaults.get(k) != v
        ]
        version = f" --version {info.name}" if info.name != name else ""
        rebuild = f"embedscope embed {self.name} --encoder {name}{version}{''.join(params)} --refit"
        return f"rebuild it: `{rebuild}`; or remove it: `embedscope delete-version {self.name} {info.name}`"


def _gather(old: Any, new: Any, parts: list[tuple[str, int]]) -> Any:
    """Stack rows taken from the old and the new matrix, in the given order."""
    n_old = old.shape[0]
    take = np.array([r if src == "old" else n_old + r for src, r in parts], dtype=np.int64)
    if sp.issparse(old) or sp.issparse(new):
        stacked = sp.csr_matrix(old) if new is None else sp.vstack([sp.csr_matrix(old), sp.csr_matrix(new)])
        return stacked.tocsr()[take]
    stacked = np.asarray(old) if new is None else np.concatenate([np.asarray(old), np.asarray(new)])
    return stacked[take].astype(np.float32, copy=False)
