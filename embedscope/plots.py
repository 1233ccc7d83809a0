"""PNG charts for evaluation reports, experiment reports and projections (matplotlib, Agg backend: no
display needed). A low module: evaluate, experiments and projection all draw through it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pyplot():  # noqa: ANN202 - matplotlib's module type
    """matplotlib.pyplot on the headless Agg backend (every PNG the project writes goes through it)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 120, *, tight: bool = False) -> Path:  # noqa: ANN001
    """Lay out, write (creating the folder) and close a figure (`tight`: crop to what is drawn,
    a legend placed outside the axes included)."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return path


def bar_chart(
    values: dict[str, dict[str, float]], metrics: Sequence[str], title: str, path: str | Path
) -> Path:
    """Grouped bars: one group per metric, one bar per encoder."""

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
    return save(fig, path, 120)


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
    return save(fig, path, 120)


def drift_chart(report: dict, path: str | Path) -> Path:
    """One panel per part of a drift report: MMD^2 and centroid shift per query window, the same
    for the items, and the spread of neighbour overlap (Jaccard, RBO) between two versions."""

    parts = [p for p in ("queries", "items", "versions") if report.get(p)]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(parts), figsize=(5.5 * len(parts), 4), squeeze=False)
    for ax, part in zip(axes[0], parts, strict=True):
        data = report[part]
        if part == "queries":
            rows = [r for r in data["windows"][1:] if "mmd2" in r]
            x = np.arange(len(rows))
            ax.bar(x, [r["mmd2"] for r in rows], color="tab:blue", label="MMD² vs previous window")
            for i, r in enumerate(rows):
                ax.annotate(
                    f"p={r['p']:.3g}",
                    (i, r["mmd2"]),
                    ha="center",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
            ax.set_xticks(x, [str(r["window"])[:16] for r in rows], rotation=30, ha="right", fontsize=7)
            twin = ax.twinx()
            twin.plot(
                x, [r["centroid_shift"] for r in rows], "o-", color="tab:orange", label="centroid shift"
            )
            twin.set_ylabel("centroid shift (1 - cosine)")
            ax.set_ylabel("MMD²")
            ax.set_title(f"queries ({data['version']}), window {data['window']}", fontsize=10)
        elif part == "items":
            if "mmd2" in data:
                ax.bar(["MMD²", "centroid shift"], [data["mmd2"], data["centroid_shift"]], color="tab:green")
                ax.set_title(
                    f"items since {data['version']} was embedded: +{data['added']} "
                    f"~{data['changed']} -{data['deleted']}, p={data['p']:.3g}",
                    fontsize=9,
                )
            else:
                ax.text(0.5, 0.5, data.get("note", ""), ha="center", va="center", wrap=True, fontsize=8)
                ax.set_axis_off()
        else:
            for key, label in (("neighbour_jaccard", "Jaccard"), ("neighbour_rbo", "RBO")):
                spread = data[key]
                ax.bar(
                    [f"{label} p{q}" for q in (10, 25, 50, 75, 90)],
                    [spread[f"p{q}"] for q in (10, 25, 50, 75, 90)],
                    alpha=0.7,
                    label=f"{label} (mean {spread['mean']:.2f})",
                )
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
            ax.set_ylim(0, 1.05)
            ax.set_title(
                f"top-{data['k']} neighbours {data['a']['version']} → {data['b']['version']}", fontsize=10
            )
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"drift: {report['collection']}", fontsize=11)
    return save(fig, path, 110)
