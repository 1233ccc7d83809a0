"""Offline retrieval evaluation on BEIR data sets, and paired comparison of TREC runs.

Metrics come from ir-measures on the pytrec_eval backend, i.e. the same trec_eval code BEIR's
own `EvaluateRetrieval` calls, so numbers are comparable with published BEIR/MTEB tables:
nDCG@10, Recall@100, MRR@10 (RR@10) and MAP@100 (AP@100).

The corpus is stored as an embedscope Collection (`beir-<dataset>`) with one embedding version per
encoder, so `Collection.embed`'s incremental re-encoding makes a second evaluation encode nothing.
Retrieval is the product's own search path (`SearchPipeline.search_many`: every query in one batch),
so what is scored here is what `embedscope search` answers; `hybrid` is the collection's hybrid
search recipe over the bm25 and minilm versions, `hybrid-static` the same over bm25 and static.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from embedscope.collection import Collection
from embedscope.encoders.registry import create_encoder, encoder_names, parse_params
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.jsontypes import JSONObject
from embedscope.search.pipeline import MemoEncoder, SearchPipeline
from embedscope.search.recipe import DEFAULT_HYBRID
from embedscope.sources import BeirDataset, iter_qrels, load_beir
from embedscope.store.base import VersionInfo

Run = dict[str, dict[str, float]]  # query id -> {doc id: score}
Qrels = dict[str, dict[str, int]]  # query id -> {doc id: relevance}
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)

METRIC_NAMES = ("nDCG@10", "Recall@100", "MRR@10", "MAP@100")
#: evaluated as a search recipe fusing other encoders' versions rather than a version of its own;
#: hybrid-static: the static encoder as the fast dense part (no transformer at query time)
FUSED = {"hybrid": ("bm25", "minilm"), "hybrid-static": ("bm25", "static")}
DEFAULT_ENCODERS = ("bm25", "tfidf", "lsa", "word2vec", "minilm", "static", "hybrid")
_TIMINGS_KEY = "eval_timings"


def _measures() -> JSONObject:
    from ir_measures import AP, RR, R, nDCG

    return {"nDCG@10": nDCG @ 10, "Recall@100": R @ 100, "MRR@10": RR @ 10, "MAP@100": AP @ 100}


# --- metrics --------------------------------------------------------------------------------------
def score_run(qrels: Qrels, run: Run) -> dict[str, float]:
    """Mean of each metric over the judged queries; a judged query missing from the run counts 0
    (trec_eval would skip it and inflate the mean, so it is added as an empty ranking)."""
    per = per_query_scores(qrels, run)
    return {name: float(np.mean([per[name][q] for q in qrels])) for name in METRIC_NAMES}


def per_query_scores(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    """metric -> {query id: value} for every judged query (0 for queries the run does not answer)."""
    import ir_measures

    measures = _measures()
    by_measure = {str(m): name for name, m in measures.items()}
    out: dict[str, dict[str, float]] = {name: dict.fromkeys(qrels, 0.0) for name in measures}
    # pytrec_eval needs at least one document per query it scores; unanswered queries stay 0
    answered = {q: docs for q, docs in run.items() if q in qrels and docs}
    if answered:
        for m in ir_measures.iter_calc(list(measures.values()), qrels, answered):
            out[by_measure[str(m.measure)]][m.query_id] = float(m.value)
    return out


# --- TREC files -----------------------------------------------------------------------------------
def write_trec_run(path: Path, run: Run, tag: str) -> None:
    """TREC run format: `qid Q0 docid rank score tag`, best first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda kv: -kv[1])
            for rank, (did, score) in enumerate(ranked, 1):
                fh.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file (6 whitespace-separated columns), with line numbers in errors."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"run file not found: {path}")
    run: Run = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise EmbedscopeError(
                    f"{path.name}: line {lineno} has {len(parts)} columns; a TREC run line is "
                    "'qid Q0 docid rank score tag'"
                )
            try:
                score = float(parts[4])
            except ValueError:
                raise EmbedscopeError(
                    f"{path.name}: line {lineno}: score '{parts[4]}' is not a number"
                ) from None
            run.setdefault(parts[0], {})[parts[2]] = score
    if not run:
        raise EmbedscopeError(f"{path.name}: the run file is empty")
    return run


