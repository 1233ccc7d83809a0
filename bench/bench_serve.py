"""HTTP serving latency: `embedscope serve` on the books demo collection, loopback only.

    EMBEDSCOPE_HOME=~/.cache/embedscope-bench python bench/bench_serve.py            # ~2 min
    python bench/bench_serve.py --requests 100 --max-seconds 20                      # quicker

The `books` collection (5,197 books, MiniLM, HNSW: the defaults) is built with `embedscope demo`'s
code if absent from $EMBEDSCOPE_HOME (2-10 min of MiniLM encoding on 2 CPU cores; reuse the home).
The server runs in a subprocess (`embedscope serve books`), the client is httpx in threads. For each
concurrency (1 and 8): short queries never seen before (uncached: the query is encoded) and repeated
queries (answered from the query-embedding cache), each a bounded number of requests and seconds.
Reported: client-side p50/p99 latency and throughput, and the server's own stage breakdown (p50 of
encode / search / rank from the response's `stages`). Writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, report  # noqa: E402

MOODS = [
    "atmospheric",
    "cozy",
    "dark",
    "funny",
    "melancholic",
    "hopeful",
    "tense",
    "whimsical",
    "epic",
    "quiet",
]
KINDS = [
    "mystery",
    "romance",
    "space opera",
    "fantasy quest",
    "family saga",
    "war story",
    "coming of age",
    "heist",
    "ghost story",
    "courtroom drama",
]
EXTRAS = [
    "female lead",
    "small town",
    "found family",
    "unreliable narrator",
    "worldbuilding",
    "time travel",
    "dragons",
    "detective",
    "sea voyage",
    "friendship",
]


def short_queries() -> list[str]:
    """1,000 distinct short queries (3-5 words), shuffled reproducibly."""
    qs = [f"{m} {k}, {e}" for m, k, e in itertools.product(MOODS, KINDS, EXTRAS)]
    np.random.default_rng(0).shuffle(qs)
    return qs


def ensure_books(home: Path) -> None:
    os.environ["EMBEDSCOPE_HOME"] = str(home)
    from embedscope.collection import Collection

    if "books" in Collection.list(home):
        return
    books = SHARED_DATA / "books" / "books.csv"
    if not books.exists():
        raise SystemExit(f"no books collection under {home} and no {books}; run `embedscope demo` first")
    from embedscope.cli.demo import run_demo

    run_demo(data=str(books), collection="books", encoder="minilm", limit=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, torch_threads: int) -> subprocess.Popen:
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("EMBEDSCOPE_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from embedscope.cli import main; main()",
            "serve",
            "books",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start in 180 s")


def phase(base: str, queries: list[str], concurrency: int, n: int, max_s: float) -> dict:
    """Send up to n requests (or until max_s) with `concurrency` threads; collect latencies and stages."""
    lat, stages, cached, errors = [], [], [], []
    lock = threading.Lock()
    counter = itertools.count()
    started = time.perf_counter()

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while True:
                i = next(counter)
                if i >= n or time.perf_counter() - started > max_s:
                    return
                q = queries[i % len(queries)]
                t0 = time.perf_counter()
                r = client.get("/api/collections/books/search", params={"query": q, "k": 10})
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    if r.status_code != 200:
                        errors.append(r.status_code)
                        continue
                    body = r.json()
                    lat.append(dt)
                    stages.append(
                        [
                            body["stages"]["encode_ms"],
                            body["stages"]["search_ms"],
                            body["stages"]["rank_ms"],
                            body["took_ms"],
                        ]
                    )
                    cached.append(body["cached"])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    a, s = np.array(lat), np.array(stages)
    return {
        "requests": len(lat),
        "errors": len(errors),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "req_per_s": round(len(lat) / wall, 1),
        "server_p50_ms": round(float(np.percentile(s[:, 3], 50)), 2),
        "encode_p50_ms": round(float(np.percentile(s[:, 0], 50)), 2),
        "search_p50_ms": round(float(np.percentile(s[:, 1], 50)), 2),
        "rank_p50_ms": round(float(np.percentile(s[:, 2], 50)), 2),
        "cache_hit_share": round(float(np.mean(cached)), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--home", type=Path, default=Path(os.environ.get("EMBEDSCOPE_HOME") or Path.home() / ".embedscope")
    )
    ap.add_argument("--requests", type=int, default=300, help="per phase")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="per phase")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument(
        "--torch-threads", type=int, default=0, help="passed to `embedscope serve` (0 = torch default)"
    )
    args = ap.parse_args()
    ensure_books(args.home)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = start_server(args.home, port, args.torch_threads)
    startup_s = time.perf_counter() - t0
    try:
        fresh = iter(short_queries())
        repeated = short_queries()[-20:]
        with httpx.Client(base_url=base, timeout=30) as c:
            first = c.get(
                "/api/collections/books/search", params={"query": "first query after start", "k": 10}
            )
            first_ms = first.json()["took_ms"]
            for q in repeated:  # put the repeated queries in the cache
                c.get("/api/collections/books/search", params={"query": q, "k": 10})
            info = c.get("/api/collections/books").json()
        rows = []
        for conc in args.concurrency:
            for kind in ("uncached", "cached"):
                queries = [next(fresh) for _ in range(args.requests)] if kind == "uncached" else repeated
                row = {
                    "concurrency": conc,
                    "queries": kind,
                    **phase(base, queries, conc, args.requests, args.max_seconds),
                }
                rows.append(row)
        version = next(v for v in info["versions"] if v["active"])
        report(
            "serve",
            f"embedscope serve: /search on books ({info['items']} items, {version['encoder']['name']}, "
            f"{version['index']['kind']}), loopback, k=10",
            rows,
            {
                "collection": {"items": info["items"], "version": version["name"], "index": version["index"]},
                "startup_seconds": round(startup_s, 2),
                "first_query_server_ms": first_ms,
                "load_average": os.getloadavg(),
                "torch_threads": args.torch_threads,
                "command": "python bench/bench_serve.py " + " ".join(sys.argv[1:]),
                "targets": {"p50_ms": 15, "p99_ms": 50, "at": "concurrency 1, short queries"},
            },
        )
        print(f"server start (load collection + model): {startup_s:.1f} s; first query: {first_ms:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
