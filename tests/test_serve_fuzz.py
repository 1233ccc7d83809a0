"""The HTTP API fuzzed from its own OpenAPI spec with schemathesis: whatever a client sends that the
spec allows (and, in schemathesis' negative mode, what it does not), the answer is never a 5xx.

Bounded: a few examples per operation over a cheap collection (TF-IDF and BM25, 60 real books), well
under a minute; writes are authorised, so the write endpoints are fuzzed too, and an online
experiment runs, so searches with a session go through it and clicks reach its log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from embedscope import Collection
from embedscope.experiments import Experiments
from embedscope.serve import create_app

TOKEN = "fuzz-token-0123456789abcdef"


@pytest.fixture(scope="module")
def fuzz_schema(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame):  # noqa: ANN201
    root: Path = tmp_path_factory.mktemp("fuzz")
    col = Collection.create("books", root)
    col.ingest(
        books_frame.head(60),
        id_field="isbn13",
        template="{title}. {description}",
        metadata=["title", "authors", "categories", "published_year", "average_rating"],
    )
    col.embed("tfidf", activate=True)
    col.embed("bm25")
    # a running experiment, so that searches with a session are served (and clicked) through it
    Experiments.of(col).start("tfidf", "bm25", method="interleave", name="fuzzed")
    col.close()
    app = create_app(["books"], root=root, token=TOKEN, log_dir=tmp_path_factory.mktemp("fuzzlogs"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# One test over every operation rather than `schemathesis.pytest.from_fixture` (its lazy loading does
# not work with the installed pytest); hypothesis drives the strategy of each operation the same way.
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(fuzz_schema: schemathesis.BaseSchema, mode) -> None:  # noqa: ANN001
    server_errors: list[str] = []
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]

    for operation in operations:
        cases = operation.as_strategy(mode)
        if "{name}" in operation.path:  # mostly the served collection, so its code is reached too
            cases = st.one_of(cases, operation.as_strategy(mode, path_parameters={"name": "books"}))

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=cases)
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} {case.query}: {response.text[:300]}"
                )
            elif response.status_code >= 400 and response.headers.get("content-type") == "application/json":
                assert "error" in response.json(), response.text[:300]

        try:
            fuzz()
        except Unsatisfiable:  # negative mode: an operation with no inputs has nothing to get wrong
            assert mode == schemathesis.GenerationMode.NEGATIVE
    assert not server_errors, server_errors[:5]