def read_qrels(path: str | Path) -> Qrels:
    """Read judgements: BEIR TSV (`query-id corpus-id score`, optional header) or TREC qrels
    (`qid 0 docid rel`)."""

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"qrels file not found: {path}")
    qrels: Qrels = {}
    for qid, did, rel in iter_qrels(path):
        qrels.setdefault(qid, {})[did] = rel
    if not qrels:
        raise EmbedscopeError(f"{path.name}: no judgements (the file is empty)")
    return qrels


# --- paired comparison ----------------------------------------------------------------------------
def compare_runs(
    qrels: Qrels, run_a: Run, run_b: Run, *, test: str = "both", resamples: int = 10_000, seed: int = 0
) -> JSONObject:
    """Per-metric B - A difference over the judged queries with paired significance tests.

    Paired t-test (scipy.stats.ttest_rel) and Fisher's randomisation test (scipy.stats.permutation_test,
    sign flips of the per-query differences, two-sided), both on the same per-query trec_eval scores.
    Not ranx.compare: its numba kernels compile for ~60 s on first use (~10 s per later process) on
    this CPU, and its metrics are a second implementation next to the trec_eval ones used here.
    """

    if test not in ("t", "randomisation", "both"):
        raise EmbedscopeError("test must be 't', 'randomisation' or 'both'")
    judged = [q for q in qrels if any(r > 0 for r in qrels[q].values())]
    if not judged:
        raise EmbedscopeError("the qrels have no relevant documents")
    answered_a = sum(1 for q in judged if run_a.get(q))
    answered_b = sum(1 for q in judged if run_b.get(q))
    if not answered_a or not answered_b:
        raise EmbedscopeError(
            "no judged query is answered by run "
            + ("A" if not answered_a else "B")
            + " (query ids do not match)"
        )
    pa, pb = per_query_scores(qrels, run_a), per_query_scores(qrels, run_b)
    rows = []
    for name in METRIC_NAMES:
        a = np.array([pa[name][q] for q in judged])
        b = np.array([pb[name][q] for q in judged])
        d = b - a
        row: JSONObject = {
            "metric": name,
            "a": float(a.mean()),
            "b": float(b.mean()),
            "diff": float(d.mean()),
            "wins": int((d > 0).sum()),
            "ties": int((d == 0).sum()),
            "losses": int((d < 0).sum()),
        }
        if test in ("t", "both"):
            row["p_t"] = 1.0 if not d.any() else float(stats.ttest_rel(b, a).pvalue)
        if test in ("randomisation", "both"):
            if not d.any():
                row["p_rand"] = 1.0
            else:
                res = stats.permutation_test(
                    (d,),
                    np.mean,
                    permutation_type="samples",
                    n_resamples=resamples,
                    alternative="two-sided",
                    random_state=seed,
                )
                row["p_rand"] = float(res.pvalue)
        rows.append(row)
    return {
        "queries": len(judged),
        "answered_a": answered_a,
        "answered_b": answered_b,
        "test": test,
        "resamples": resamples,
        "metrics": rows,
    }


def compare_with_best_single(
    qrels: Qrels, results: Sequence[EncoderResult], *, resamples: int = 10_000
) -> list[JSONObject]:
    """Each fused result (e.g. hybrid) against the best single encoder by nDCG@10: per-query
    wins/ties/losses and the paired t-test and randomisation test of `compare_runs` (A = the single
    encoder, B = the fused run). A mean gain alone can hide a fusion that helps a few queries a lot and
    hurts many a little; the per-query view and the p-value show whether the gain is more than noise."""
    singles = [r for r in results if r.encoder not in FUSED]
    fused = [r for r in results if r.encoder in FUSED]
    if not singles or not fused:
        return []
    best = max(singles, key=lambda r: r.metrics["nDCG@10"])
    out = []
    for r in fused:
        cmp = compare_runs(qrels, best.run, r.run, resamples=resamples)
        out.append({"fused": r.encoder, "baseline": best.encoder, **cmp})
    return out


