"""The HTTP API fuzzed from its own OpenAPI spec with schemathesis: whatever a client sends that the
spec allows (and, in schemathesis' negative mode, what it does not), the answer is never a 5xx.

Bounded: a few examples per operation over a cheap collection (TF-IDF and BM25, 60 real books), well
under a minute; writes are authorised, so the write endpoints are fuzzed too, and an online
experiment runs, so searches with a session go through it and clicks reach its log."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from embedscope import Collection
from embedscope.experiments import Experiments
from embedscope.serve import create_app

TOKEN = "fuzz-token-0123456789abcdef"


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame) -> FastAPI:
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
    return create_app(["books"], root=root, token=TOKEN, log_dir=tmp_path_factory.mktemp("fuzzlogs"))


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: FastAPI):  # noqa: ANN201
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


@pytest.fixture(scope="module")
def fuzz_client(fuzz_app: FastAPI) -> TestClient:
    return TestClient(fuzz_app, raise_server_exceptions=False)


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


# --- issue 16: the new checks (ids, booleans, bodies), over every operation the spec lists ----------
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _body_fields(spec: dict, schema: dict) -> dict[str, str]:
    """The top-level fields of a request body schema with their JSON type ('integer', 'boolean', ...)."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    out = {}
    for name, prop in schema.get("properties", {}).items():
        kinds = [prop.get("type")] + [p.get("type") for p in prop.get("anyOf", [])]
        for kind in ("integer", "number", "boolean"):
            if kind in kinds:
                out[name] = kind
    return out


def _operations(spec: dict) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path with the served collection and a known version, typed body fields)."""
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is None:
                continue
            concrete = path.replace("{name}", "books").replace("{version}", "tfidf")
            concrete = concrete.replace("{item_id}", "9780002005883").replace("{experiment}", "fuzzed")
            ops.append((method.upper(), concrete, _body_fields(spec, body)))
    return ops


def test_no_number_field_takes_a_boolean_nor_a_flag_a_number(fuzz_client: TestClient) -> None:
    """Every integer or number field of every request body refuses `true` (it was read as 1), and
    every flag refuses 1: found from the OpenAPI spec, so a field added later is checked too."""
    spec = fuzz_client.get("/openapi.json").json()
    checked = []
    for method, path, fields in _operations(spec):
        for field, kind in fields.items():
            wrong = 1 if kind == "boolean" else True
            resp = fuzz_client.request(method, path, json={field: wrong}, headers=AUTH)
            assert resp.status_code == 422, (method, path, field, resp.text)
            assert any(d["loc"][-1] == field for d in resp.json()["detail"]), resp.text
            checked.append(f"{path}:{field}")
    assert len(checked) >= 7, checked  # k (4 bodies), position, activate, refit


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=60).map(str.encode)))
def test_any_body_bytes_are_a_clean_4xx(fuzz_client: TestClient, body: bytes) -> None:
    """Junk, truncated JSON, invalid UTF-8 or a lone surrogate escape sent to every operation with a
    body: a 4xx JSON error, never a 5xx."""
    spec = fuzz_client.get("/openapi.json").json()
    for method, path, _ in _operations(spec):
        for content in (body, b'{"records": [{"id": "\\ud800' + body[:20], b'{"query": "' + body):
            resp = fuzz_client.request(
                method, path, content=content, headers={**AUTH, "Content-Type": "application/json"}
            )
            assert resp.status_code < 500, (method, path, content, resp.text[:300])
            if resp.status_code >= 400:
                assert "error" in resp.json(), resp.text[:300]


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=3,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(value=_json)
def test_any_json_id_over_http_is_kept_as_text_or_refused(fuzz_client: TestClient, value: object) -> None:
    """An id is text without control characters (or an integer, kept as its digits); a list (it was
    stored as '[1, 2]'), an object, a boolean, a decimal number or a control character is a 400."""
    record = {"isbn13": value, "title": "Fuzzed", "description": "an item whose id is fuzzed"}
    resp = fuzz_client.post(
        "/api/collections/books/items",
        content=json.dumps({"records": [record]}),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    valid = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str)
        and value.strip() != ""
        and not any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in value)
    )
    if not valid:
        assert resp.status_code == 400 and "error" in resp.json(), (value, resp.text)
        return
    assert resp.status_code == 200, (value, resp.text)
    got = fuzz_client.get(f"/api/collections/books/items/{quote(str(value), safe='')}")
    assert got.status_code == 200 and got.json()["id"] == str(value)
