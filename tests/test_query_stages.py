"""Query stages of a search recipe (embedscope.search.query) on real books: each stage's behaviour,
the stored configuration, and "off" changing nothing.

BM25 runs over the whole catalogue (5,197 books, seconds to fit); MiniLM over a slice (the module
fixture), where a stage needs a dense part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from embedscope import Collection
from embedscope.cli import _load_commands
from embedscope.cli.app import app
from embedscope.errors import EmbedscopeError
from embedscope.search.fusion import fuse
from embedscope.search.pipeline import lookup
from embedscope.search.query import check_stages, drop_negated, parse_stage, split
from embedscope.search.recipe import Recipe, hybrid_shortcut, make_recipe

_load_commands()
runner = CliRunner()
META = ["title", "authors", "categories", "published_year"]
MOONSPINNERS = "9780060502959"  # Mary Stewart: a secretary at the British Embassy on Crete
#: a reader's long "which book was it" request: the one sentence that names the book among others
#: naming other books (Poirot, Rebecca, Jane Eyre), which the whole request matches better
LONG_REQUEST = (
    "I'm trying to remember a novel I read as a teenager in the seventies, from my mother's shelf, "
    "next to her Agatha Christie and Daphne du Maurier paperbacks. I think the heroine worked as a "
    "secretary at an embassy and was on holiday on Crete. Something happened in the hills with a "
    "wounded man. It was not Rebecca and it was not a Poirot mystery, although it had that feel of an "
    "English lady in danger and a handsome stranger, and it was a bit gothic, like Jane Eyre."
)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame) -> Collection:
    """Every book (as the demo ingests them) with BM25; and MiniLM over the first 300 in `slice300`."""
    root = tmp_path_factory.mktemp("stages")
    frame = books_frame.dropna(subset=["description"])
    col = Collection.create("books", root)
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=META)
    col.embed("bm25", index="exact")
    return col


@pytest.fixture(scope="module")
def slice300(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame) -> Collection:
    root = tmp_path_factory.mktemp("stages300")
    col = Collection.create("books", root)
    col.ingest(books_frame.head(300), id_field="isbn13", template="{title}. {description}", metadata=META)
    col.embed("bm25", index="exact")
    col.embed("minilm", {"max_seq_length": 128}, index="exact", activate=True)
    return col


def ids(col: Collection, query: str, using: object, k: int = 10) -> list[str]:
    return [h.id for h in col.pipeline.search(query, k, using=using, collapse=False).hits]


# --- configuration --------------------------------------------------------------------------------------
def test_stages_are_validated_filled_in_and_stored(slice300: Collection) -> None:
    recipe = slice300.create_recipe(
        "long", ["bm25", "minilm"], stages={"split": {"fuse": "convex"}, "rm3": None, "rocchio": {"beta": 1}}
    )
    assert recipe.stages["split"] == {
        "by": "sentence",
        "min_words": 40,
        "words": 50,
        "fuse": "convex",
        "whole": True,
        "on": "all",
    }
    assert recipe.stages["rm3"] == {"docs": 10, "terms": 10, "weight": 0.5}
    # as a new process reads it
    stored = Collection.open("books", slice300.store.path.parent).recipes()["long"]
    assert stored.to_dict() == recipe.to_dict() and stored.stages == recipe.stages
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))).to_dict() == recipe.to_dict()
    assert "rm3(docs=10, terms=10, weight=0.5)" in recipe.describe()
    for bad, message in [
        ({"expand": {}}, "unknown query stage 'expand'"),
        ({"rm3": {"docs": 0}}, "docs=0: must be a positive integer"),
        ({"split": {"fuse": "sum"}}, "must be one of max, convex, rrf"),
        ({"terms": {"max_df": 2}}, "between 0.0 and 1.0"),
        ({"adaptive": {"edges": [10], "weights": [[1, 0]]}}, "make 2 buckets"),
        ({"adaptive": {"edges": [10], "weights": [[1], [1]]}}, "one weight per part"),
    ]:
        with pytest.raises(EmbedscopeError, match=message):
            make_recipe("r", ["bm25", "minilm"], stages=bad)
    with pytest.raises(EmbedscopeError, match="at least two versions"):
        make_recipe("r", ["bm25"])
    assert make_recipe("r", ["bm25"], stages={"rm3": {}}).parts == ("bm25",)  # one part with a stage


def test_cli_and_the_hybrid_shortcut_take_stages(
    slice300: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_stage("split:by=passage,words=30") == ("split", {"by": "passage", "words": 30})
    assert parse_stage("adaptive:edges=[10,40],weights=[[0.3,0.7],[0.5,0.5],[0.7,0.3]]")[1]["edges"] == [
        10,
        40,
    ]
    monkeypatch.setenv("EMBEDSCOPE_HOME", str(slice300.store.path.parent))
    res = runner.invoke(
        app, ["hybrid", "create", "books", "--name", "fb", "--stage", "rm3:docs=5", "--stage", "rocchio"]
    )
    assert res.exit_code == 0, res.output
    listed = json.loads(runner.invoke(app, ["hybrid", "list", "books", "--json"]).output)
    fb = next(r for r in listed if r["name"] == "fb")
    assert fb["stages"] == {
        "rm3": {"docs": 5, "terms": 10, "weight": 0.5},
        "rocchio": {"docs": 3, "beta": 0.5},
    }
    # what `embed --encoder hybrid -p stages=...` and the HTTP embed job read
    shortcut = hybrid_shortcut({"stages": {"split": {}}, "dense_document": "{title}. {text}"})
    assert "split" in make_recipe("hybrid", ["bm25", "minilm"], **shortcut.recipe).stages
    assert shortcut.recipe["params"] == {"normalization": "zscore", "missing": "cutoff"}
    assert "params" not in hybrid_shortcut({"fusion": "rrf"}).recipe  # rrf's own defaults, not z-score's


# --- off changes nothing --------------------------------------------------------------------------------
def test_a_recipe_without_stages_is_its_parts_fused(slice300: Collection) -> None:
    """Scores and order equal to the fusion of each part's own lookup, computed outside the pipeline."""
    from embedscope.search.fusion import Run, score_floor

    query = "a cozy mystery in a small english village"
    recipe = make_recipe("r", ["bm25", "minilm"])
    got = slice300.pipeline.search(query, 10, using=recipe, collapse=False).hits
    runs = []
    for name in ("bm25", "minilm"):
        v = slice300.load_version(name)
        rows, scores = lookup(v, v.encoder.encode_queries([query]), 100, allowed=None, where=None)
        keep = (rows[0] >= 0) & ((scores[0] > 0) if v.info.sparse else True)
        runs.append(
            Run(
                [v.data.ids[r] for r in rows[0][keep]],
                scores[0][keep],
                score_floor(v.info.sparse, v.info.metric),
            )
        )
    want_ids, want_scores = fuse(runs, [0.5, 0.5], "convex", recipe.params)
    assert [h.id for h in got] == want_ids[:10]
    np.testing.assert_allclose([h.score for h in got], want_scores[:10])


