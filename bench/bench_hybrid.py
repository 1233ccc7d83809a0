"""Hybrid search quality: an ablation of the parts and of the fusion on SciFact, fusion settings
chosen by cross-validation over query folds, and the books vibe development set.

    python bench/bench_hybrid.py [--cache DIR] [--seeds 10] [--folds 5] [--no-passages]
    python bench/bench_hybrid.py --vibe-folder     # only write the vibe BEIR folder (for `evaluate`)
    python bench/bench_hybrid.py --pool FILE       # only write a judging sheet of unjudged pooled books

Prints the tables and writes bench/results/hybrid.json. The shipped fusion setting is the one
`choose_setting` picks from these measurements (its docstring states the rule). Nothing here is
tuned on the 300 SciFact test queries: every fusion weight in the tables is picked on the training
folds of a 5-fold split (repeated with `--seeds` shuffles) and scored on the held-out fold. The
numbers quoted as final come from the product path (`embedscope evaluate ... -e bm25,minilm,hybrid`),
not from here.

Parts come from the evaluation harness's own cache: each encoder configuration is an embedding
version of the collection `beir-<dataset>` under `--cache`/collections (what `embedscope evaluate`
builds), so a rerun encodes nothing. Passage vectors (MiniLM over 150-word windows, for the
mean-of-passages and max-over-passages rows) are not an encoder; they are cached as .npy files in
`--cache` (about 11k passages: several minutes on a 2-core CPU the first time). Warm, the whole
bench takes ~3 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import devset  # noqa: E402
from common import RESULTS, SHARED_DATA, kfold_picks, machine, paired  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = SHARED_DATA / "beir" / "scifact"
METRICS = ("nDCG@10", "Recall@100")
ALPHAS = [float(round(a, 2)) for a in np.arange(0.0, 1.0001, 0.05)]  # weight of the sparse part
DEPTH = 100  # candidates per part before fusion (the recipe default)
BM25_NO_STEM = {"stemmer": None}  # the BM25 default before this bench (bm25s, English stop words)


# --- data -----------------------------------------------------------------------------------------
@dataclass
class Dataset:
    name: str
    ds: Any  # sources.BeirDataset
    collection: Any  # the harness's Collection (beir-<name>)
    doc_ids: list[str]
    qids: list[str]


def harness_dataset(folder: Path, cache: Path) -> Dataset:
    """The BEIR folder as the evaluation harness stores it (same collection, same cached versions)."""
    from embedscope.evaluate.ir import corpus_collection, dataset_name
    from embedscope.sources import load_beir

    ds = load_beir(folder)
    col, _ = corpus_collection(ds, f"beir-{dataset_name(folder)}", cache / "collections")
    return Dataset(dataset_name(folder), ds, col, list(ds.corpus), list(ds.qrels))


def vibe_folder(cache: Path) -> Path:
    """The books development set (bench/data/vibe, every query kind) as a BEIR folder `embedscope
    evaluate` reads, its corpus generated from books.csv (bench/devset.py)."""
    return devset.write_folder(cache, "books-vibe")


# --- parts: a score for every (query, document) -----------------------------------------------------
@dataclass
class Part:
    label: str
    scores: np.ndarray  # (queries, documents), documents in Dataset.doc_ids order
    sparse: bool
    floor: float | None  # theoretical minimum score (fusion.score_floor)


def encoder_part(data: Dataset, encoder: str, params: dict[str, Any] | None = None, label: str = "") -> Part:
    """Scores of one encoder configuration, through the harness's cached embedding version."""
    import scipy.sparse as sp

    from embedscope.evaluate.ir import _embed
    from embedscope.search.fusion import score_floor

    info, *_ = _embed(data.collection, encoder, None, params)
    lv = data.collection.load_version(info.name)
    order = [lv.row_of[d] for d in data.doc_ids]
    queries = lv.encoder.encode_queries([data.ds.queries[q] for q in data.qids])
    scores = queries @ lv.data.vectors[order].T
    scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
    sparse = bool(lv.info.sparse)
    return Part(label or encoder, scores.astype(np.float32), sparse, score_floor(sparse, lv.info.metric))