# --- BEIR evaluation ------------------------------------------------------------------------------
@dataclass
class EncoderResult:
    encoder: str
    metrics: dict[str, float]
    params: JSONObject = field(default_factory=dict)  # non-default encoder parameters
    fit_seconds: float | None = None
    docs_per_second: float | None = None
    encoded: int = 0  # documents encoded by this run (0 = all vectors came from the cache)
    cached: bool = False
    index_bytes: int = 0
    #: search time per query (encode + candidates + fusion), all queries sent as one batch
    ms_per_query: float | None = None
    queries_without_terms: int = 0
    run: Run = field(default_factory=dict, repr=False)

    def summary(self) -> JSONObject:
        d = asdict(self)
        d.pop("run")
        return d


@dataclass
class EvalReport:
    dataset: str
    split: str
    collection: str
    documents: int
    queries: int
    k: int
    warnings: list[str]
    results: list[EncoderResult]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: each fused run against the best single encoder, per query (see `compare_with_best_single`)
    comparisons: list[JSONObject] = field(default_factory=list)

    def result(self, encoder: str) -> EncoderResult:
        return next(r for r in self.results if r.encoder == encoder)

    def to_dict(self) -> JSONObject:
        out = {k: v for k, v in asdict(self).items() if k != "results"}
        out["results"] = [r.summary() for r in self.results]
        if any(r.encoder == "hybrid" for r in self.results):
            h = self.result("hybrid").metrics["nDCG@10"]
            parts = {
                p: self.result(p).metrics["nDCG@10"]
                for p in FUSED["hybrid"]
                if any(r.encoder == p for r in self.results)
            }
            out["hybrid_gain_ndcg10"] = {p: round(h - v, 4) for p, v in parts.items()}
        return out