@pytest.mark.parametrize(
    "stages",
    [
        {"split": {"min_words": 1000}},
        {"terms": {"max_df": 1.0}},
        {"adaptive": {"edges": [5], "weights": [[1, 1], [1, 1]]}},
    ],
)
def test_stages_that_do_nothing_change_nothing(slice300: Collection, stages: dict) -> None:
    query = "dark psychological thriller with an unreliable narrator who lies"
    plain = slice300.pipeline.search(
        query, 10, using=make_recipe("r", ["bm25", "minilm"]), collapse=False
    ).hits
    staged = slice300.pipeline.search(
        query, 10, using=make_recipe("r", ["bm25", "minilm"], stages=stages), collapse=False
    ).hits
    assert [(h.id, round(h.score, 9)) for h in staged] == [(h.id, round(h.score, 9)) for h in plain]


# --- each stage on real data ----------------------------------------------------------------------------
def test_split_finds_the_book_a_long_request_names_where_the_whole_request_does_not(
    catalogue: Collection,
) -> None:
    pieces = split(LONG_REQUEST, check_stages({"split": {}}, 1)["split"])
    assert len(pieces) == 4 and pieces[1].startswith(
        "I think the heroine worked as a secretary at an embassy"
    )
    whole = ids(catalogue, LONG_REQUEST, "bm25")
    assert whole[0] != MOONSPINNERS  # 'Poirot': the names of other books outweigh the one that matters
    for fuse_by in ("max", "convex"):
        found = ids(catalogue, LONG_REQUEST, make_recipe("r", ["bm25"], stages={"split": {"fuse": fuse_by}}))
        assert found[0] == MOONSPINNERS, fuse_by
    # `on` names the parts that search the pieces: BM25 is not split here, so it answers as without
    on_dense = make_recipe("r", ["bm25"], stages={"split": {"on": "dense"}})
    assert ids(catalogue, LONG_REQUEST, on_dense) == whole
    # short queries are not split: the same answer as without the stage
    short = "a cozy mystery in a small english village"
    assert ids(catalogue, short, make_recipe("r", ["bm25"], stages={"split": {}})) == ids(
        catalogue, short, "bm25"
    )


