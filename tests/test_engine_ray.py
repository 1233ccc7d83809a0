"""Ray Data batch embedding (`embed --engine ray`) against the in-process engine, on real books.

One local Ray (2 CPUs) is shared by the tests of this module; every test is bounded in time by
faulthandler, which dumps the stacks and exits instead of letting a stuck Ray hang CI."""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import EmbedscopeError

pytestmark = pytest.mark.slow
BOUND_S = 300  # a hang, not slowness: the slowest test here takes ~1 min on the busy 2-core machine
TEMPLATE = "{title}. {description}"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    faulthandler.dump_traceback_later(BOUND_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _rows(col: Collection, version: str) -> dict[str, np.ndarray]:
    ids, vectors = col.vectors(version)
    return dict(zip(ids, np.asarray(vectors), strict=True))


def _min_cosine(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return float(min(np.dot(a[i], b[i]) / np.linalg.norm(a[i]) / np.linalg.norm(b[i]) for i in a))


def test_ray_minilm_equals_in_process_and_is_incremental(
    home: Path, books_frame: pd.DataFrame, books_300: Collection, local_ray: None
) -> None:
    frame = books_frame.head(300).copy()
    col = Collection.create("ray")
    col.ingest(frame, id_field="isbn13", template=TEMPLATE, metadata=["title"])
    seen: list[tuple[int, int]] = []
    first = col.embed("minilm", engine="ray", progress=lambda done, total: seen.append((done, total)))
    assert first.stats["encoded"] == 300 and first.stats["engine"]["engine"] == "ray"
    assert seen[-1] == (300, 300)
    # the same 300 books encoded in-process by the session fixture
    assert _min_cosine(_rows(col, "minilm"), _rows(books_300, "minilm")) >= 0.9999

    changed = [3, 77, 150, 222, 299]
    for n in changed:
        frame.loc[n, "description"] = f"A lighthouse keeper's diary, volume {n}, about storms and gulls."
    col.ingest(frame.drop(index=[10]), id_field="isbn13", template=TEMPLATE, metadata=["title"], replace=True)
    second = col.embed("minilm", engine="ray")
    assert (second.stats["encoded"], second.stats["reused"], second.count) == (5, 294, 299)
    after = _rows(col, "minilm")
    assert str(frame.isbn13[10]) not in after
    changed_ids = [str(frame.isbn13[n]) for n in changed]
    # changed rows: as the in-process engine encodes the same texts; the rest: kept from the first run
    in_process = col.encoder("minilm").encode([col.get(i).text for i in changed_ids])
    expected = dict(zip(changed_ids, in_process, strict=True))
    assert _min_cosine({i: after[i] for i in changed_ids}, expected) >= 0.9999
    kept = {i: v for i, v in after.items() if i not in changed_ids}
    assert _min_cosine(kept, {i: v for i, v in _rows(books_300, "minilm").items() if i in kept}) >= 0.9999
    top = col.search("lighthouse keeper diary about storms and gulls", k=5, version="minilm")
    assert {h.id for h in top} == set(changed_ids)


def test_ray_ships_a_fitted_encoder_to_the_actors(
    home: Path, books_frame: pd.DataFrame, local_ray: None
) -> None:
    col = Collection.create("lsa")
    col.ingest(books_frame.head(400), id_field="isbn13", template=TEMPLATE, metadata=["title"])
    local = col.embed("lsa", {"n_components": 64}, version="lsa-local")
    on_ray = col.embed("lsa", {"n_components": 64}, version="lsa-ray", engine="ray")
    assert on_ray.encoder == local.encoder  # the same configuration was recorded
    # fitted once on the driver and shipped: actors encode with the very same model
    assert _min_cosine(_rows(col, "lsa-ray"), _rows(col, "lsa-local")) >= 0.9999


def test_ray_refuses_sparse_encoders_before_writing(home: Path, books_frame: pd.DataFrame) -> None:
    col = Collection.create("sparse")
    col.ingest(books_frame.head(20), id_field="isbn13", template=TEMPLATE)
    with pytest.raises(EmbedscopeError, match="is sparse.*--engine local"):
        col.embed("bm25", engine="ray")
    with pytest.raises(EmbedscopeError, match="needs --engine ray"):
        col.embed("minilm", address="127.0.0.1:6379")
    with pytest.raises(EmbedscopeError, match="unknown engine 'spark'"):
        col.embed("minilm", engine="spark")
    assert col.versions() == []


def test_ray_cli_starts_and_stops_its_own_local_ray(home: Path, books_frame: pd.DataFrame) -> None:
    col = Collection.create("cli")
    col.ingest(books_frame.head(50), id_field="isbn13", template=TEMPLATE)
    cli = [sys.executable, "-m", "embedscope.cli", "embed", "cli"]
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home)}
    run = subprocess.run(
        [*cli, "--encoder", "lsa", "--param", "n_components=16", "--engine", "ray"],
        capture_output=True,
        text=True,
        env=env,
        timeout=BOUND_S,
    )
    assert run.returncode == 0, run.stderr
    assert "50 encoded" in run.stdout
    info = Collection.open("cli").versions()[0]
    assert info.stats["engine"]["address"] == "local" and info.count == 50
    bad = subprocess.run(
        [*cli, "--encoder", "tfidf", "--engine", "ray"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_the_ray_extra_installs_the_client_that_ray_addresses_need() -> None:
    """README: `--engine ray --address ray://head:10001` after `pip install -e ".[ray]"`. A ray://
    address goes through Ray Client, which needs grpcio: `ray[data]` alone does not install it and
    such an address failed on import (issue 17), so the extra is `ray[data,client]`."""
    import importlib.util
    import tomllib

    extra = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    ray_extra = " ".join(extra["project"]["optional-dependencies"]["ray"])
    assert "client" in ray_extra, ray_extra
    assert importlib.util.find_spec("grpc") is not None, "pip install -e '.[ray]' (grpcio for ray://)"
    from ray.util.client import ray as client  # noqa: F401 - imports grpc: fails without the extra