def dataset_name(directory: str | Path) -> str:
    """Collection-safe name of a data set folder (e.g. 'scifact')."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(directory).resolve().name).strip("-.") or "dataset"
    return name[:50]


def parse_encoders(spec: str | Sequence[str]) -> list[str]:
    """'bm25,minilm,hybrid' -> names; unknown names fail before any work starts."""

    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise EmbedscopeError("no encoders given; e.g. --encoders bm25,minilm,hybrid")
    known = set(encoder_names()) | set(FUSED)
    bad = [n for n in names if n not in known]
    if bad:
        raise NotFoundError(f"unknown encoder(s) {', '.join(bad)}; valid: {', '.join(sorted(known))}")
    return list(dict.fromkeys(names))


def corpus_collection(
    ds: BeirDataset, name: str, root: str | Path | None = None
) -> tuple[Collection, list[str]]:
    """The corpus as a Collection (doc text = title + " " + text); replace=True keeps it equal to the
    data set. Documents with neither title nor text cannot be embedded: they are left out and
    reported, never silently."""

    records, empty = [], []
    for did, doc in ds.corpus.items():
        if (doc["title"] + doc["text"]).strip():
            records.append({"_id": did, "title": doc["title"], "text": doc["text"]})
        else:
            empty.append(did)
    notes = []
    if empty:
        notes.append(
            f"{len(empty)} document(s) have no title and no text and are left out, e.g. {empty[0]!r}"
        )
    col = Collection.create(name, root)
    col.ingest(records, id_field="_id", template="{title} {text}", metadata=[], replace=True)
    return col, notes


def version_name(encoder: str, params: JSONObject | None) -> str:
    """Default parameters -> the encoder's name; others -> name + a short hash of them, so that
    several configurations of one encoder stay cached side by side."""
    if not params:
        return encoder

    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{encoder}-{digest}"


def parse_encoder_params(pairs: Sequence[str] | None) -> dict[str, JSONObject]:
    """['word2vec.epochs=20', 'bm25.k1=1.2'] -> {'word2vec': {'epochs': 20}, 'bm25': {'k1': 1.2}}."""

    out: dict[str, JSONObject] = {}
    for pair in pairs or []:
        head, sep, value = pair.partition("=")
        if not sep or "." not in head:
            raise EmbedscopeError(
                f"--param '{pair}' must look like encoder.key=value, e.g. word2vec.epochs=20"
            )
        enc, key = head.split(".", 1)
        out.setdefault(enc.strip(), {}).update(parse_params([f"{key}={value}"]))
    return out


def _embed(
    col: Collection, encoder: str, progress: ProgressFn | None, params: JSONObject | None = None
) -> tuple[VersionInfo, float | None, float | None, bool]:
    """Embed (or reuse) the corpus with one encoder; returns (version info, fit s, docs/s, cached)."""

    def report(done: int, total: int) -> None:
        if progress:
            progress(encoder, done, total)

    version = version_name(encoder, params)
    timings = col.setting(_TIMINGS_KEY, {}) or {}
    current = {v.name: v for v in col.versions()}.get(version)
    if (
        current is not None
        and create_encoder(encoder, params).same_vectors(current.encoder)
        and current.index.get("kind") == "exact"
        and col.is_current(current)
    ):
        # up to date: skip embed() altogether (it would re-encode nothing but rewrite the files)
        old = timings.get(version, {})
        return current, old.get("fit_seconds"), old.get("docs_per_second"), True
    # embed() reuses a fitted encoder for changed items; a learner evaluated on a changed corpus
    # must be refitted on it (BM25's idf, TF-IDF's vocabulary, word2vec's words would be stale)
    refit = current is not None and create_encoder(encoder, params).requires_fit
    info = col.embed(encoder, params, version=version, index="exact", refit=refit, progress=report)
    encoded = int(info.stats.get("encoded", 0))
    if encoded == 0:
        # nothing was encoded: show the timings measured when the vectors were made
        old = timings.get(version, {})
        return info, old.get("fit_seconds"), old.get("docs_per_second"), True
    fit_s = float(info.stats.get("fit_seconds", 0.0))
    encode_s = max(float(info.stats.get("encode_seconds", 0.0)), 1e-9)
    rate = round(encoded / encode_s, 1)
    timings[version] = {"fit_seconds": fit_s, "docs_per_second": rate, "config": info.encoder}
    col.set_setting(_TIMINGS_KEY, timings)
    return info, fit_s, rate, False


def retrieve(
    col: Collection,
    using: str,
    queries: dict[str, str],
    k: int,
    progress: ProgressFn | None = None,
    pipeline: SearchPipeline | None = None,
) -> tuple[Run, float, int]:
    """Top-k per query through the search pipeline (default: the collection's), all queries in one
    batch (one encoder call and one index call per part). Returns the run, search ms per query, and
    the queries no part could encode (only stop words or unknown words: no documents retrieved)."""
    pipe = pipeline or col.pipeline
    results = pipe.search_many(list(queries.values()), k, using=using, strict=False)
    run: Run = {qid: {h.id: h.score for h in r.hits} for qid, r in zip(queries, results, strict=True)}
    if progress:
        progress(f"{using} queries", len(queries), len(queries))
    ms = results[0].seconds * 1000 if results else 0.0  # each result carries its share of the batch
    return run, ms, sum(1 for r in results if r.skipped_parts and not r.hits)


def evaluate_beir(
    directory: str | Path,
    encoders: str | Sequence[str] = DEFAULT_ENCODERS,
    *,
    split: str = "test",
    k: int = 100,
    root: str | Path | None = None,
    params: dict[str, JSONObject] | None = None,
    progress: ProgressFn | None = None,
    hybrid: JSONObject | None = None,
) -> EvalReport:
    """Fit (where the encoder learns), encode and retrieve for each encoder; score with trec_eval.

    `params` maps an encoder name to non-default parameters, e.g. {"word2vec": {"epochs": 20}}.
    `hybrid` replaces the hybrid recipe's settings: fusion, params, weights, depth (see
    embedscope.search.recipe.make_recipe); default: embedscope.search.recipe.DEFAULT_HYBRID."""

    started = time.perf_counter()
    names = parse_encoders(encoders)
    params = params or {}
    stray = sorted(set(params) - set(names) - {p for n in names for p in FUSED.get(n, ())})
    if stray:
        raise EmbedscopeError(f"parameters given for encoder(s) not evaluated: {', '.join(stray)}")
    for enc_name, enc_params in params.items():
        if enc_name in FUSED:
            raise EmbedscopeError(f"'{enc_name}' fuses other runs and takes no parameters")
        create_encoder(enc_name, enc_params)  # unknown or invalid parameters fail before any work
    if k < 1:
        raise EmbedscopeError("k must be at least 1")
    ds = load_beir(directory, split)
    dname = dataset_name(directory)
    col, notes = corpus_collection(ds, f"beir-{dname}", root)
    queries = {q: ds.queries[q] for q in ds.qrels}
    # the runs each fused encoder needs are computed even if not asked for, then shown as well
    needed = list(dict.fromkeys(p for n in names for p in (FUSED.get(n) or (n,))))
    results: dict[str, EncoderResult] = {}
    versions: dict[str, str] = {}
    # the hybrid recipe's parts reuse the query vectors of the parts' own runs
    pipe = SearchPipeline(col, encode=MemoEncoder())
    for name in needed:
        info, fit_s, rate, cached = _embed(col, name, progress, params.get(name))
        versions[name] = info.name
        run, ms, empty = retrieve(col, info.name, queries, k, progress, pipe)
        nbytes = int(col.load_version(info.name).index.nbytes())
        results[name] = EncoderResult(
            encoder=name,
            params=params.get(name) or {},
            metrics=score_run(ds.qrels, run),
            fit_seconds=fit_s,
            docs_per_second=rate,
            encoded=0 if cached else int(info.stats.get("encoded", 0)),
            cached=cached,
            index_bytes=nbytes,
            ms_per_query=round(ms, 3),
            queries_without_terms=empty,
            run=run,
        )
    for name in names:
        if name in FUSED:
            parts = FUSED[name]
            col.create_recipe(name, [versions[p] for p in parts], **(hybrid or DEFAULT_HYBRID), replace=True)
            run, ms, empty = retrieve(col, name, queries, k, progress, pipe)
            results[name] = EncoderResult(
                encoder=name,
                metrics=score_run(ds.qrels, run),
                fit_seconds=sum(results[p].fit_seconds or 0.0 for p in parts),
                encoded=sum(results[p].encoded for p in parts),
                cached=all(results[p].cached for p in parts),
                index_bytes=sum(results[p].index_bytes for p in parts),
                ms_per_query=round(ms, 3),
                queries_without_terms=empty,
                run=run,
            )
    order = names + [n for n in needed if n not in names]
    ordered = [results[n] for n in order]
    return EvalReport(
        dataset=dname,
        split=split,
        collection=col.name,
        documents=len(col),
        queries=len(queries),
        k=k,
        warnings=list(ds.warnings),
        results=ordered,
        seconds=round(time.perf_counter() - started, 1),
        notes=notes,
        comparisons=compare_with_best_single(ds.qrels, ordered),
    )


def write_outputs(report: EvalReport, out: str | Path) -> dict[str, str]:
    """metrics.json, one TREC run per encoder (runs/<encoder>.trec) and a bar chart (metrics.png)."""
    from embedscope.plots import bar_chart

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": str(out / "metrics.json"), "chart": str(out / "metrics.png")}
    (out / "metrics.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    for r in report.results:
        write_trec_run(out / "runs" / f"{r.encoder}.trec", r.run, f"embedscope-{r.encoder}")
    paths["runs"] = str(out / "runs")
    bar_chart(
        {r.encoder: r.metrics for r in report.results},
        METRIC_NAMES,
        f"{report.dataset} ({report.split}, {report.queries} queries)",
        out / "metrics.png",
    )
    return paths
