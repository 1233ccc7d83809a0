"""Ray Data batch embedding (`embed --engine ray`) against the in-process engine, on real books.

One local Ray (2 CPUs) is shared by the tests of this module; every test is bounded in time by
faulthandler, which dumps the stacks and exits instead of letting a stuck Ray hang CI."""

from __future__ import annotations

import faulthandler
import os
import secrets
import socket
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
    with socket.socket() as s:  # a port nothing listens on: a Ray that stopped without `ray stop`
        s.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ADDRESS", gone)  # what `--address auto` resolves first
        with pytest.raises(EmbedscopeError, match="--address auto: the Ray it found at .* does not answer"):
            col.embed("lsa", engine="ray", address="auto")  # at once, not after Ray's minutes of retries
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


@pytest.fixture
def running_ray() -> Iterator[dict[str, str]]:
    """A Ray left running on this machine, as `ray start --head` leaves one (in the foreground
    here, `--block`, so that the test stops exactly its processes), with token authentication
    as Ray 2.5x clusters have it: the environment a command needs to join it with `--address
    auto` (RAY_ADDRESS names this Ray, so no other Ray on the machine is picked; the token)."""
    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # the venv's own `ray` script: CI runs .venv/bin/python without the venv's bin on PATH
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **token}
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    head = subprocess.Popen(
        [
            str(Path(bin_dir) / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={address.rsplit(':', 1)[1]}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    env["RAY_ADDRESS"] = address
    try:
        for _ in range(60):  # up when a client can join
            if _ray_jobs(env) is not None:
                break
            assert head.poll() is None, "ray start --head exited"
        else:
            pytest.fail("ray start --head did not come up")
        yield env
    finally:
        tree = psutil.Process(head.pid).children(recursive=True) if head.poll() is None else []
        head.terminate()  # `ray start --block` stops what it started
        head.wait(60)
        for p in tree:
            if p.is_running():
                p.kill()


def _ray_jobs(env: dict[str, str]) -> int | None:
    """How many drivers have joined the Ray that `env` names (this probe included), None if none can."""
    probe = (
        "import ray; ray.init(address='auto', logging_level='ERROR'); print(len(ray._private.state.jobs()))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    return int(run.stdout.split()[-1]) if run.returncode == 0 else None


def test_address_auto_joins_the_running_ray_and_leaves_it_running(
    home: Path, books_frame: pd.DataFrame, running_ray: dict[str, str]
) -> None:
    """`--address auto` reuses the Ray that `ray start --head` left running (found here through
    RAY_ADDRESS, which Ray's "auto" reads first) instead of starting and stopping one of its own."""
    col = Collection.create("auto")
    col.ingest(books_frame.head(40), id_field="isbn13", template=TEMPLATE)
    env = {**running_ray, "EMBEDSCOPE_HOME": str(home)}
    cli = [sys.executable, "-m", "embedscope.cli", "embed", "auto", "--encoder", "lsa", "-p"]
    cli += ["n_components=8", "--engine", "ray", "--address", "auto"]
    before = _ray_jobs(running_ray)
    run = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=BOUND_S)
    assert run.returncode == 0, run.stderr
    engine = Collection.open("auto").versions()[0].stats["engine"]
    assert engine["address"] == "auto" and engine["joined"].endswith(running_ray["RAY_ADDRESS"].split(":")[1])
    # the embed ran as a driver of that Ray (one more job than before, besides this probe's), and
    # the Ray is still there for the next command
    assert before is not None and _ray_jobs(running_ray) == before + 2


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
