"""The Collection API on real books data, run against both stores: every test that takes
`store_home` or `books_300` runs once with the embedded store and once with PostgreSQL + pgvector
(test ids `[embedded]` / `[postgres]`; `pytest -k postgres` selects the latter)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import EmbedscopeError, NotFoundError

META = ["title", "authors", "categories", "published_year", "average_rating"]


def test_ingest_keeps_types_and_counts(store_home, books_frame: pd.DataFrame) -> None:
    col = Collection.create("b")
    counts = col.ingest(
        books_frame.head(50), id_field="isbn13", template="{title}. {description}", metadata=META
    )
    assert counts == {"added": 50, "updated": 0, "unchanged": 0, "deleted": 0}
    item = col.get(str(books_frame.isbn13[0]))
    assert item.text.startswith(str(books_frame.title[0]))
    assert isinstance(item.metadata["published_year"], int)
    assert isinstance(item.metadata["average_rating"], float)
    again = col.ingest(
        books_frame.head(50), id_field="isbn13", template="{title}. {description}", metadata=META
    )
    assert again["unchanged"] == 50 and again["added"] == 0


def test_search_filters_and_similar(books_300: Collection) -> None:
    hits = books_300.search("a war story about soldiers", k=5, where="published_year >= 2000")
    assert len(hits) == 5
    assert all(h.metadata["published_year"] >= 2000 for h in hits)
    assert hits == sorted(hits, key=lambda h: -h.score)
    some = books_300.items()[10]
    similar = books_300.similar(some.id, k=5)
    assert some.id not in [h.id for h in similar]
    # the nearest neighbour by exact search is what the ANN index returns first
    exact = books_300.search(some.text[:200], k=1, exact=True)[0]
    approx = books_300.search(some.text[:200], k=1)[0]
    assert exact.id == approx.id == some.id


def test_title_query_finds_the_book(books_300: Collection) -> None:
    hits_found = 0
    for item in books_300.items()[:20]:
        top = [h.id for h in books_300.search(item.text, k=3)]
        hits_found += item.id in top
    assert hits_found >= 19


def test_filter_errors(books_300: Collection) -> None:
    with pytest.raises(EmbedscopeError, match="unknown field"):
        books_300.search("x", where="colour = 'red'")
    with pytest.raises(EmbedscopeError, match="malformed filter"):
        books_300.search("x", where="published_year >=")
    with pytest.raises(EmbedscopeError, match="empty query"):
        books_300.search("  ")


def test_incremental_update_reencodes_only_changes(store_home, books_frame: pd.DataFrame) -> None:
    col = Collection.create("inc")
    frame = books_frame.head(60).copy()
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=["title"])
    first = col.embed("minilm")
    assert first.stats["encoded"] == 60
    ids_before, vecs_before = col.vectors()
    vecs_before = np.array(vecs_before)
    frame.loc[3, "description"] = "A wizard school where dragons teach alchemy to orphans."
    changed_id = str(frame.isbn13[3])
    removed_id = str(frame.isbn13[59])
    col.ingest(
        frame.head(59), id_field="isbn13", template="{title}. {description}", metadata=["title"], replace=True
    )
    assert col.info()["versions"][0]["stale"]
    second = col.embed("minilm")
    assert second.stats == {**second.stats, "encoded": 1, "reused": 58}
    assert not col.info()["versions"][0]["stale"]
    ids_after, vecs_after = col.vectors()
    assert removed_id not in ids_after and len(ids_after) == 59
    same = ids_after.index(str(frame.isbn13[0]))
    assert np.allclose(vecs_after[same], vecs_before[ids_before.index(str(frame.isbn13[0]))])
    assert col.search("dragons teaching alchemy at a wizard school", k=1)[0].id == changed_id


def test_versions_are_recorded_and_switchable(store_home, books_frame: pd.DataFrame) -> None:
    col = Collection.create("v")
    col.ingest(books_frame.head(30), id_field="isbn13", template="{title}. {description}", metadata=["title"])
    with pytest.raises(EmbedscopeError, match="unknown index 'annoy'"):
        col.set_default_index("annoy")
    col.set_default_index("exact")
    col.embed("minilm")
    col.embed("minilm", {"pooling": "cls"}, version="minilm-cls")
    versions = {v.name: v for v in col.versions()}
    assert set(versions) == {"minilm", "minilm-cls"}
    assert versions["minilm"].active and not versions["minilm-cls"].active
    assert versions["minilm"].index["kind"] == versions["minilm-cls"].index["kind"] == "exact"
    v = versions["minilm-cls"]
    assert v.encoder == {"name": "minilm", "params": {**v.encoder["params"], "pooling": "cls"}}
    assert v.dim == 384 and v.count == 30 and len(v.fingerprint) == 16 and v.created_at
    col.activate("minilm-cls")
    assert col.active_version == "minilm-cls"
    with pytest.raises(NotFoundError, match="has no version or recipe 'nope'"):
        col.activate("nope")


def test_bad_input_is_rejected_and_nothing_lost(store_home, books_frame: pd.DataFrame, tmp_path) -> None:
    col = Collection.create("bad")
    col.ingest(books_frame.head(5), id_field="isbn13", template="{title}. {description}", metadata=["title"])
    dup = pd.concat([books_frame.head(3), books_frame.head(1)])
    with pytest.raises(EmbedscopeError, match="duplicate id"):
        col.ingest(dup, id_field="isbn13", text="description")
    with pytest.raises(EmbedscopeError, match="id field 'nope' not found"):
        col.ingest(books_frame.head(3), id_field="nope", text="description")
    empty = books_frame.head(3).copy()
    empty.loc[1, "description"] = "   "
    with pytest.raises(EmbedscopeError, match="empty text"):
        col.ingest(empty, id_field="isbn13", text="description")
    with pytest.raises(EmbedscopeError, match="metadata field"):
        col.ingest(books_frame.head(3), id_field="isbn13", text="description", metadata=["colour"])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,text\n1,hello\n2,world,extra\n")
    with pytest.raises(EmbedscopeError, match="malformed CSV"):
        col.ingest(ragged, id_field="id", text="text")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,text\n1,caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(EmbedscopeError, match="not utf-8 text"):
        col.ingest(latin, id_field="id", text="text")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"id": 1, "text": "a"}\n{"id": 2, "text": \n')
    with pytest.raises(EmbedscopeError, match="line 2 is not valid JSON"):
        col.ingest(bad_json, id_field="id", text="text")
    with pytest.raises(NotFoundError, match="unknown encoder 'nope'"):
        col.embed("nope")
    with pytest.raises(NotFoundError, match="does not exist"):
        Collection.open("missing")
    assert len(col) == 5  # nothing stored was lost


def test_formats_jsonl_parquet(store_home, books_frame: pd.DataFrame, tmp_path) -> None:
    small = books_frame.head(8)[["isbn13", "title", "description", "published_year"]]
    small.to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    small.to_parquet(tmp_path / "b.parquet")
    for name in ("b.jsonl", "b.parquet"):
        col = Collection.create(name.replace(".", "-"))
        col.ingest(tmp_path / name, id_field="isbn13", template="{title}. {description}")
        assert len(col) == 8
        assert isinstance(col.get(str(small.isbn13.iloc[0])).metadata["published_year"], int)


def test_index_persisted_not_rebuilt(books_300: Collection) -> None:
    from embedscope.index.hnsw import HNSWIndex
    from embedscope.store.postgres import PgVectorIndex, PostgresStore

    reopened = Collection.open(books_300.name, root=books_300.store.path.parent)
    loaded = reopened.load_version()
    assert loaded.index.size == len(books_300) and loaded.index.kind == "hnsw"
    if isinstance(reopened.store, PostgresStore):
        # the HNSW graph lives in the database; opening reads no vectors into memory
        assert isinstance(loaded.index, PgVectorIndex) and loaded.index.nbytes() > 0
        assert loaded.data._vectors is None
    else:
        assert isinstance(loaded.index, HNSWIndex)
        revision = reopened.store._revision_dir(loaded.info.name)
        assert (revision / "index" / "hnsw.usearch").stat().st_size > 0


def test_wrong_dimension_is_a_clear_error(books_300: Collection) -> None:
    from embedscope.errors import ConflictError

    with pytest.raises(ConflictError, match="dimension 128, version 'minilm' has dimension 384"):
        books_300.search_vectors(np.ones((1, 128), dtype=np.float32))


def test_hybrid_is_the_default_fusion_of_its_two_versions(store_home, books_frame: pd.DataFrame) -> None:
    from embedscope.search.fusion import Run, convex

    col = Collection.create("hy")
    col.ingest(books_frame.head(80), id_field="isbn13", template="{title}. {description}", metadata=["title"])
    col.embed("hybrid", {"dense_params": {"max_seq_length": 128}})
    assert {v.name for v in col.versions()} == {"bm25", "minilm"}
    assert col.recipes()["hybrid"].parts == ("bm25", "minilm")  # stored by the embed shortcut
    query = "a detective solving a murder"
    hits = col.search(query, k=5, version="hybrid", collapse=False)
    runs = []
    for name in ("bm25", "minilm"):
        part = col.search(query, k=80, version=name, collapse=False)
        runs.append(Run([h.id for h in part], np.array([h.score for h in part])))
    assert [h.id for h in hits] == convex(runs, [0.5, 0.5], normalization="zscore")[0][:5]
    assert col.default_search == col.active_version  # not activated: the active version answers
    col.embed("hybrid", {"dense_params": {"max_seq_length": 128}}, activate=True)
    assert col.default_search == "hybrid"  # `embed --encoder hybrid --activate` makes it the default
    assert col.active_version == "minilm"  # and more-like-this uses MiniLM's vectors, not BM25's


def test_deleted_items_never_fill_result_slots(store_home, books_frame: pd.DataFrame) -> None:
    """One item deleted and another added (same count) before re-embedding: the deleted item's
    row must not take a result slot."""
    col = Collection.create("swap")
    frame = books_frame.head(30)
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=["title"])
    col.embed("minilm", {"max_seq_length": 64}, index="exact")
    gone = frame.iloc[0]
    swapped = pd.concat([frame.iloc[1:], books_frame.iloc[[30]]])
    col.ingest(
        swapped, id_field="isbn13", template="{title}. {description}", metadata=["title"], replace=True
    )
    hits = col.search(f"{gone.title}. {gone.description}", k=1)
    assert len(hits) == 1 and hits[0].id != str(gone.isbn13)
