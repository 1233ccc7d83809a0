"""Helpers shared by the benchmarks: timing, tables, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def latency_ms(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    arr = np.array(times)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
    }


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def report(name: str, title: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> Path:
    """Print rows as a table and write them (with machine facts) to bench/results/NAME.json."""
    table = Table(title=title)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(r.get(c, "")) for c in columns])
    Console(width=max(Console().width, 160)).print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(
        json.dumps({"benchmark": name, "machine": machine(), "rows": rows, **(extra or {})}, indent=2)
    )
    print(f"wrote {out}")
    return out


def load_and_flags() -> dict[str, Any]:
    """The load average and the CPU's SIMD flags, printed and recorded beside every timing (the
    machine is shared: a timing means little without them)."""
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    flags: set[str] = set()
    if Path("/proc/cpuinfo").exists():
        wanted = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags |= wanted & set(line.split(":", 1)[1].split())
    out = {"loadavg": " ".join(load), "cpu_flags": " ".join(sorted(flags))}
    print(f"load average {out['loadavg']}; CPU flags: {out['cpu_flags'] or 'none listed'}", flush=True)
    return out


def kfold_picks(
    table: np.ndarray, seeds: int, folds: int, *, decimals: int | None = None
) -> tuple[list[int], list[float], list[float]]:
    """k-fold over queries (the columns of `table`, candidates x queries), repeated over `seeds`
    shuffles: on each training split the candidate (row) with the best mean wins and is scored on
    the held-out fold; ties go to the earlier row (`decimals`: means rounded first, so float noise
    does not break a tie). Returns (the row picked per fold, its held-out mean per fold, each
    seed's pooled held-out mean): what bench_hybrid and bench_quality report their choice by."""
    from sklearn.model_selection import KFold

    picks: list[int] = []
    held: list[float] = []
    seed_means: list[float] = []
    for seed in range(seeds):
        pooled = np.zeros(table.shape[1])
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(table.T):
            means = table[:, train].mean(axis=1)
            best = int(np.argmax(means if decimals is None else np.round(means, decimals)))
            picks.append(best)
            held.append(float(table[best, test].mean()))
            pooled[test] = table[best, test]
        seed_means.append(float(pooled.mean()))
    return picks, held, seed_means


def paired(a: np.ndarray, b: np.ndarray, resamples: int = 10_000) -> dict[str, Any]:
    """b - a per query: wins/ties/losses and the two-sided sign-flip randomisation test (as
    `embedscope.evaluate.ir.compare_runs`): the one paired test of every bench."""
    from scipy import stats

    d = b - a
    p = 1.0
    if d.any():
        p = float(
            stats.permutation_test(
                (d,), np.mean, permutation_type="samples", n_resamples=resamples, random_state=0
            ).pvalue
        )
    return {
        "diff": round(float(d.mean()), 4),
        "wins": int((d > 0).sum()),
        "ties": int((d == 0).sum()),
        "losses": int((d < 0).sum()),
        "p": round(p, 4),
    }
