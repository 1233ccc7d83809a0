"""Batch embedding on Ray Data: the texts become a Dataset, a pool of actors encodes it with
`map_batches` (one model load per actor, not per batch), and the vectors come back to the driver,
which puts them in row order.

- Learning encoders (lsa, lda, word2vec, ...) are fitted once on the driver by `Collection.embed`;
  their saved state (`Encoder.save`, a few files) travels through Ray's object store and every
  actor restores it (`registry.encoder_from_bytes`), so all actors encode with the same fitted model.
- Sparse encoders (onehot, bow, tfidf, bm25) are refused: they vectorise a whole corpus in
  seconds in-process, and CSR rows do not fit Ray Data's tensor columns. (`hybrid` embeds its
  sparse half locally and its dense half on Ray.)
- Without an address a local Ray is started with this machine's CPUs and shut down afterwards;
  a Ray that is already initialised in this process (a notebook, a test session) is used as is.
  With an address the driver joins that cluster and ships embedscope's own code to it
  (`runtime_env` py_modules); its dependencies (torch, sentence-transformers, the packaged
  model) must be installed on the nodes, and a cluster with token authentication (Ray's
  default) needs RAY_AUTH_MODE=token and its token in the driver's environment.
  `address="auto"` joins the Ray already running on this machine (the one `ray start --head`
  started, or RAY_ADDRESS), as Ray resolves "auto", and leaves it running: the command skips
  starting and stopping a Ray of its own (docs/design.md has what that saves). The address is
  probed first, so a stale record of a Ray that is gone fails at once instead of after
  minutes of Ray's reconnect attempts.
- On a cluster with GPUs each actor takes one (`num_gpus=1`) and encodes on `cuda`; otherwise the
  CPUs are split between the actors (fractions allowed) and torch gets as many threads.
- No all-to-all step (repartition, random_shuffle, sort) runs before the actor stage: on a small
  local Ray it waited forever for CPUs the actors held. Blocks are cut to one batch each when the
  Dataset is made, and rows carry their index so the driver can place them whatever order they
  arrive in.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from embedscope.encoders.base import Encoder, Vectors
from embedscope.encoders.registry import encoder_from_bytes
from embedscope.engines.base import Engine, ProgressFn, chunk_size, length_order
from embedscope.errors import EmbedscopeError


def _ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401 - fails without the [data] extra
    except ImportError as exc:
        raise EmbedscopeError(
            "the ray engine needs Ray Data: pip install 'embedscope[ray]' (or 'ray[data]')"
        ) from exc
    return ray


def _resolve(address: str) -> str:
    """`address` with "auto" resolved as Ray resolves it (RAY_ADDRESS, else the cluster the last
    `ray start` on this machine recorded, else the one GCS process running here), and checked to
    answer. Ray itself, given an address where nothing listens (a Ray that stopped without
    `ray stop` leaves its record behind), retries for minutes before failing."""

    if address != "auto":
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # a Ray whose private lookup moved: let ray.init resolve (and retry) itself
        return address
    try:
        resolved = canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as exc:
        raise EmbedscopeError(
            f"--address auto: no running Ray found on this machine ({exc}); start one with "
            "`ray start --head`, or drop --address for a Ray of this command's own"
        ) from None
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError):
        raise EmbedscopeError(
            f"--address auto: the Ray it found at {resolved} (RAY_ADDRESS, or the last `ray start` on "
            "this machine) does not answer: it has stopped; start one with `ray start --head`, or drop "
            "--address for a Ray of this command's own"
        ) from None
    return resolved


class EncodeActor:
    """One per Ray actor: restores the fitted encoder once, then encodes batch after batch."""

    def __init__(self, state: bytes, batch_size: int, device: str | None, threads: int) -> None:
        started = time.perf_counter()
        # actors share the machine: OpenVINO's thread pinning would put them all on the same cores
        from embedscope.encoders.runtime import configure_worker

        configure_worker(threads, pin=False)
        self.encoder = encoder_from_bytes(state)
        if device and "device" in self.encoder.params:
            self.encoder.params["device"] = device  # where it runs; the stored config stays as given
        self.encoder.encode(["warm-up"])  # load the model now, so its cost is counted here
        self.batch_size = batch_size
        self.load_seconds = time.perf_counter() - started
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = np.asarray(self.encoder.encode(list(batch["text"]), batch_size=self.batch_size), np.float32)
        n = len(vectors)
        return {
            "row": batch["row"],
            "vector": vectors,
            "actor": np.full(n, self.pid, dtype=np.int64),
            "load_seconds": np.full(n, self.load_seconds),
        }


class RayEngine(Engine):
    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, actors: int | None = None):
        super().__init__()
        self.address = address
        #: the address joined (`address` with "auto" resolved), None for a local Ray of our own
        self.joined: str | None = None
        self.num_cpus = num_cpus or os.cpu_count() or 1
        self.actors = actors

    def check(self, encoder: Encoder) -> None:
        if encoder.sparse:
            raise EmbedscopeError(
                f"encoder '{encoder.name}' is sparse (count-based): it runs in-process in seconds and "
                "its rows are not Ray tensors; use --engine local"
            )
        if not encoder.encodes_text:
            raise EmbedscopeError(f"encoder '{encoder.name}' does not encode text; it cannot run on Ray")
        if self.address:
            self.joined = _resolve(self.address)  # before any fitting: a Ray that is gone fails now

    def _start(self, ray: ModuleType) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from a library call
        # the C++ core worker's INFO/WARNING lines (e.g. at shutdown) are Ray's bookkeeping, not the
        # user's; errors still print
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        # "token authentication is enabled" on every start is noise for a library call
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        common = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if self.address:
                package = Path(__file__).parent.parent  # the embedscope package, shipped to the cluster
                self.joined = self.joined or _resolve(self.address)
                ray.init(
                    # "auto" as given: Ray then also sends the local token (~/.ray/auth_token) that a
                    # `ray start` Ray requires by default; it does not for an explicit address
                    address=self.address,
                    runtime_env={"py_modules": [str(package)]},
                    **common,
                )
            else:
                # "local": always a new Ray of our own, never one `ray start` left running here
                ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if not self.address:
                raise EmbedscopeError(f"cannot start a local Ray: {exc}") from exc
            hint = (
                ""
                if os.environ.get("RAY_AUTH_MODE")
                else "; if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token "
                "and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to its token"
            )
            raise EmbedscopeError(f"cannot join the Ray cluster at {self.address}: {exc}{hint}") from exc

    def _pool(self, ray: ModuleType, blocks: int) -> tuple[int, float, int]:
        """(actors, CPUs per actor, GPUs per actor) for this cluster; never more actors than
        blocks, since each extra actor only loads another copy of the model."""
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus:
            return min(self.actors or gpus, blocks), 1.0, 1
        cpus = float(resources.get("CPU", self.num_cpus))
        # one actor per core, one torch thread each (docs/design.md: bench/bench_ray.py)
        actors = min(self.actors or max(1, int(cpus)), blocks)
        return actors, cpus / actors, 0

    def encode(
        self, encoder: Encoder, texts: list[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> Vectors:
        self.check(encoder)
        if not texts:
            return encoder.encode([])
        ray = _ray()
        started = time.perf_counter()
        owns_ray = not ray.is_initialized()
        if owns_ray:
            self._start(ray)
        startup = time.perf_counter() - started
        try:
            return self._run(ray, encoder, texts, batch_size, progress, startup)
        finally:
            if owns_ray:
                ray.shutdown()

    def _run(
        self,
        ray: ModuleType,
        encoder: Encoder,
        texts: list[str],
        batch_size: int,
        progress: ProgressFn | None,
        startup: float,
    ) -> np.ndarray:

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller shows one bar, fed by `progress`
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
        chunk = chunk_size(batch_size)
        order = length_order(texts)  # the local engine's order: the same batches, little padding
        frame = pd.DataFrame({"row": order.astype(np.int64), "text": [texts[r] for r in order]})
        blocks = [frame.iloc[s : s + chunk] for s in range(0, len(frame), chunk)]
        actors, cpus, gpus = self._pool(ray, len(blocks))
        t0 = time.perf_counter()
        dataset = ray.data.from_pandas(blocks).map_batches(
            EncodeActor,
            fn_constructor_kwargs={
                # inline, not an ObjectRef: Ray moves large arguments through the object store
                # itself, and a ref among an actor's constructor arguments draws a warning
                "state": encoder.to_bytes(),
                "batch_size": batch_size,
                "device": "cuda" if gpus else None,
                "threads": 0 if gpus else max(1, round(cpus)),
            },
            batch_size=chunk,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus,
        )
        out: np.ndarray | None = None
        done = 0
        loads: dict[int, float] = {}
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            vectors = np.asarray(batch["vector"], dtype=np.float32)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch["row"]] = vectors
            loads.update(zip(batch["actor"].tolist(), batch["load_seconds"].tolist(), strict=True))
            done += len(vectors)
            if progress:
                progress(done, len(texts))
        if out is None or done != len(texts):
            raise EmbedscopeError(f"Ray returned {done} of {len(texts)} vectors; nothing was written")
        self.stats = {
            "engine": self.name,
            "address": self.address or "local",
            **({"joined": self.joined} if self.joined and self.joined != self.address else {}),
            "actors": actors,
            "cpus_per_actor": round(cpus, 3),
            "gpus_per_actor": gpus,
            "startup_seconds": round(startup, 3),
            "model_load_seconds": sorted(round(s, 3) for s in loads.values()),
            "pipeline_seconds": round(time.perf_counter() - t0, 3),
        }
        return out
