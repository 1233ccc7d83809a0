"""In-process encoding vs Ray Data batch embedding (`embed --engine ray`) on the same texts, at a
size where Ray's fixed cost matters less: the overhead at each size, and 1 vs 2 actors.

    python bench/bench_ray.py                                  # 50,000 texts, every config, 1 round
    python bench/bench_ray.py --texts 5000 --rounds 2          # smaller, interleaved rounds
    python bench/bench_ray.py --texts 20000 --configs inprocess,local:1x2,running:1x2

Texts: the sentences of the SciFact abstracts and the books ("{title}. {description}"), 49,620
real texts from ../shared/data (bench/encode_corpus.py `real_texts`), shuffled with a fixed seed
so any prefix mixes both; above 49,620 the books come again with their sentences rotated. MiniLM
with the project's defaults (bf16 through OpenVINO where the CPU has it), the real path.

Configs (`--configs`, comma-separated), each run in a fresh process and timed from its start to
its exit, as a user waits for an `embed` command (imports, model loads, Ray, encoding):
- `inprocess`: the local engine;
- `local:AxC`: `--engine ray` without an address: a Ray of its own with C CPUs, started and shut
  down inside the timing, A actors (C/A CPUs each);
- `running:AxC`: `--engine ray --address auto` on a Ray that is already running (found through
  RAY_ADDRESS, so no other Ray on the machine is picked; token authentication on, as Ray 2.5x
  clusters have it): the bench starts `ray start --head --num-cpus C --block` before the timing
  and stops it after, so the timing has joining, actors, encoding and leaving, not starting Ray.
Overhead = config wall time / in-process wall time - 1 (the issue's bar: <= 10% at 50,000 texts
with 1 actor). Speed-up = wall time of `local:1x1` / this config's (2 actors of 1 CPU against 1).

The machine may be shared: besides wall time the bench reports CPU seconds (user + system) of
everything the run started (this process and every process under it or under the running Ray,
sampled every 0.5 s), so Ray's extra work reads the same however busy the machine is. The load
average and CPU flags are printed and recorded. Configs run interleaved, round after round; each
keeps its fastest round.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_and_flags, report  # noqa: E402
from encode_corpus import real_texts  # noqa: E402

DEFAULT_CONFIGS = "inprocess,local:1x2,running:1x2,local:1x1,local:2x2,running:2x2"


def bench_texts(n: int, seed: int = 0) -> list[str]:
    """n real texts: SciFact sentences and books, shuffled; books again, sentences rotated, past 49,620."""
    import re

    base = real_texts()
    books = base[-5197:]
    texts = list(base)
    turn = 1
    while len(texts) < n:
        for book in books:
            title, _, description = book.partition(". ")
            parts = re.split(r"(?<=[.!?])\s+", description)
            k = turn % max(len(parts), 1)
            texts.append(f"{title}. {' '.join(parts[k:] + parts[:k])}")
        turn += 1
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:n]]


# --- CPU seconds of a process tree ----------------------------------------------------------------
class CpuMeter:
    """CPU seconds (user + system) spent during the block by this process and every process under
    `roots` (descendants included), sampled every `interval` s: a process that ends between two
    samples is counted up to its last sample."""

    def __init__(self, roots: list[int], interval: float = 0.5) -> None:
        import psutil

        self.psutil = psutil
        self.roots = [os.getpid(), *roots]
        self.interval = interval
        self.start: dict[tuple[int, float], float] = {}
        self.last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()

    def _sample(self) -> dict[tuple[int, float], float]:
        seen = {}
        for root in self.roots:
            try:
                top = self.psutil.Process(root)
                procs = [top, *top.children(recursive=True)]
            except self.psutil.Error:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                    seen[(p.pid, p.create_time())] = t.user + t.system
                except self.psutil.Error:
                    pass
        return seen

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.last.update(self._sample())

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        self.last = dict(self.start)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.last.update(self._sample())
        self.seconds = sum(v - self.start.get(k, 0.0) for k, v in self.last.items())


# --- a running Ray, as `ray start --head` leaves one ---------------------------------------------
class RunningRay:
    """`ray start --head --block` in a child process (so its processes are ours to count and stop),
    with a token of its own (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN), as Ray 2.5x clusters use token
    authentication. `env` is what a command that joins it with `--address auto` needs: RAY_ADDRESS
    names this Ray (no other Ray on the machine is picked) and the token."""

    def __init__(self, cpus: int) -> None:
        import secrets

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        self.proc = subprocess.Popen(
            [
                "ray",
                "start",
                "--head",
                "--block",
                f"--port={port}",
                f"--num-cpus={cpus}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        self.env["RAY_ADDRESS"] = self.address
        join = "import ray; ray.init(address='auto', logging_level='ERROR')"
        deadline = time.time() + 300
        while time.time() < deadline:  # ready when a client can join
            probe = subprocess.run([sys.executable, "-c", join], capture_output=True, env=self.env)
            if probe.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError("ray start --head exited")
            time.sleep(2)
        self.stop()
        raise RuntimeError(f"ray start --head did not come up in 300 s: {probe.stderr.decode()[-500:]}")

    def stop(self) -> None:
        import psutil

        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for p in tree:  # anything left of this cluster, by process id
            try:
                p.kill()
            except psutil.Error:
                pass


# --- one config, in a process of its own (as one `embed` command is) --------------------------------
def in_process(texts: list[str], batch_size: int) -> tuple[dict[str, Any], np.ndarray]:
    from embedscope.encoders.registry import create_encoder
    from embedscope.engines import create_engine

    t = time.perf_counter()
    enc = create_encoder("minilm")
    enc.encode(["warm-up"])  # the model load
    load = time.perf_counter() - t
    t = time.perf_counter()
    vectors = create_engine("local").encode(enc, texts, batch_size=batch_size)
    encode = time.perf_counter() - t
    row = {"startup_s": 0.0, "model_load_s": f"{load:.1f}", "encode_s": round(encode, 1)}
    return row, vectors


def on_ray(
    texts: list[str], batch_size: int, actors: int, cpus: int, address: str | None
) -> tuple[dict[str, Any], np.ndarray]:
    from embedscope.encoders.registry import create_encoder
    from embedscope.engines.ray_data import RayEngine

    engine = RayEngine(address=address, num_cpus=cpus, actors=actors)
    engine.check(create_encoder("minilm"))  # as Collection.embed does first ("auto" resolved)
    vectors = engine.encode(create_encoder("minilm"), texts, batch_size=batch_size)
    s = engine.stats
    row = {
        "startup_s": round(s["startup_seconds"], 1),
        "model_load_s": " / ".join(f"{x:.1f}" for x in s["model_load_seconds"]),
        "encode_s": round(s["pipeline_seconds"], 1),
        "actors x CPU": f"{s['actors']} x {s['cpus_per_actor']}",
    }
    return row, vectors


def parse_config(text: str) -> tuple[str, int, int]:
    """'inprocess' -> ('inprocess', 0, 0); 'local:2x2' -> ('local', 2 actors, 2 CPUs)."""
    kind, _, shape = text.partition(":")
    if kind == "inprocess" and not shape:
        return kind, 0, 0
    a, _, c = shape.partition("x")
    if kind not in ("local", "running") or not (a.isdigit() and c.isdigit()) or int(a) < 1 or int(c) < 1:
        raise SystemExit(f"bad config {text!r}: inprocess, local:AxC or running:AxC (A actors, C CPUs)")
    return kind, int(a), int(c)


def child(config: str, n: int, batch_size: int, out: Path) -> None:
    """Run one config in this (fresh) process: vectors to `out`, the row as JSON on stdout."""
    import json

    kind, actors, cpus = parse_config(config)
    texts = bench_texts(n)
    if kind == "inprocess":
        row, vectors = in_process(texts, batch_size)
    else:  # running: `--address auto`, finding the bench's Ray through RAY_ADDRESS
        row, vectors = on_ray(texts, batch_size, actors, cpus, "auto" if kind == "running" else None)
    np.save(out, np.asarray(vectors, dtype=np.float32))
    print(json.dumps(row))


def run_config(config: str, n: int, batch_size: int, tmp: Path) -> tuple[dict[str, Any], np.ndarray]:
    """One config timed from process start to exit (imports, model loads, Ray start or join,
    encoding, shutdown), with the CPU seconds of every process it started."""
    import json

    kind, _, cpus = parse_config(config)
    cluster = RunningRay(cpus) if kind == "running" else None
    out = tmp / "vectors.npy"
    cmd = [sys.executable, __file__, "--child", config, "--texts", str(n), "--batch-size", str(batch_size)]
    try:
        with CpuMeter([cluster.proc.pid] if cluster else []) as cpu:
            t = time.perf_counter()
            run = subprocess.run(
                [*cmd, "--vectors-out", str(out)],
                capture_output=True,
                text=True,
                env=cluster.env if cluster else None,
            )
            total = time.perf_counter() - t
    finally:
        if cluster:
            cluster.stop()
    if run.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{run.stderr[-3000:]}")
    row = json.loads(run.stdout.strip().splitlines()[-1])
    return {"config": config, "total_s": round(total, 1), "cpu_s": round(cpu.seconds, 1), **row}, np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=50_000, help="how many texts (default 50,000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated ({DEFAULT_CONFIGS})")
    parser.add_argument("--out", default=None, help="bench/results/OUT.json (default ray-TEXTS)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one config, in its process
    parser.add_argument("--vectors-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.texts, args.batch_size, args.vectors_out)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        parse_config(c)
    if "inprocess" not in configs:
        configs.insert(0, "inprocess")  # the yardstick of every overhead
    n = len(bench_texts(args.texts))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    before = load_and_flags()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))

    best: dict[str, dict[str, Any]] = {}
    every = []
    reference: np.ndarray | None = None
    for round_no in range(args.rounds):
        for config in configs:
            load = os.getloadavg()[0]
            row, vectors = run_config(config, n, args.batch_size, tmp)
            if reference is None:
                reference = vectors  # the first in-process run
            row["min_cosine"] = round(float(np.min(np.sum(vectors * reference, axis=1))), 6)
            row["load1"] = round(load, 1)
            every.append({"round": round_no, **row})
            print(every[-1], flush=True)
            if config not in best or row["total_s"] < best[config]["total_s"]:
                best[config] = row
    base = best["inprocess"]
    one = best.get("local:1x1")
    rows = []
    for config, row in best.items():
        rows.append(
            {
                **row,
                "texts": n,
                "texts_per_s": round(n / row["total_s"], 1),
                "overhead": "" if config == "inprocess" else f"{row['total_s'] / base['total_s'] - 1:+.1%}",
                "cpu overhead": "" if config == "inprocess" else f"{row['cpu_s'] / base['cpu_s'] - 1:+.1%}",
                "speed-up vs local:1x1": f"{one['total_s'] / row['total_s']:.2f}x" if one else "",
            }
        )
    after = load_and_flags()
    report(
        args.out or f"ray-{n}",
        f"MiniLM over {n} texts (SciFact sentences + books): in-process vs Ray Data, "
        f"best of {args.rounds} interleaved round(s)",
        rows,
        {
            "note": "total_s: as a user waits (Ray: start or join, actors, model loads, encoding, "
            "shutdown or leave); encode_s for Ray is the Dataset pipeline; cpu_s: CPU seconds of every "
            "process the run started; load1: the 1-minute load average when the config started",
            "load_before": before,
            "load_after": after,
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "command": "python bench/bench_ray.py " + " ".join(sys.argv[1:]),
            "rounds": every,
        },
    )


if __name__ == "__main__":
    main()
