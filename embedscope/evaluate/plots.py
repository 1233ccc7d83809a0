"""PNG charts for evaluation reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pyplot():  # noqa: ANN202 - matplotlib's module type
    """matplotlib.pyplot on the headless Agg backend (every PNG the project writes goes through it)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def bar_chart(
    values: dict[str, dict[str, float]], metrics: Sequence[str], title: str, path: str | Path
) -> Path:
    """Grouped bars: one group per metric, one bar per encoder."""
    import numpy as np

    plt = pyplot()
    names = list(values)
    x = np.arange(len(metrics))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 0.5 * len(names)), 4))
    for i, name in enumerate(names):
        ys = [values[name].get(m, 0.0) for m in metrics]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, ys, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(x, list(metrics))
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=min(len(names), 4))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def recall_curve(points: Sequence[dict[str, float]], title: str, path: str | Path) -> Path:
    """ANN sweep: recall@k against p50 latency, one marker per expansion_search value."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    lat = [p["latency_ms_p50"] for p in points]
    rec = [p["recall"] for p in points]
    ax.plot(lat, rec, marker="o")
    for p in points:
        ax.annotate(
            f"ef={p['expansion_search']}",
            (p["latency_ms_p50"], p["recall"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, -10),
        )
    ax.set_xlabel("latency per query, p50 (ms)")
    ax.set_ylabel("recall against exact search")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
