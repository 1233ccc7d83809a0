"""Evaluate all seven encoders on BEIR SciFact, cold (fresh collection) then warm (cached vectors).

    python bench/bench_scifact.py [--data ../shared/data/beir/scifact] [--encoders ...] [--keep DIR]

Prints the table and writes bench/results/scifact.json. Target: the cold run under 10 minutes on
the 2-core development machine; the warm run encodes nothing. Also measures how far MiniLM's bf16
autocast moves document vectors from fp32 (cosine on 200 SciFact documents).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "beir" / "scifact"
TARGET_S = 600


def bf16_check(data: Path, n: int = 200) -> dict[str, float]:
    """Cosine between bf16-autocast and fp32 MiniLM vectors of the first n documents."""
    from embedscope.encoders.registry import create_encoder

    docs = [json.loads(line) for _, line in zip(range(n), open(data / "corpus.jsonl"), strict=False)]
    texts = [f"{d.get('title') or ''} {d.get('text') or ''}".strip() for d in docs]
    t0 = time.perf_counter()
    bf16 = create_encoder("minilm", {"precision": "bf16"}).encode(texts, batch_size=32)
    t_bf16 = time.perf_counter() - t0
    t0 = time.perf_counter()
    fp32 = create_encoder("minilm", {"precision": "fp32"}).encode(texts, batch_size=32)
    t_fp32 = time.perf_counter() - t0
    cos = (bf16 * fp32).sum(1)
    return {
        "documents": n,
        "min_cosine": round(float(cos.min()), 6),
        "mean_cosine": round(float(cos.mean()), 6),
        "bf16_docs_per_s": round(n / t_bf16, 1),
        "fp32_docs_per_s": round(n / t_fp32, 1),
    }


def main() -> None:
    from rich.console import Console

    from embedscope.cli.evaluate_cmd import metrics_table
    from embedscope.evaluate.ir import DEFAULT_ENCODERS, evaluate_beir, write_outputs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--encoders", default=",".join(DEFAULT_ENCODERS))
    ap.add_argument("--keep", type=Path, default=None, help="collections root to keep (default: a temp dir)")
    ap.add_argument("--no-bf16-check", action="store_true")
    args = ap.parse_args()
    console = Console()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        cold = evaluate_beir(args.data, args.encoders, root=root)
        warm = evaluate_beir(args.data, args.encoders, root=root)
        # run files are ~1 MB per encoder: kept out of the repository, only the chart is copied
        files = write_outputs(cold, Path(tmp) / "out")
        chart = ROOT / "bench" / "results" / "scifact.png"
        chart.parent.mkdir(parents=True, exist_ok=True)
        chart.write_bytes(Path(files["chart"]).read_bytes())
    title = f"SciFact test ({cold.queries} queries, {cold.documents} docs), cold run {cold.seconds} s"
    console.print(metrics_table(cold, title))
    cold_d = cold.to_dict()
    console.print(
        f"cold: {cold.seconds} s (target < {TARGET_S} s: {'met' if cold.seconds < TARGET_S else 'MISSED'})"
    )
    console.print(f"warm: {warm.seconds} s, documents encoded: {sum(r.encoded for r in warm.results)}")
    console.print(f"hybrid nDCG@10 gain: {cold_d.get('hybrid_gain_ndcg10')}")
    bf16 = None if args.no_bf16_check else bf16_check(args.data)
    if bf16:
        console.print(f"bf16 vs fp32 MiniLM: {bf16}")
    out = {
        "command": "python bench/bench_scifact.py",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "cold": cold_d,
        "warm_seconds": warm.seconds,
        "warm_encoded": sum(r.encoded for r in warm.results),
        "target_seconds": TARGET_S,
        "target_met": cold.seconds < TARGET_S,
        "bf16_check": bf16,
        "warm_metrics_equal": all(
            np.allclose(list(a.metrics.values()), list(b.metrics.values()))
            for a, b in zip(cold.results, warm.results, strict=True)
        ),
    }
    path = ROOT / "bench" / "results" / "scifact.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
