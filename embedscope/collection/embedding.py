"""Writing an embedding version: the incremental `embed` of a collection.

Reads the items, renders each one's document (`encoders.document`), encodes only the items whose
document is new or changed, fits learning encoders, encodes through an engine, builds the index and
writes the version through the store, in one call that `Collection.embed` makes while holding the
collection's writer lock. Both stores write through here, so reuse behaves the same in each.

The reuse rule, one for every store and encoder:

- **A version's row hash is the hash of the exact document text its encoder saw** (`document_hash`),
  so a re-ingest that changes only metadata the document does not read re-encodes nothing.
- **A vector is reused** by a version whose *setup* (the encoder's name and every parameter,
  precision included, and the document template: everything that changes a vector) is that of the
  version holding it (`Encoder.same_vectors`: a precision that runs the same arithmetic on this CPU
  counts as the same), for a row whose hash equals the document's hash now: the version itself
  when its setup is unchanged (its fitted state continues), else the other version with the same
  setup holding the most current rows. So a new version that differs only in its index
  (`--index exact`, `--index-param dtype=i8`) copies every vector.
- A fitted learning Encoder object the caller passes (`tune`'s) is used as it is: configs can be
  equal where weights are not (a tuned model trained on other items), so nothing is copied.
- Versions written before documents existed hold each row's item content hash (text and
  metadata, `content_hash`); such a row still holds while its item is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from embedscope.clock import now
from embedscope.encoders.base import Encoder, Vectors
from embedscope.encoders.document import Document, document_hash
from embedscope.encoders.registry import create_encoder
from embedscope.engines import create_engine
from embedscope.engines.base import Engine, ProgressFn
from embedscope.errors import EmbedscopeError
from embedscope.index.base import VectorIndex
from embedscope.index.quantized import QuantizedVectors, StoredVectors, quantize
from embedscope.jsontypes import JSONMapping, JSONObject
from embedscope.names import check_name
from embedscope.search import recipe
from embedscope.store.base import Item, Store, VersionData, VersionInfo, content_hash, fingerprint


def embed_version(
    store: Store,
    collection: str,
    version: str,
    encoder: str | Encoder,
    params: JSONObject | None,
    *,
    index: str | None,
    index_params: JSONObject | None,
    batch_size: int,
    refit: bool,
    progress: ProgressFn | None,
    engine: str,
    address: str | None,
    document: str | None = None,
) -> None:
    """Encode `collection`'s items into `version` with `encoder` and write it (see the module
    docstring; the arguments are `Collection.embed`'s, `version` already checked). Each item is
    encoded as the version's document (`encoders.document`: `document`, else the version's own,
    else the item's text), and each row's hash is the hash of that document text.

    `encoder` may be an Encoder the caller made (`embedscope tune`'s, which learns from pairs beyond
    the items): fitted here (`fit_items`: documents and metadata) unless it already is; a fitted
    one is used as given, so no rows are copied from another version (equal configs, other weights)."""
    enc, runner, old, kind, idx = embed_setup(
        store,
        version,
        encoder,
        params,
        index=index,
        index_params=index_params,
        engine=engine,
        address=address,
    )
    items = list(store.iter_items())
    if not items:
        raise EmbedscopeError(f"collection '{collection}' is empty; ingest items first")
    doc = Document.parse(document if document is not None else (old.document if old else None))
    doc.check_fields({k for i in items for k in i.fields})
    docs = [doc.render(i.text, i.fields) for i in items]
    hashes = [document_hash(d) for d in docs]
    old_rows: dict[str, int] = {}
    started = time.perf_counter()
    stored_as = idx.params.get("vectors", "f32")
    given = isinstance(encoder, Encoder) and encoder.requires_fit and encoder.fitted
    reuse = None if refit or given else _reusable(store, version, enc, doc, items, hashes, stored_as)
    if reuse is not None:
        source, data, enc, old_rows = reuse
        old_vectors = data.vectors
    elif enc.requires_fit and (refit or not enc.fitted):
        teacher = enc.teacher()
        targets = None if teacher is None else teacher_vectors(store, teacher, items, docs)
        if targets is None:  # fit_items: an encoder learning from fields too (tuned) sees metadata
            enc.fit_items(docs, [i.metadata for i in items])
        else:  # a distilled encoder learns from the teacher's vectors already stored here
            enc.fit_to_teacher(docs, targets)
    fit_s = time.perf_counter() - started
    todo = [n for n, i in enumerate(items) if i.id not in old_rows]
    new_vectors = (
        runner.encode(enc, [docs[n] for n in todo], batch_size=batch_size, progress=progress)
        if todo
        else None
    )
    row_ids = [i.id for i in items]
    if old_rows:
        # assemble rows in item order: reused rows from the old matrix, the rest freshly encoded
        pos_new = {items[n].id: p for p, n in enumerate(todo)}
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
    # the index was built from float32; the store keeps what the version asks for (f32, f16, i8)
    vectors = quantize(vectors, stored_as)
    nbytes = (
        vectors.nbytes
        if isinstance(vectors, np.ndarray | QuantizedVectors)
        else vectors.data.nbytes + vectors.indices.nbytes + vectors.indptr.nbytes
    )
    stats = {
        "encoded": len(todo),
        "reused": len(old_rows),
        **({"reused_from": source} if old_rows and source != version else {}),
        "fit_seconds": round(fit_s, 3),
        "encode_seconds": round(encode_s, 3),
        "items_per_second": round(len(todo) / encode_s, 1) if todo and encode_s > 0 else None,
        "index_seconds": round(index_s, 3),
        "vector_bytes": int(nbytes),
        "index_bytes": int(idx.nbytes()),
        **({"engine": runner.stats} if todo else {}),
        # what encoded the new rows: a version made with precision=auto says which arithmetic
        **({"runtime": enc.runtime_info()} if todo and enc.runtime_info() else {}),
    }
    data = VersionData(row_ids, hashes, vectors)
    add_version(store, version, enc, data, idx, kind=kind, stats=stats, document=doc.template)


def version_record(
    version: str,
    enc: Encoder,
    data: VersionData,
    index: JSONObject,
    *,
    old: VersionInfo | None,
    stats: JSONObject | None = None,
    content: str | None = None,
    document: str | None = None,
) -> VersionInfo:
    """A version's record, assembled once for every way a version is made: `embed`, a trained
    behavioural version (`add_version`) and compare's in-memory one. `content`: the fingerprint,
    when it covers more than the version's rows (a behavioural version fingerprints the whole
    collection); `old`: the record it replaces, whose creation time it keeps."""
    stamp = now()
    return VersionInfo(
        name=version,
        encoder=enc.config(),
        dim=int(data.vectors.shape[1]),
        count=len(data.ids),
        fingerprint=content or fingerprint(zip(data.ids, data.hashes, strict=True)),
        index=index,
        sparse=bool(sp.issparse(data.vectors)),
        metric=enc.metric,
        created_at=old.created_at if old else stamp,
        updated_at=stamp,
        stats=stats or {},
        document=document,
    )


def add_version(
    store: Store,
    version: str,
    enc: Encoder,
    data: VersionData,
    idx: VectorIndex,
    *,
    kind: str,
    stats: JSONObject,
    content: str | None = None,
    document: str | None = None,
) -> VersionInfo:
    """The one write path of a version, for `embed` and for vectors made elsewhere (a behavioural
    version): its record (`version_record`) and its rows, encoder and built index, written by the
    store (which keeps no index for an exact version: it is rebuilt from the vectors)."""
    old = next((v for v in store.list_versions() if v.name == version), None)
    info = version_record(
        version,
        enc,
        data,
        {"kind": kind, "params": idx.params},
        old=old,
        stats=stats,
        content=content,
        document=document,
    )
    store.write_version(info, data, enc, None if kind == "exact" else idx)
    return info


def add_made(
    store: Store,
    version: str,
    enc: Encoder,
    data: VersionData,
    *,
    index: str,
    stats: JSONObject,
    content: str,
) -> VersionInfo:
    """`Collection.add_version`: vectors made elsewhere (a behavioural version), with a built index
    of the kind `index`, written by `add_version`; `content`: the fingerprint."""
    idx = store.new_index(index, {}).build(data.vectors)
    stats = {**stats, "index_bytes": int(idx.nbytes())}
    return add_version(store, version, enc, data, idx, kind=index, stats=stats, content=content)


def encoder_name(encoder: str | Encoder) -> str:
    """The name of an encoder given by name or as an object (a version's default name)."""
    return encoder.name if isinstance(encoder, Encoder) else encoder


def check_embed(
    store: Store,
    collection: str,
    encoder: str,
    params: JSONObject | None,
    *,
    version: str | None = None,
    index: str | None = None,
    index_params: JSONObject | None = None,
    document: str | None = None,
) -> list[str]:
    """`Collection.check_embed`: `embed_setup` for every version `embed` would write (both parts,
    each under its own name, index and document, for `hybrid`), and the collection not empty."""
    if encoder == recipe.HYBRID:
        plan = recipe.hybrid_shortcut(params)
        if document is not None:
            raise EmbedscopeError(HYBRID_DOCUMENTS)
        parts = [
            (plan.sparse, plan.sparse_params, plan.sparse_document),
            (plan.dense, plan.dense_params, plan.dense_document),
        ]
        for name, part_params, _ in parts:
            embed_setup(store, name, name, part_params, index=None, index_params=None)
        documents = [d for _, _, d in parts]
        touched = [plan.sparse, plan.dense]
    else:
        name = check_name(version or encoder, "version")
        embed_setup(store, name, encoder, params, index=index, index_params=index_params)
        documents, touched = [document], [name]
    if not store.count():
        raise EmbedscopeError(f"collection '{collection}' is empty; ingest items first")
    fields = {k for i in store.iter_items() for k in i.fields}
    for d in documents:
        Document.parse(d).check_fields(fields)
    return touched


#: why `embed("hybrid", document=...)` is refused
HYBRID_DOCUMENTS = (
    "hybrid embeds two versions: give their documents as --param sparse_document=... "
    "and --param dense_document=..."
)


def embed_setup(
    store: Store,
    version: str,
    encoder: str | Encoder,
    params: JSONObject | None,
    *,
    index: str | None,
    index_params: JSONObject | None,
    engine: str = "local",
    address: str | None = None,
) -> tuple[Encoder, Engine, VersionInfo | None, str, VectorIndex]:
    """What `embed` decides before it reads an item: the encoder (its parameters checked), the
    engine, the version it replaces, the index kind and the (unbuilt) index. Every user mistake
    among them is an EmbedscopeError here, so `Collection.check_embed` (the server, before it
    accepts a job) finds them without encoding anything. An Encoder object is used as given."""
    if isinstance(encoder, Encoder):
        if params:
            raise EmbedscopeError("give the parameters to the encoder object, not to embed()")
        enc, encoder = encoder, encoder.name
    else:
        enc = create_encoder(encoder, params)
    runner = create_engine(engine, address=address)
    runner.check(enc)
    old = {v.name: v for v in store.list_versions()}.get(version)
    kind = (
        index
        or (old.index["kind"] if old else None)
        or store.get_setting("default_index")
        or ("exact" if enc.sparse else "hnsw")
    )
    if kind == "hnsw" and enc.sparse:
        raise EmbedscopeError(f"encoder '{encoder}' is sparse: use --index exact")
    idx = store.new_index(
        kind, index_params or (old.index.get("params", {}) if old and old.index["kind"] == kind else {})
    )
    if idx.params.get("dtype") == "i8" and enc.metric != "cosine":
        raise EmbedscopeError(
            f"hnsw dtype i8 normalises vectors: it suits cosine encoders, not '{encoder}' "
            f"({enc.metric}); use dtype f16 or f32"
        )
    if idx.params.get("vectors", "f32") != "f32" and enc.sparse:
        raise EmbedscopeError(
            f"encoder '{encoder}' is sparse: its vectors are kept as they are; "
            f"drop vectors={idx.params['vectors']}"
        )
    return enc, runner, old, kind, idx


def _reusable(
    store: Store,
    version: str,
    enc: Encoder,
    doc: Document,
    items: list[Item],
    hashes: list[str],
    stored_as: str,
) -> tuple[str, VersionData, Encoder, dict[str, int]] | None:
    """(version, its data, its fitted encoder, item id -> its row still holding the item's
    document) of the version whose vectors this one can reuse (the rule in the module docstring):
    the version itself when its setup is unchanged (its fitted state continues), else the other
    version with the same setup that holds the most current rows, else None. Rows are copied only
    from a version that keeps float32 vectors or the codes this one keeps (`stored_as`: f32, f16,
    i8): decoded f16/i8 rows are not the vectors an f32 version would hold."""
    same = [v for v in store.list_versions() if enc.same_vectors(v.encoder) and v.document == doc.template]
    best = None
    for v in sorted(same, key=lambda v: v.name != version):
        data, fitted, _ = store.read_version(v.name)
        lossless = v.index.get("params", {}).get("vectors", "f32") in ("f32", stored_as)
        held = reusable_rows(data, items, hashes, legacy=v.document is None) if lossless else {}
        if v.name == version:
            return v.name, data, fitted, held
        if held and (best is None or len(held) > len(best[3])):
            best = (v.name, data, fitted, held)
    return best


def teacher_vectors(
    store: Store, encoder: JSONMapping, items: Sequence[Item], docs: Sequence[str]
) -> np.ndarray | None:
    """The vectors of `docs` (item `items[n]`'s document `docs[n]`) from a dense version made by
    `encoder` ({"name": ..., "params": {...}}: those params must match, others may differ), one
    row per item; NaN rows where the version holds no vector of that exact document (a row's hash
    is its document's hash). The version holding the most of them is read. None when no dense
    version was made by `encoder`.

    Why: an encoder distilled from another (static from MiniLM) learns from the teacher's vectors
    of the collection's own documents; those are often stored already, and encoding 5,000 texts
    again with MiniLM costs minutes on a CPU."""
    name, wanted = encoder["name"], dict(encoder.get("params") or {})
    made = [
        v
        for v in store.list_versions()
        if v.encoder.get("name") == name
        and not v.sparse
        and all(v.encoder.get("params", {}).get(k) == value for k, value in wanted.items())
    ]
    if not made:
        return None
    hashes = [document_hash(d) for d in docs]
    best: tuple[dict[str, int], VersionData] | None = None
    for v in sorted(made, key=lambda v: v.updated_at, reverse=True):
        data, _, _ = store.read_version(v.name)
        # a version written before documents holds item content hashes: a vector of the item's
        # text, so it stands only where the document asked for is that text
        legacy = v.document is None and all(d == i.text for i, d in zip(items, docs, strict=True))
        held = reusable_rows(data, list(items), hashes, legacy=legacy)
        if best is None or len(held) > len(best[0]):
            best = (held, data)
    assert best is not None
    held, data = best
    vectors = np.asarray(data.vectors, dtype=np.float32)
    out = np.full((len(items), vectors.shape[1]), np.nan, dtype=np.float32)
    at = np.array([held.get(i.id, -1) for i in items], dtype=np.int64)
    out[at >= 0] = vectors[at[at >= 0]]
    return out


def reusable_rows(data: VersionData, items: list[Item], hashes: list[str], *, legacy: bool) -> dict[str, int]:
    """Item id -> the row of `data` that still holds the item's document (`hashes`: each item's
    document hash now); `legacy`: the version was written before documents, its rows hold content
    hashes (with or without source fields, which items gained later)."""
    now = {i.id: h for i, h in zip(items, hashes, strict=True)}
    old = {i.id: (i.hash, content_hash(i.text, i.metadata)) for i in items} if legacy else {}
    return {
        i: r
        for r, (i, h) in enumerate(zip(data.ids, data.hashes, strict=True))
        if now.get(i) == h or h in old.get(i, ())
    }


def _gather(old: StoredVectors, new: Vectors | None, parts: list[tuple[str, int]]) -> Vectors:
    """Stack rows taken from the old and the new matrix, in the given order."""
    n_old = old.shape[0]
    take = np.array([r if src == "old" else n_old + r for src, r in parts], dtype=np.int64)
    if sp.issparse(old) or sp.issparse(new):
        stacked = sp.csr_matrix(old) if new is None else sp.vstack([sp.csr_matrix(old), sp.csr_matrix(new)])
        return stacked.tocsr()[take]
    stacked = np.asarray(old) if new is None else np.concatenate([np.asarray(old), np.asarray(new)])
    return stacked[take].astype(np.float32, copy=False)
