"""Metadata filters: every failure is one EmbedscopeError (a 400 / `error:`), string literals are
compared as written, and deep or huge expressions are refused before anything recurses. The parser
is fuzzed with hypothesis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedscope.errors import EmbedscopeError
from embedscope.filters import MAX_CHARS, MAX_DEPTH, evaluate_filter


@pytest.fixture(scope="module")
def frame(books_frame: pd.DataFrame) -> pd.DataFrame:
    return books_frame.head(200)[
        ["title", "authors", "categories", "published_year", "average_rating"]
    ].copy()


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("published_year > " + "-" * 400 + "1", "too deeply nested"),
        ("published_year > " + "-" * 5000 + "1", "too long"),
        ("not (" * 40 + "published_year > 1" + ")" * 40, "too deeply nested"),
        ("authors in [[1], {2: 3}]", "needs a list of plain values"),
        ("published_year in {[1]}", "expected a literal value"),
        ("published_year > [1]", "expected a string or a number"),
        ("published_year > 1j", "expected a string or a number"),
        ("published_year @ 1 @ 2", "unsupported expression"),
        ("title == 'unterminated", "malformed filter"),
        ("colour = 'red'", "unknown field"),
    ],
)
def test_bad_filters_are_one_line_errors(frame: pd.DataFrame, expr: str, message: str) -> None:
    with pytest.raises(EmbedscopeError, match=message) as err:
        evaluate_filter(expr, frame)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_string_literals_are_never_rewritten(frame: pd.DataFrame) -> None:
    frame = frame.copy()
    frame.loc[frame.index[0], "title"] = "What it contains = everything"
    mask = evaluate_filter("title == 'What it contains = everything'", frame)
    assert mask.tolist() == (frame.title == "What it contains = everything").tolist() and mask.sum() == 1
    mask = evaluate_filter("title = 'What it contains = everything' or published_year == 1", frame)
    assert mask.sum() == 1  # a lone `=` outside the literal still means ==, inside it is kept
    assert evaluate_filter("title contains 'contains ='", frame).sum() == 1


def test_real_filters_match_pandas(frame: pd.DataFrame) -> None:
    mask = evaluate_filter("published_year >= 2000 and categories contains 'fiction'", frame)
    expected = (frame.published_year >= 2000) & frame.categories.str.contains("fiction", case=False, na=False)
    assert mask.tolist() == expected.tolist() and 0 < mask.sum() < len(frame)
    assert (
        evaluate_filter("not published_year < 2000", frame).tolist()
        == (~(frame.published_year < 2000)).tolist()
    )


def test_has_is_element_matching_and_contains_is_substring(frame: pd.DataFrame) -> None:
    """Issue 17: `categories contains 'Fiction'` matches "Juvenile Nonfiction" (a substring test, as
    documented); `has` matches whole elements: a list field's elements, or a text field's
    comma/semicolon-separated parts, case-insensitively."""
    cats = frame.categories.fillna("")
    contains = evaluate_filter("categories contains 'Fiction'", frame)
    has = evaluate_filter("categories has 'Fiction'", frame)
    assert cats[contains].eq("Juvenile Nonfiction").any() and not cats[has].str.contains("Nonfiction").any()
    parts = cats.str.split(r"\s*[,;]\s*", regex=True).map(lambda ps: "fiction" in [p.lower() for p in ps])
    assert has.tolist() == parts.tolist() and 0 < has.sum() < contains.sum()
    listed = pd.DataFrame(
        {"tags": [["Fiction", "Dragons"], ["Juvenile Fiction"], [], None, "Fiction; Poetry"]}
    )
    assert evaluate_filter("tags has 'fiction'", listed).tolist() == [True, False, False, False, True]
    assert evaluate_filter("tags has 'Juvenile'", listed).tolist() == [False] * 5


def test_limits_are_the_documented_ones(frame: pd.DataFrame) -> None:
    deep_ok = "not (" * (MAX_DEPTH - 6) + "published_year > 1" + ")" * (MAX_DEPTH - 6)
    evaluate_filter(deep_ok, frame)
    with pytest.raises(EmbedscopeError, match="too long"):
        evaluate_filter("published_year > 1 or " * (MAX_CHARS // 20) + "published_year > 1", frame)


# --- properties ---------------------------------------------------------------------------------------
_FIELDS = ["title", "authors", "categories", "published_year", "average_rating", "nope"]
_literal = st.one_of(
    st.integers(-5000, 5000),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(0, 3000), st.text(max_size=5)), max_size=4),
    st.none(),
)
_op = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "=", "in", "not in", "contains", "startswith"])
_comparison = st.builds(lambda f, o, v: f"{f} {o} {v!r}", st.sampled_from(_FIELDS), _op, _literal)
_expression = st.recursive(
    _comparison,
    lambda inner: st.one_of(
        st.builds(lambda a, b, j: f"({a}) {j} ({b})", inner, inner, st.sampled_from(["and", "or"])),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(expr=st.one_of(_expression, st.text(max_size=60)))
def test_any_filter_gives_a_mask_or_one_clear_error(frame: pd.DataFrame, expr: str) -> None:
    try:
        mask = evaluate_filter(expr, frame)
    except EmbedscopeError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (len(frame),)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=30), op=st.sampled_from(["==", "!="]))
def test_any_string_literal_compares_as_written(frame: pd.DataFrame, value: str, op: str) -> None:
    frame = frame.copy()
    frame.loc[frame.index[3], "title"] = value
    mask = evaluate_filter(f"title {op} {value!r}", frame)
    expected = frame.title == value if op == "==" else frame.title != value
    assert mask.tolist() == expected.fillna(op == "!=").tolist()
