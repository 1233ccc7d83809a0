"""Evaluation commands: evaluate (BEIR), compare-runs, ann-recall, word-tests, drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from embedscope.cli.app import app, console, err_console, print_json, progress_bar
from embedscope.cli.options import CollectionArg, JsonOpt
from embedscope.collection import Collection
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    from embedscope.evaluate.ir import EvalReport


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Bars:
    """One Rich progress bar per stage (e.g. 'minilm', 'minilm queries'), on stderr so --json stays clean."""

    def __init__(self) -> None:
        self.progress = progress_bar(out=err_console, transient=True)
        self.tasks: JSONObject = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            label = stage if " " in stage else f"{stage} corpus"
            self.tasks[stage] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def metrics_table(report: EvalReport, title: str | None = None) -> Table:
    """The evaluation report as a Rich table (used by `evaluate` and bench/bench_scifact.py)."""
    table = Table(
        title=title
        or f"{report.dataset} ({report.split}): {report.queries} queries, {report.documents} documents"
    )
    for col in (
        "encoder",
        "nDCG@10",
        "Recall@100",
        "MRR@10",
        "MAP@100",
        "fit s",
        "docs/s",
        "index",
        "ms/query",
        "encoded",
    ):
        table.add_column(col, justify="left" if col == "encoder" else "right")
    for r in report.results:
        label = r.encoder + (" " + ",".join(f"{k}={v}" for k, v in r.params.items()) if r.params else "")
        table.add_row(
            label,
            *(_fmt(r.metrics[m]) for m in ("nDCG@10", "Recall@100", "MRR@10", "MAP@100")),
            _fmt(r.fit_seconds, 2),
            _fmt(r.docs_per_second, 0),
            _bytes(r.index_bytes),
            _fmt(r.ms_per_query, 2),
            "cached" if r.cached else str(r.encoded),
        )
    return table


def comparison_table(result: JSONObject, title: str) -> Table:
    """A `compare_runs` result as a table: A, B, B - A, per-query win/tie/loss and both p-values."""
    table = Table(title=title)
    for col in ("metric", "A", "B", "B - A", "win/tie/loss", "p (t-test)", "p (randomisation)"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in result["metrics"]:
        table.add_row(
            row["metric"],
            _fmt(row["a"], 4),
            _fmt(row["b"], 4),
            f"{row['diff']:+.4f}",
            f"{row['wins']}/{row['ties']}/{row['losses']}",
            _fmt(row.get("p_t"), 4),
            _fmt(row.get("p_rand"), 4),
        )
    return table


@app.command()
def evaluate(
    dataset: Annotated[
        Path, typer.Argument(help="BEIR data set folder (corpus.jsonl, queries.jsonl, qrels/).")
    ],
    encoders: Annotated[
        str,
        typer.Option(
            "--encoders",
            "-e",
            help="Comma-separated encoders; 'hybrid' is the hybrid search recipe over bm25 and minilm, "
            "'hybrid-static' over bm25 and static.",
        ),
    ] = "bm25,tfidf,lsa,word2vec,minilm,static,hybrid",
    split: Annotated[str, typer.Option(help="qrels split: qrels/<split>.tsv.")] = "test",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default ./eval-<dataset>/).")
    ] = None,
    k: Annotated[
        int, typer.Option("-k", "--k", min=1, max=1000, help="Documents retrieved per query.")
    ] = 100,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Encoder parameter, repeatable: word2vec.epochs=20, bm25.k1=1.2."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrieval quality of encoders on a BEIR data set: nDCG@10, Recall@100, MRR@10, MAP@100
    (trec_eval), fit time, throughput, index size, query latency. Corpus vectors are cached in the
    collection beir-<dataset>, so a rerun encodes nothing. A fused run (hybrid) is also compared with
    the best single encoder per query: wins/ties/losses, paired t-test and randomisation test."""
    from embedscope.evaluate.ir import (
        FUSED,
        dataset_name,
        evaluate_beir,
        parse_encoder_params,
        write_outputs,
    )

    params = parse_encoder_params(param)
    bars = _Bars()
    with bars.progress:
        report = evaluate_beir(dataset, encoders, split=split, k=k, params=params, progress=bars)
    paths = write_outputs(report, out or Path(f"eval-{dataset_name(dataset)}"))
    for w in report.warnings + report.notes:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    data = report.to_dict()
    if as_json:
        print_json({**data, "files": paths})
        return
    console.print(metrics_table(report))
    encoded = sum(r.encoded for r in report.results if r.encoder not in FUSED)
    if encoded == 0:
        console.print("cached: 0 documents encoded")
    else:
        console.print(
            f"encoded {encoded} documents (cached in collection {report.collection}; a rerun encodes none)"
        )
    for part, gain in data.get("hybrid_gain_ndcg10", {}).items():
        console.print(f"hybrid vs {part}: nDCG@10 {gain:+.4f}")
    for cmp in report.comparisons:
        title = (
            f"A = {cmp['baseline']} (best single encoder) vs B = {cmp['fused']}: "
            f"per query over {cmp['queries']} judged queries"
        )
        console.print(comparison_table(cmp, title))
    console.print(
        f"{report.seconds:.1f} s; metrics: {paths['metrics']}, runs: {paths['runs']}/, "
        f"chart: {paths['chart']}"
    )