def test_negated_clauses_are_dropped(catalogue: Collection) -> None:
    """'It was not Rebecca and it was not a Poirot mystery' names the books the reader does not mean;
    without the clause the book meant comes first."""
    options = check_stages({"negation": {}}, 1)["negation"]
    assert (
        drop_negated("It was not Rebecca, although it felt gothic.", options)
        == "It was , although it felt gothic."
    )
    assert drop_negated("It wasn\u2019t a thriller! Dragons.", options) == "It ! Dragons."
    assert drop_negated("not", options) == "not"  # nothing would be left: the query stays as it is
    assert drop_negated("not a thriller", {"min_words": 5}) == "not a thriller"  # shorter than min_words
    found = ids(catalogue, LONG_REQUEST, make_recipe("r", ["bm25"], stages={"negation": {}}))
    assert found[0] == MOONSPINNERS and ids(catalogue, LONG_REQUEST, "bm25")[0] != MOONSPINNERS


def test_term_weighting_drops_the_terms_most_books_share(catalogue: Collection) -> None:
    """'novel', 'story', 'book' are in more than 5% of the descriptions: dropped, the query is its
    rare terms; a query of common terms only keeps them."""
    recipe = make_recipe("r", ["bm25"], stages={"terms": {"max_df": 0.05}})
    assert ids(catalogue, "a novel and a story and a book about dragons", recipe) == ids(
        catalogue, "dragons", "bm25"
    )
    assert ids(catalogue, "a novel story book", recipe) == ids(catalogue, "a novel story book", "bm25")


def test_rm3_finds_books_that_share_no_word_with_the_query(catalogue: Collection) -> None:
    """Feedback adds the top books' own words: some books it finds do not contain a query term at all,
    which BM25 alone never returns."""
    query = "hobbits"
    v = catalogue.load_version("bm25")
    term = v.encoder.encode_queries([query]).indices
    plain = ids(catalogue, query, "bm25", 30)
    expanded = ids(catalogue, query, make_recipe("r", ["bm25"], stages={"rm3": {}}), 30)
    assert all(v.data.vectors[v.row_of[i]][:, term].nnz for i in plain)
    assert any(v.data.vectors[v.row_of[i]][:, term].nnz == 0 for i in expanded)
    assert expanded[:3] != plain[:3] or expanded != plain


def test_rocchio_moves_the_query_towards_its_top_books(slice300: Collection) -> None:
    """With a large beta the expanded query is the centroid of the first pass's top books: the answer is
    the centroid's own nearest books."""
    query = "wizards and witches at a school of magic"
    v = slice300.load_version("minilm")
    first = ids(slice300, query, "minilm", 3)
    centroid = np.asarray(v.encoder.encode_queries([query]))[0] + 10.0 * np.asarray(
        v.data.vectors[[v.row_of[i] for i in first]]
    ).mean(axis=0)
    nearest = [
        h.id for h in slice300.search_vectors(centroid / np.linalg.norm(centroid), 10, version="minilm")[0]
    ]
    moved = ids(slice300, query, make_recipe("r", ["minilm"], stages={"rocchio": {"docs": 3, "beta": 10.0}}))
    assert moved[:5] == nearest[:5]


def test_adaptive_weights_follow_the_query_length(slice300: Collection) -> None:
    """Short queries BM25 alone, longer ones MiniLM alone: each bucket answers as that part does."""
    recipe = make_recipe(
        "r", ["bm25", "minilm"], stages={"adaptive": {"edges": [4], "weights": [[1, 0], [0, 1]]}}
    )
    short, longer = "cozy village mystery", "a funny fantasy with dragons for a ten year old"
    assert ids(slice300, short, recipe) == ids(slice300, short, "bm25")
    assert ids(slice300, longer, recipe) == ids(slice300, longer, "minilm")


def test_stages_apply_to_text_searches_only(slice300: Collection) -> None:
    """More-like-this over a recipe with feedback is the recipe's fusion of the item's own vectors."""
    item = slice300.items()[5].id
    plain = slice300.pipeline.similar(item, 10, using=make_recipe("r", ["bm25", "minilm"]), collapse=False)
    staged = slice300.pipeline.similar(
        item,
        10,
        using=make_recipe("r", ["bm25", "minilm"], stages={"rm3": {}, "rocchio": {}}),
        collapse=False,
    )
    assert [h.id for h in staged.hits] == [h.id for h in plain.hits]


def test_the_stages_run_on_the_product_path(slice300: Collection, tmp_path: Path) -> None:
    """A stored recipe with stages answers `Collection.search` like the pipeline does."""
    # a name of its own: the module's "long" (another definition) is replaced only with replace=True
    slice300.create_recipe("split5", ["bm25", "minilm"], stages={"split": {"min_words": 5}, "rm3": {}})
    query = "A boy finds he can do magic. He goes to a school. There is a dark lord."
    assert [h.id for h in slice300.search(query, 5, version="split5", collapse=False)] == ids(
        slice300, query, slice300.recipes()["split5"], 5
    )
