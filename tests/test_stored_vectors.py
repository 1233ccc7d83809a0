"""A version's vectors kept as f16 or int8 codes (index parameter `vectors`, index/quantized.py):
they round-trip, and everything that reads a version's vectors (search and its filters' exact
path, more-like-this, exact search, drift, projections, the next incremental embed, check) works
on them, in both stores where the store can keep them. Real books, LSA (fitted in a second)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import EmbedscopeError
from embedscope.evaluate.drift import drift
from embedscope.index.quantized import QuantizedVectors, quantize
from embedscope.projection import project
from embedscope.store.embedded import load_dense, save_dense

TEMPLATE = "{title}. {description}"
META = ["title", "published_year"]


def test_codes_round_trip_and_score_like_the_float32_rows(books_lsa: np.ndarray, tmp_path: Path) -> None:
    x = books_lsa[:1000]
    queries = books_lsa[1000:1010]
    for dtype, tol in (("f16", 1e-3), ("i8", None)):
        q = quantize(x, dtype)
        assert isinstance(q, QuantizedVectors) and q.shape == x.shape and q.stored == dtype
        decoded = np.asarray(q)
        assert decoded.dtype == np.float32
        if dtype == "i8":
            # per-vector symmetric codes: every component within half a step of the original
            step = np.abs(x).max(axis=1, keepdims=True) / 127
            assert (np.abs(decoded - x) <= step / 2 + 1e-7).all()
            assert q.nbytes == x.shape[0] * (x.shape[1] + 4)
        else:
            assert np.abs(decoded - x).max() < tol and q.nbytes == x.size * 2
        # rows, slices, masks and single rows read as the decoded matrix does
        rows = np.array([5, 1, 999, 5])
        assert np.array_equal(q[rows], decoded[rows]) and np.array_equal(q[3], decoded[3])
        assert np.array_equal(q[10:20], decoded[10:20]) and np.array_equal(
            q[[2, 4], 1:3], decoded[[2, 4], 1:3]
        )
        # scores from the codes equal the decoded rows' dot products
        assert np.allclose(q.dot(queries, rows), queries @ decoded[rows].T, atol=1e-5)
        assert np.allclose(q.dot(queries), queries @ decoded.T, atol=1e-5)
        # decoded rows quantize back to the same codes: rows reused by the next embed do not drift
        again = quantize(decoded, dtype)
        assert np.array_equal(again.codes, q.codes)
        # saved and memory-mapped back by the embedded store
        folder = tmp_path / dtype
        folder.mkdir()
        save_dense(folder, q)
        loaded = load_dense(folder)
        assert isinstance(loaded, QuantizedVectors) and np.array_equal(np.asarray(loaded), decoded)
        assert isinstance(loaded.codes, np.memmap)
    assert quantize(x, "f32") is x
    with pytest.raises(EmbedscopeError, match="vectors must be one of f32, f16, i8"):
        quantize(x, "i4")


def _versions(col: Collection, stored: list[tuple[str, dict]]) -> None:
    col.embed("lsa", {"n_components": 48}, version="f32", index="exact")
    for version, params in stored:
        col.embed("lsa", {"n_components": 48}, version=version, index_params=params)


def test_f16_and_i8_versions_search_filter_and_read_as_float32(home: Path, books_frame: pd.DataFrame) -> None:
    col = Collection.create("q")
    col.ingest(books_frame.head(300), id_field="isbn13", template=TEMPLATE, metadata=META)
    _versions(col, [("v16", {"vectors": "f16"}), ("v8", {"dtype": "i8", "vectors": "i8"})])
    ids, reference = col.vectors("f32")
    folder = Path(col.store.path) / "versions"
    for version, dtype, bytes_per_row in (("v16", np.float16, 96), ("v8", np.int8, 52)):
        info = col.store.get_version(version)
        assert info.stats["vector_bytes"] == 300 * bytes_per_row
        v = Collection.open("q").load_version(version)  # from disk
        assert isinstance(v.data.vectors, QuantizedVectors) and v.data.vectors.codes.dtype == dtype
        assert v.index.vectors is v.data.vectors  # the index re-scores from the codes, not a copy
        (revision,) = [p for p in folder.iterdir() if p.name.startswith(f"{version}-")]
        assert np.load(revision / "vectors.npy", mmap_mode="r").dtype == dtype
        got_ids, vectors = col.vectors(version)  # the public read: float32, decoded
        assert got_ids == ids and vectors.dtype == np.float32
        assert np.allclose(vectors, reference, atol=0.01)
        # search, filtered search (few rows: exact among them, from the codes), exact search
        item = col.items()[7]
        assert col.search(item.text, k=1, version=version)[0].id == item.id
        assert col.search(item.text, k=1, version=version, exact=True)[0].id == item.id
        where = f"published_year == {item.metadata['published_year']}"
        filtered = col.search(item.text, k=5, version=version, where=where)
        expected = col.search(item.text, k=5, version="f32", where=where)
        assert filtered[0].id == item.id and {h.id for h in filtered} == {h.id for h in expected}
        # more like this: the item's own stored row is the query
        similar = [h.id for h in col.similar(item.id, k=5, version=version)]
        assert len(set(similar) & {h.id for h in col.similar(item.id, k=5, version="f32")}) >= 4
        report = drift(col, "f32", version, k=10)
        assert report["vector"]["p10_cosine"] > 0.999
        assert report["neighbour_jaccard"]["p50"] >= 0.8
        assert project(col, version, method="pca", sample=100).xy.shape == (100, 2)
        assert col.check()["ok"]
    # the next embed reuses the stored rows (decoded, re-quantized to the same codes)
    before = Collection.open("q").load_version("v8").data.vectors
    col.upsert(
        [
            {
                "isbn13": "1",
                "title": "Tide tables",
                "description": "Tides of the North Sea.",
                "published_year": 1,
            }
        ]
    )
    again = col.embed("lsa", {"n_components": 48}, version="v8")
    assert (again.stats["encoded"], again.stats["reused"]) == (1, 300)
    assert again.index["params"]["vectors"] == "i8"
    after = Collection.open("q").load_version("v8")
    rows = [after.row_of[i] for i in ids]
    assert np.array_equal(after.data.vectors.codes[rows], before.codes)
    assert col.search("tides of the north sea", k=1, version="v8")[0].id == "1"
    # another version copies rows only from one keeping float32 or the same codes: i8 -> i8 yes,
    # i8 or f16 -> f32 no (decoded codes are not the vectors an f32 version holds)
    col.delete_version("f32")
    col.embed("lsa", {"n_components": 48}, version="v16")  # catches up with the new item
    copy = col.embed(
        "lsa", {"n_components": 48}, version="v8b", index_params={"dtype": "i8", "vectors": "i8"}
    )
    assert (copy.stats["encoded"], copy.stats["reused"], copy.stats["reused_from"]) == (0, 301, "v8")
    plain = col.embed("lsa", {"n_components": 48}, version="plain", index="exact")
    assert (plain.stats["encoded"], plain.stats["reused"]) == (301, 0)


def test_bad_vectors_parameters_are_refused(home: Path, books_frame: pd.DataFrame) -> None:
    col = Collection.create("bad")
    col.ingest(books_frame.head(30), id_field="isbn13", template=TEMPLATE)
    with pytest.raises(EmbedscopeError, match="vectors must be one of f32, f16, i8, not 'i4'"):
        col.embed("lsa", {"n_components": 8}, index_params={"vectors": "i4"})
    with pytest.raises(EmbedscopeError, match="sparse: its vectors are kept as they are"):
        col.embed("bm25", index="exact", index_params={"vectors": "f16"})
    assert col.versions() == []


def test_postgres_keeps_f16_as_halfvec_and_refuses_i8(
    pg_database: str, tmp_path: Path, books_frame: pd.DataFrame
) -> None:
    """In PostgreSQL the stored column is the indexed one: `vectors=f16` with `dtype=f16` is a
    halfvec table; pgvector has no 8-bit vector type."""
    col = Collection.create("pq", root=tmp_path, store=pg_database)
    col.ingest(books_frame.head(300), id_field="isbn13", template=TEMPLATE, metadata=META)
    _versions(col, [("v16", {"dtype": "f16", "vectors": "f16"})])
    ids, reference = col.vectors("f32")
    got_ids, vectors = col.vectors("v16")
    assert got_ids == ids and vectors.dtype == np.float32 and np.allclose(vectors, reference, atol=1e-3)
    item = col.items()[7]
    assert col.search(item.text, k=1, version="v16")[0].id == item.id
    where = f"published_year == {item.metadata['published_year']}"
    assert col.search(item.text, k=1, version="v16", where=where)[0].id == item.id
    similar = {h.id for h in col.similar(item.id, k=5, version="v16")}
    assert len(similar & {h.id for h in col.similar(item.id, k=5, version="f32")}) >= 4
    assert drift(col, "f32", "v16", k=10)["vector"]["p10_cosine"] > 0.999
    with pytest.raises(EmbedscopeError, match="pgvector has no 8-bit vector type"):
        col.embed("lsa", {"n_components": 48}, version="bad", index_params={"dtype": "i8", "vectors": "i8"})
    with pytest.raises(EmbedscopeError, match="vectors=i8: pgvector has no 8-bit"):
        col.embed("lsa", {"n_components": 48}, version="bad", index_params={"vectors": "i8"})
    with pytest.raises(EmbedscopeError, match="use dtype=f16 .* for both"):
        col.embed("lsa", {"n_components": 48}, version="bad", index_params={"vectors": "f16"})
    assert {v.name for v in col.versions()} == {"f32", "v16"}