@app.command("compare-runs")
def compare_runs_cmd(
    run_a: Annotated[Path, typer.Argument(help="Baseline TREC run file (qid Q0 docid rank score tag).")],
    run_b: Annotated[Path, typer.Argument(help="Run compared with it.")],
    qrels: Annotated[Path, typer.Option("--qrels", help="Judgements: BEIR TSV or TREC qrels.")],
    test: Annotated[str, typer.Option(help="t | randomisation | both (paired tests over queries).")] = "both",
    resamples: Annotated[int, typer.Option(min=100, help="Randomisation test resamples.")] = 10_000,
    as_json: JsonOpt = False,
) -> None:
    """Per-metric difference B - A with paired significance tests (t-test, Fisher randomisation)."""
    from embedscope.evaluate.ir import compare_runs, read_qrels, read_trec_run

    result = compare_runs(
        read_qrels(qrels), read_trec_run(run_a), read_trec_run(run_b), test=test, resamples=resamples
    )
    result.update({"run_a": str(run_a), "run_b": str(run_b), "qrels": str(qrels)})
    if as_json:
        print_json(result)
        return
    console.print(
        comparison_table(result, f"B = {run_b.name} vs A = {run_a.name} ({result['queries']} judged queries)")
    )
    if result["answered_a"] < result["queries"] or result["answered_b"] < result["queries"]:
        console.print(
            f"[yellow]note:[/] judged queries answered: A {result['answered_a']}, B {result['answered_b']} "
            f"of {result['queries']} (unanswered queries score 0)"
        )