def passage_parts(
    data: Dataset, cache: Path, words: int = 150, stride: int = 75
) -> tuple[Part, Part, dict[str, Any]]:
    """MiniLM over passages: `words`-word windows of the abstract every `stride` words, the title in
    front of each (the 150/75 windows of Dai and Callan, SIGIR 2019). Returns (mean of the passage
    vectors, one vector per document; max over passages, several vectors per document; counts: how
    many documents MiniLM truncates, how many passages)."""
    from embedscope.encoders.registry import create_encoder

    texts, owner = [], []
    for i, did in enumerate(data.doc_ids):
        doc = data.ds.corpus[did]
        body = doc["text"].split()
        # the last window may be shorter; it ends at the abstract's end, so no word is left out
        starts = range(0, len(body) - words + stride, stride) if len(body) > words else [0]
        for s in starts:
            texts.append(f"{doc['title']} {' '.join(body[s : s + words])}".strip())
            owner.append(i)
    enc = create_encoder("minilm")
    limit = int(enc.params["max_seq_length"])
    full = [f"{data.ds.corpus[d]['title']} {data.ds.corpus[d]['text']}".strip() for d in data.doc_ids]
    lengths = [len(ids) for ids in enc.model.tokenizer(full, verbose=False)["input_ids"]]
    counts = {
        "documents": len(full),
        "truncated_at_max_seq_length": sum(n > limit for n in lengths),
        "max_seq_length": limit,
        "passages": len(texts),
    }
    digest = hashlib.sha1(json.dumps([enc.config(), texts]).encode()).hexdigest()[:12]
    path = cache / f"passages-{data.name}-{words}-{stride}-{digest}.npy"
    if path.exists():
        vectors = np.load(path)
    else:
        print(f"encoding {len(texts)} passages with MiniLM (cached in {path})", flush=True)
        vectors = enc.encode(texts, batch_size=32, show_progress=True)
        np.save(path, vectors)
    owner_arr = np.asarray(owner)
    queries = enc.encode_queries([data.ds.queries[q] for q in data.qids])
    per_passage = queries @ vectors.T
    maxp = np.full((len(data.qids), len(data.doc_ids)), -np.inf, dtype=np.float32)
    np.maximum.at(maxp.T, owner_arr, per_passage.T)
    mean = np.zeros((len(data.doc_ids), vectors.shape[1]), dtype=np.float32)
    np.add.at(mean, owner_arr, vectors)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    return (
        Part("minilm mean of passages", (queries @ mean.T).astype(np.float32), False, -1.0),
        Part("minilm max over passages", maxp, False, -1.0),
        counts,
    )


# --- runs, fusion, metrics ----------------------------------------------------------------------------
def top_runs(data: Dataset, part: Part, depth: int = DEPTH) -> list[Any]:
    """One fusion.Run per query: the part's top `depth` (sparse: only documents sharing a term)."""
    from embedscope.search.fusion import Run

    top = np.argpartition(-part.scores, depth, axis=1)[:, :depth]
    runs = []
    for i in range(len(data.qids)):
        row = top[i][np.argsort(-part.scores[i, top[i]], kind="stable")]
        if part.sparse:
            row = row[part.scores[i, row] > 0]
        runs.append(Run([data.doc_ids[j] for j in row], part.scores[i, row].astype(np.float64), part.floor))
    return runs


def single_run(data: Dataset, part: Part, k: int = 100) -> dict[str, dict[str, float]]:
    return {
        q: dict(zip(r.ids[:k], r.scores[:k].tolist(), strict=True))
        for q, r in zip(data.qids, top_runs(data, part, k), strict=True)
    }


def fused_run(
    data: Dataset, sparse: list[Any], dense: list[Any], method: str, params: dict[str, Any], alpha: float
) -> dict[str, dict[str, float]]:
    from embedscope.search.fusion import fuse

    out = {}
    for q, a, b in zip(data.qids, sparse, dense, strict=True):
        ids, scores = fuse([a, b], [alpha, 1.0 - alpha], method, params)
        out[q] = dict(zip(ids[:100], scores[:100].tolist(), strict=True))
    return out


def per_query(data: Dataset, run: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    from embedscope.evaluate.ir import per_query_scores

    pq = per_query_scores(data.ds.qrels, run)
    return {m: np.array([pq[m][q] for q in data.qids]) for m in METRICS}


#: fusion families: name -> (method, params, the weights tried)
FAMILIES: dict[str, tuple[str, dict[str, Any], list[float]]] = {
    "rrf": ("rrf", {"k": 60}, [0.5]),
    "minmax": ("convex", {"normalization": "minmax"}, ALPHAS),
    "zscore": ("convex", {"normalization": "zscore"}, ALPHAS),
    "tmm": ("convex", {"normalization": "tmm"}, ALPHAS),
    "zscore-zero": ("convex", {"normalization": "zscore", "missing": "zero"}, ALPHAS),
}


def fusion_grid(
    data: Dataset, sparse: Part, dense: Part, families: Sequence[str], depth: int = DEPTH
) -> dict[tuple[str, float], dict[str, np.ndarray]]:
    """Per-query metrics of every (family, weight of the sparse part) in `families`."""
    rs, rd = top_runs(data, sparse, depth), top_runs(data, dense, depth)
    out = {}
    for fam in families:
        method, params, alphas = FAMILIES[fam]
        for a in alphas:
            out[(fam, a)] = per_query(data, fused_run(data, rs, rd, method, params, a))
    return out


# --- cross-validation ---------------------------------------------------------------------------------
def cross_validate(
    grid: dict[tuple[str, float], dict[str, np.ndarray]], seeds: int, folds: int, metric: str = "nDCG@10"
) -> dict[str, Any]:
    """k-fold over queries, repeated over `seeds` shuffles: on each training split pick the setting
    with the best mean `metric`, score it on the held-out fold. The shipped setting is the one picked
    most often (the mode); the estimate of its quality is the held-out mean, not its full-set score."""
    keys = list(grid)
    rows, held, seed_means = kfold_picks(np.stack([grid[k][metric] for k in keys]), seeds, folds)
    picks = [keys[r] for r in rows]
    counts = Counter(picks)
    chosen = counts.most_common(1)[0][0]
    return {
        "heldout_mean": round(float(np.mean(held)), 4),
        "heldout_sd_over_folds": round(float(np.std(held, ddof=1)), 4),
        "heldout_sd_over_seeds": round(float(np.std(seed_means, ddof=1)), 4),
        "folds": len(held),
        "chosen": chosen,
        "chosen_share": round(counts[chosen] / len(picks), 2),
        "picks": {f"{f}:{a}": n for (f, a), n in counts.most_common()},
        "full_set_at_chosen": {m: round(float(grid[chosen][m].mean()), 4) for m in grid[chosen]},
    }


# --- the SciFact ablation -----------------------------------------------------------------------------
def text_part(data: Dataset, texts: list[str], params: dict[str, Any], label: str) -> Part:
    """BM25 fitted on other document texts (e.g. the title counted twice), outside the harness."""
    from embedscope.encoders.registry import create_encoder

    enc = create_encoder("bm25", params).fit(texts)
    scores = (enc.encode_queries([data.ds.queries[q] for q in data.qids]) @ enc.encode(texts).T).toarray()
    return Part(label, scores.astype(np.float32), True, 0.0)


def dense_prf_part(data: Dataset, k: int, beta: float) -> Part:
    """Rocchio pseudo-relevance feedback on MiniLM: q' = q + beta * mean of the top-k documents'
    vectors (as in ANCE-PRF / Li et al. 2023's Rocchio baselines), renormalised, searched again."""
    info = data.collection.load_version("minilm")
    docs = np.asarray(info.data.vectors)[[info.row_of[d] for d in data.doc_ids]]
    q = info.encoder.encode_queries([data.ds.queries[x] for x in data.qids])
    top = np.argsort(-(q @ docs.T), axis=1)[:, :k]
    q2 = q + beta * docs[top].mean(axis=1)
    q2 /= np.linalg.norm(q2, axis=1, keepdims=True)
    return Part(f"minilm + Rocchio PRF (k={k}, beta={beta})", (q2 @ docs.T).astype(np.float32), False, -1.0)


@dataclass
class Row:
    change: str
    sparse: Part
    dense: Part
    grid: dict[tuple[str, float], dict[str, np.ndarray]]
    cv: dict[str, dict[str, Any]]  # family -> cross_validate result

    def summary(self, singles: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
        out: dict[str, Any] = {"change": self.change, "sparse": self.sparse.label, "dense": self.dense.label}
        for p in (self.sparse, self.dense):
            out[p.label] = {m: round(float(v.mean()), 4) for m, v in singles[p.label].items()}
        for fam, cv in self.cv.items():
            curve = {a: round(float(v["nDCG@10"].mean()), 4) for (f, a), v in self.grid.items() if f == fam}
            out[fam] = {**cv, "curve": curve}
        return out


def ablation_row(
    data: Dataset,
    change: str,
    sparse: Part,
    dense: Part,
    families: Sequence[str],
    seeds: int,
    folds: int,
    singles: dict[str, dict[str, np.ndarray]],
) -> Row:
    t = time.perf_counter()
    for p in (sparse, dense):
        if p.label not in singles:
            singles[p.label] = per_query(data, single_run(data, p))
    grid = fusion_grid(data, sparse, dense, families)
    cv = {
        fam: cross_validate({k: v for k, v in grid.items() if k[0] == fam}, seeds, folds) for fam in families
    }
    print(f"  {change}: {time.perf_counter() - t:.0f} s", flush=True)
    return Row(change, sparse, dense, grid, cv)


def scifact_ablation(data: Dataset, cache: Path, seeds: int, folds: int, passages: bool) -> dict[str, Any]:
    """Each change to the parts, with the fusion weight cross-validated per fusion family."""
    t0 = time.perf_counter()
    bm25_plain = encoder_part(data, "bm25", BM25_NO_STEM, "bm25 (no stemming)")
    bm25 = encoder_part(data, "bm25", None, "bm25 (Porter stemming, the default)")
    minilm = encoder_part(data, "minilm")
    print(f"parts ready in {time.perf_counter() - t0:.0f} s", flush=True)
    singles: dict[str, dict[str, np.ndarray]] = {}
    fams = ("rrf", "zscore", "tmm")
    all_fams = ("rrf", "minmax", "zscore", "tmm")
    rows = [
        ablation_row(
            data,
            "baseline: bm25 without stemming + minilm",
            bm25_plain,
            minilm,
            all_fams,
            seeds,
            folds,
            singles,
        ),
        ablation_row(
            data,
            "+ Porter stemming in BM25 (kept: the new default)",
            bm25,
            minilm,
            all_fams,
            seeds,
            folds,
            singles,
        ),
    ]
    kept = rows[1]
    titles = [data.ds.corpus[d]["title"] for d in data.doc_ids]
    bodies = [data.ds.corpus[d]["text"] for d in data.doc_ids]
    variants = [
        (
            "Snowball English stemmer instead of Porter",
            encoder_part(data, "bm25", {"stemmer": "english"}, "bm25 Snowball English"),
            minilm,
        ),
        (
            "BM25 k1=1.2 b=0.75 (Lucene, Elasticsearch defaults)",
            encoder_part(data, "bm25", {"k1": 1.2}, "bm25 k1=1.2 b=0.75"),
            minilm,
        ),
        (
            "BM25 k1=0.9 b=0.4 (Anserini defaults)",
            encoder_part(data, "bm25", {"k1": 0.9, "b": 0.4}, "bm25 k1=0.9 b=0.4"),
            minilm,
        ),
        (
            "BM25 counts the title twice",
            text_part(
                data,
                [f"{t} {t} {b}".strip() for t, b in zip(titles, bodies, strict=True)],
                {},
                "bm25 title x2",
            ),
            minilm,
        ),
        ("MiniLM + Rocchio PRF, top 3, beta 0.5", bm25, dense_prf_part(data, 3, 0.5)),
        ("MiniLM + Rocchio PRF, top 3, beta 1", bm25, dense_prf_part(data, 3, 1.0)),
    ]
    passage_counts = None
    if passages:
        mean_p, max_p, passage_counts = passage_parts(data, cache)
        variants += [
            ("MiniLM: mean of 150-word passage vectors (one vector per document)", bm25, mean_p),
            ("MiniLM: max over 150-word passages (several vectors per document)", bm25, max_p),
        ]
    for change, sparse, dense in variants:
        rows.append(ablation_row(data, change, sparse, dense, fams, seeds, folds, singles))
    # each change against the row it modifies, at each row's CV-chosen setting (paired, per query)
    tests = {}
    for row in rows[1:]:
        before = rows[0] if row is kept else kept
        for fam in ("zscore", "tmm"):
            a = before.grid[before.cv[fam]["chosen"]]["nDCG@10"]
            tests[f"{row.change} | {fam}"] = paired(a, row.grid[row.cv[fam]["chosen"]]["nDCG@10"])
    # each changed part alone against the part it replaces (stemming: against unstemmed BM25)
    single_tests = {}
    for row in rows[1:]:
        for part, before in ((row.sparse, bm25_plain if row is kept else bm25), (row.dense, minilm)):
            if part.label != before.label and part.label not in single_tests:
                single_tests[part.label] = {
                    m: paired(singles[before.label][m], singles[part.label][m]) for m in METRICS
                }
    # the missing-score rule and the candidate depth, for the kept parts and z-score
    extra = {
        "zscore, missing=zero instead of cutoff": cross_validate(
            fusion_grid(data, bm25, minilm, ["zscore-zero"]), seeds, folds
        ),
        "zscore, depth 1000 instead of 100": cross_validate(
            fusion_grid(data, bm25, minilm, ["zscore"], depth=1000), seeds, folds
        ),
    }
    return {
        "queries": len(data.qids),
        "documents": len(data.doc_ids),
        "singles": {k: {m: round(float(v.mean()), 4) for m, v in pq.items()} for k, pq in singles.items()},
        "rows": [r.summary(singles) for r in rows],
        "tests": tests,
        "single_tests": single_tests,
        "passages": passage_counts,
        "fusion_options": extra,
        "joint": cross_validate(kept.grid, seeds, folds),
        "seconds": round(time.perf_counter() - t0, 1),
        "_kept": kept,
        "_baseline": rows[0],
        "_singles": singles,
    }


# --- the vibe development set ---------------------------------------------------------------------------
def vibe_table(data: Dataset, candidates: dict[str, tuple[str, float]]) -> dict[str, Any]:
    """nDCG@10 per configuration on the books development set (every query kind, and per kind;
    bench/data/vibe/README.md). `candidates`: the SciFact-chosen setting of each family."""
    parts = {
        "bm25": encoder_part(data, "bm25"),
        "bm25 (no stemming)": encoder_part(data, "bm25", BM25_NO_STEM, "bm25 (no stemming)"),
        "tfidf": encoder_part(data, "tfidf"),
        "static": encoder_part(data, "static"),
        "minilm": encoder_part(data, "minilm"),
    }
    table = {name: per_query(data, single_run(data, p)) for name, p in parts.items()}
    rs, rd = top_runs(data, parts["bm25"]), top_runs(data, parts["minilm"])
    configs = {f"hybrid {fam} bm25 weight {a}": (fam, a) for fam, a in candidates.values()}
    for fam in ("minmax", "zscore", "tmm"):
        for a in (0.25, 0.5, 0.75):
            configs.setdefault(f"hybrid {fam} bm25 weight {a}", (fam, a))
    for name, (fam, a) in configs.items():
        method, params, _ = FAMILIES[fam]
        table[name] = per_query(data, fused_run(data, rs, rd, method, params, a))
    best_single = max(("bm25", "minilm"), key=lambda n: table[n]["nDCG@10"].mean())
    kind = np.array([devset.load_queries()[q]["kind"] for q in data.qids])
    kinds = [k for k in devset.KINDS if (kind == k).any()]
    return {
        "queries": len(data.qids),
        "queries_by_kind": {k: int((kind == k).sum()) for k in kinds},
        "ndcg10": {n: round(float(v["nDCG@10"].mean()), 4) for n, v in table.items()},
        "ndcg10_by_kind": {
            n: {k: round(float(v["nDCG@10"][kind == k].mean()), 4) for k in kinds} for n, v in table.items()
        },
        "best_single": best_single,
        "vs_best_single": {
            n: paired(table[best_single]["nDCG@10"], v["nDCG@10"], resamples=5000)
            for n, v in table.items()
            if n.startswith("hybrid")
        },
        "candidates": {fam: f"hybrid {f} bm25 weight {a}" for fam, (f, a) in candidates.items()},
    }


def choose_setting(sci: dict[str, Any], vibe: dict[str, Any] | None) -> dict[str, Any]:
    """The rule that picks the shipped fusion: the family with the best held-out SciFact nDCG@10 (its
    most-picked weight); families within one standard deviation over seeds of it count as tied, and
    the tie goes to the one with the best nDCG@10 on the vibe development set (the second domain)."""
    cv = sci["_kept"].cv
    best = max(cv, key=lambda f: cv[f]["heldout_mean"])
    margin = cv[best]["heldout_sd_over_seeds"]
    tied = [f for f in cv if cv[best]["heldout_mean"] - cv[f]["heldout_mean"] <= margin]
    winner, reason = best, "best held-out SciFact nDCG@10"
    if len(tied) > 1 and vibe:
        scores = {f: vibe["ndcg10"][vibe["candidates"][f]] for f in tied}
        winner = max(scores, key=lambda f: scores[f])
        reason = f"tied on SciFact within {margin} ({', '.join(tied)}); best on the vibe set {scores}"
    return {
        "family": winner,
        "weight": cv[winner]["chosen"][1],
        "setting": cv[winner]["chosen"],
        "reason": reason,
    }


def final_checks(sci: dict[str, Any], setting: tuple[str, float]) -> dict[str, Any]:
    kept, base, singles = sci["_kept"], sci["_baseline"], sci["_singles"]
    best_single = max((kept.sparse, kept.dense), key=lambda p: singles[p.label]["nDCG@10"].mean())
    chosen = kept.grid[tuple(setting)]
    return {
        "full_set": {m: round(float(v.mean()), 4) for m, v in chosen.items()},
        "vs_best_single": {"best_single": best_single.label}
        | {m: paired(singles[best_single.label][m], chosen[m]) for m in METRICS},
        "vs_baseline_rrf": {m: paired(base.grid[("rrf", 0.5)][m], chosen[m]) for m in METRICS},
    }


# --- output -------------------------------------------------------------------------------------------
def print_tables(
    sci: dict[str, Any], vibe: dict[str, Any] | None, choice: dict[str, Any], final: dict[str, Any]
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 180))
    t = Table(
        title=f"SciFact test ({sci['queries']} queries): ablation; hybrid columns = held-out nDCG@10 of the "
        "cross-validation ± sd over seeds @ the weight picked most often"
    )
    for c in (
        "change",
        "sparse nDCG@10",
        "R@100",
        "dense nDCG@10",
        "R@100",
        "rrf",
        "minmax",
        "zscore",
        "tmm",
    ):
        t.add_column(c, justify="left" if c == "change" else "right")
    for r in sci["rows"]:
        s, d = r[r["sparse"]], r[r["dense"]]

        def cell(fam: str, r: dict[str, Any] = r) -> str:
            if fam not in r:
                return "-"
            cv = r[fam]
            if fam == "rrf":
                return f"{cv['full_set_at_chosen']['nDCG@10']:.4f}"
            return f"{cv['heldout_mean']:.4f}±{cv['heldout_sd_over_seeds']:.4f} @{cv['chosen'][1]}"

        t.add_row(
            r["change"],
            f"{s['nDCG@10']:.4f}",
            f"{s['Recall@100']:.4f}",
            f"{d['nDCG@10']:.4f}",
            f"{d['Recall@100']:.4f}",
            cell("rrf"),
            cell("minmax"),
            cell("zscore"),
            cell("tmm"),
        )
    console.print(t)
    for name, res in sci["tests"].items():
        console.print(f"  paired test {name}: {res}")
    if sci["passages"]:
        console.print(f"  passages: {sci['passages']}")
    for name, res in sci["single_tests"].items():
        console.print(f"  alone, paired against the part it replaces: {name}: {res}")
    for name, res in sci["fusion_options"].items():
        console.print(
            f"  {name}: held-out {res['heldout_mean']} ± {res['heldout_sd_over_seeds']} @ {res['chosen']}"
        )
    j = sci["joint"]
    console.print(
        f"joint CV over all families x weights: {j['picks']}; held-out {j['heldout_mean']} "
        f"(sd over folds {j['heldout_sd_over_folds']}, over seeds {j['heldout_sd_over_seeds']})"
    )
    if vibe:
        v = Table(title=f"books development set ({vibe['queries']} queries), nDCG@10")
        kinds = vibe["queries_by_kind"]
        for c in (
            "configuration",
            "nDCG@10",
            *(f"{k} ({n})" for k, n in kinds.items()),
            f"vs {vibe['best_single']}: win/tie/loss, p",
        ):
            v.add_column(c, justify="left" if c == "configuration" else "right")
        for name, score in vibe["ndcg10"].items():
            cmp = vibe["vs_best_single"].get(name)
            v.add_row(
                name,
                f"{score:.4f}",
                *(f"{vibe['ndcg10_by_kind'][name][k]:.4f}" for k in kinds),
                f"{cmp['wins']}/{cmp['ties']}/{cmp['losses']}, p={cmp['p']}" if cmp else "",
            )
        console.print(v)
    console.print(f"[bold]shipped setting:[/] {choice['setting']} ({choice['reason']})")
    console.print(f"at it, all 300 SciFact queries: {final['full_set']}")
    console.print(
        f"  vs {final['vs_best_single']['best_single']}: "
        + "; ".join(f"{m} {final['vs_best_single'][m]}" for m in METRICS)
    )
    console.print(
        "  vs the old default (RRF, unstemmed BM25): "
        + "; ".join(f"{m} {final['vs_baseline_rrf'][m]}" for m in METRICS)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedscope-bench-hybrid")
    ap.add_argument("--seeds", type=int, default=10, help="CV repetitions (shuffles)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-passages", action="store_true", help="skip the passage-chunking rows")
    ap.add_argument("--vibe-folder", action="store_true", help="only write the vibe BEIR folder and exit")
    ap.add_argument("--pool", type=Path, help="only write a judging sheet of unjudged pooled books and exit")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.vibe_folder:
        print(f"wrote {vibe_folder(args.cache)}; e.g. embedscope evaluate it -e bm25,minilm,hybrid")
        return
    if args.pool:
        n = devset.write_sheet(args.cache, args.cache / "collections", args.pool)
        print(f"wrote {n} (query, book) pairs to judge to {args.pool}")
        return
    load_before = os.getloadavg()
    sci = scifact_ablation(
        harness_dataset(SCIFACT, args.cache), args.cache, args.seeds, args.folds, not args.no_passages
    )
    candidates = {fam: cv["chosen"] for fam, cv in sci["_kept"].cv.items()}
    vibe = vibe_table(harness_dataset(vibe_folder(args.cache), args.cache), candidates)
    choice = choose_setting(sci, vibe)
    final = final_checks(sci, choice["setting"])
    print_tables(sci, vibe, choice, final)
    out = {
        "benchmark": "hybrid",
        "command": "python bench/bench_hybrid.py",
        "machine": {
            **machine(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "cv": {"folds": args.folds, "seeds": args.seeds, "weights_tried": ALPHAS, "depth": DEPTH},
        "scifact": {k: v for k, v in sci.items() if not k.startswith("_")},
        "vibe": vibe,
        "choice": choice,
        "final": final,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "hybrid.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