@app.command("ann-recall")
def ann_recall_cmd(
    collection: CollectionArg,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Dense version (default: active).")
    ] = None,
    queries: Annotated[int, typer.Option("--queries", "-n", min=1, help="Items sampled as queries.")] = 500,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Recall@k.")] = 10,
    ef: Annotated[str, typer.Option("--ef", help="expansion_search values to sweep.")] = "16,32,64,128,256",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for ann-recall.json and .png.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recall@k of the HNSW index against exact search, and per-query latency, over expansion_search."""
    from embedscope.evaluate.ann import ann_recall
    from embedscope.plots import recall_curve

    try:
        efs = [int(x) for x in ef.split(",") if x.strip()]
    except ValueError:
        raise EmbedscopeError(f"--ef must be comma-separated integers, not {ef!r}") from None
    col = Collection.open(collection)
    result = ann_recall(col, version, queries=queries, k=k, efs=efs)
    folder = out or Path(f"ann-{collection}-{result['version']}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ann-recall.json").write_text(json.dumps(result, indent=2))
    recall_curve(
        result["points"],
        f"{collection}/{result['version']}: recall@{k} vs latency",
        folder / "ann-recall.png",
    )
    result["files"] = [str(folder / "ann-recall.json"), str(folder / "ann-recall.png")]
    if as_json:
        print_json(result)
        return
    idx = result["index"]
    title = (
        f"{collection}/{result['version']} ({result['items']} items, {result['dim']}-d): HNSW recall@{k}, "
        f"{result['queries']} queries"
    )
    table = Table(title=title)
    for col_name in ("expansion_search", f"recall@{k}", "queries < 1.0", "p50 ms", "p95 ms"):
        table.add_column(col_name, justify="right")
    for p in result["points"]:
        table.add_row(
            str(p["expansion_search"]),
            f"{p['recall']:.4f}",
            str(p["queries_below_full_recall"]),
            f"{p['latency_ms_p50']:.3f}",
            f"{p['latency_ms_p95']:.3f}",
        )
    console.print(table)
    where = (
        "stored index"
        if idx["stored"]
        else f"temporary HNSW built in {idx['build_seconds']} s (version is exact)"
    )
    console.print(f"queries: {result['query_source']}; {where}, params {idx['params']}")
    console.print(f"wrote {', '.join(result['files'])}")


@app.command("word-tests")
def word_tests_cmd(
    collection: CollectionArg,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="A word2vec version (default: active).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Google analogies accuracy, WordSim-353 and SimLex-999 Spearman of a word2vec version's words."""
    from embedscope.evaluate.words import word_tests, word_vectors

    col = Collection.open(collection)
    lv = col.load_version(version)
    result = {
        "collection": collection,
        "version": lv.info.name,
        "encoder": lv.info.encoder["name"],
        **word_tests(word_vectors(lv.encoder)),
    }
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{collection}/{lv.info.name}: {result['vocabulary']} words, {result['dim']}-d")
    for c in ("test", "score", "scored", "of"):
        table.add_column(c, justify="left" if c == "test" else "right")
    an = result["analogies"]
    table.add_row("analogies (accuracy)", _fmt(an["accuracy"]), str(an["scored"]), str(an["total"]))
    for name, label in (("wordsim353", "WordSim-353 (Spearman)"), ("simlex999", "SimLex-999 (Spearman)")):
        t = result[name]
        table.add_row(label, _fmt(t["spearman"]), str(t["scored"]), str(t["total"]))
    console.print(table)
    console.print("scored = questions/pairs whose words are all in the vocabulary; the rest are skipped")


@app.command("drift")
def drift_cmd(
    collection: CollectionArg,
    version_a: Annotated[str | None, typer.Argument(help="Version drift: the baseline version.")] = None,
    version_b: Annotated[
        str | None, typer.Argument(help="Version drift: the version compared with it.")
    ] = None,
    queries: Annotated[
        bool, typer.Option("--queries", help="Query drift: windows of the server's query log (needs --log).")
    ] = False,
    log: Annotated[
        Path | None,
        typer.Option("--log", help="The query log: the folder given to `serve --log-dir`, or one file."),
    ] = None,
    window: Annotated[
        str, typer.Option("--window", help="Query windows: 'day' (UTC) or a number N of queries per window.")
    ] = "day",
    items: Annotated[
        bool,
        typer.Option(
            "--items", help="Data drift: the items as --version embedded them against the items now."
        ),
    ] = False,
    version: Annotated[
        str | None,
        typer.Option(
            "--version", "-v", help="Dense version that embeds queries and items (default: active)."
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="Neighbours per item.")] = 10,
    sample: Annotated[int | None, typer.Option(min=1, help="Report on a random sample of items.")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw the report as a PNG at this path.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What moved, in one report: between two versions (neighbour Jaccard and rank-biased overlap,
    vectors where comparable), in the queries over time (--queries: centroid shift and MMD with a
    permutation p-value between consecutive windows, and the queries that moved most), and in the
    items since a version embedded them (--items). Table, --json, and a PNG with --plot."""
    from embedscope.evaluate.drift import drift_report
    from embedscope.evaluate.shift import parse_window
    from embedscope.plots import drift_chart

    if (version_a is None) != (version_b is None):
        raise EmbedscopeError("version drift needs two versions: embedscope drift NAME VERSION_A VERSION_B")
    if queries and log is None:
        raise EmbedscopeError("--queries needs --log DIR_OR_FILE (the folder given to `serve --log-dir`)")
    if log is not None and not queries:
        raise EmbedscopeError("--log is read for --queries; add --queries")
    result = drift_report(
        Collection.open(collection),
        versions=(version_a, version_b) if version_a and version_b else None,
        queries_log=log if queries else None,
        window=parse_window(window),
        items=items,
        version=version,
        k=k,
        sample=sample,
    )
    if plot is not None:
        result["plot"] = str(drift_chart(result, plot))
    if as_json:
        print_json(result)
        return
    if "versions" in result:
        _print_version_drift(collection, result["versions"])
    if "queries" in result:
        _print_query_drift(collection, result["queries"])
    if "items" in result:
        _print_item_drift(collection, result["items"])
    if plot is not None:
        console.print(f"plot: {result['plot']}")


def _print_version_drift(collection: str, result: JSONObject) -> None:
    a, b, k = result["a"], result["b"], result["k"]
    table = Table(
        title=f"{collection}: drift {a['version']} ({a['encoder']}) -> {b['version']} ({b['encoder']})"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "items compared",
        f"{result['items_compared']} (shared {result['shared_items']}, "
        f"only A {result['only_in_a']}, only B {result['only_in_b']})",
    )
    for key, v in result["neighbour_jaccard"].items():
        table.add_row(f"top-{k} neighbour Jaccard {key}", f"{v:.4f}")
    rbo = result["neighbour_rbo"]
    for key, v in rbo.items():
        if key != "p":
            table.add_row(f"top-{k} neighbour RBO (p={rbo['p']}) {key}", f"{v:.4f}")
    if result["vector"]:
        for key, v in result["vector"].items():
            if key != "note":
                table.add_row(key.replace("_", " "), _fmt(v, 4))
    console.print(table)
    console.print(result["vector"]["note"] if result["vector"] else result["vector_note"])


def _print_query_drift(collection: str, result: JSONObject) -> None:
    table = Table(
        title=f"{collection}: query drift, {result['searches']} searches, window {result['window']}, "
        f"embedded with {result['version']} ({result['encoder']})"
    )
    for c in ("window", "queries", "centroid shift", "MMD²", "p", "queries that moved most (distance)"):
        table.add_column(c, justify="left" if c.startswith(("window", "queries that")) else "right")
    for r in result["windows"]:
        moved = "; ".join(f"{m['text'][:50]} ({m['distance']:.2f})" for m in r.get("movers", [])[:3])
        table.add_row(
            str(r["window"]),
            str(r["queries"]),
            _fmt(r.get("centroid_shift"), 4),
            _fmt(r.get("mmd2"), 4),
            _fmt(r.get("p"), 4),
            moved or r.get("note", "(first window)"),
        )
    console.print(table)
    if result["skipped_lines"]:
        console.print(f"[yellow]note:[/] {result['skipped_lines']} unreadable log line(s) skipped")


def _print_item_drift(collection: str, result: JSONObject) -> None:
    console.print(
        f"{collection}: items since version {result['version']} embedded them ({result['embedded_at']}): "
        f"{result['items_then']} then, {result['items_now']} now; added {result['added']}, "
        f"changed {result['changed']}, deleted {result['deleted']}",
        highlight=False,
    )
    if "mmd2" not in result:
        console.print(result["note"])
        return
    console.print(
        f"centroid shift {result['centroid_shift']:.4f}; MMD² {result['mmd2']:.4f}, p = {result['p']:.4g} "
        f"({result['sizes'][0]} vs {result['sizes'][1]} items, {result['permutations']} permutations)",
        highlight=False,
    )
    for m in result["movers"]:
        console.print(f"  moved most: {m['text'][:80]} ({m['distance']:.3f})", highlight=False)
