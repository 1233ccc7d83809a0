"""Recommendation commands: interactions load/info, embed-behaviour, recommend, evaluate-recs,
demo-movielens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from embedscope.cli.app import (
    PLAIN_HELP,
    app,
    console,
    err_console,
    open_collection,
    print_json,
    progress_bar,
    status,
)
from embedscope.cli.options import CollectionArg, JsonOpt
from embedscope.collection import Collection
from embedscope.display import show
from embedscope.encoders.registry import parse_params
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    from embedscope.evaluate.recs import RecsReport
    from embedscope.evaluate.recs_random import RandomSplitReport
from embedscope.recommend.behavioural import embed_behaviour
from embedscope.recommend.interactions import Interactions, load_interactions, read_interactions
from embedscope.recommend.recommender import Recommender

interactions_app = typer.Typer(
    help="Store and inspect user-item interactions (views, ratings, purchases).",
    no_args_is_help=True,
    rich_markup_mode=PLAIN_HELP,
)
app.add_typer(interactions_app, name="interactions")

DEFAULT_MOVIELENS = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens-100k"


@interactions_app.command("load")
def interactions_load(
    collection: CollectionArg,
    file: Annotated[Path, typer.Argument(help="CSV/TSV/JSONL/Parquet of interactions, or MovieLens u.data.")],
    user_field: Annotated[str, typer.Option(help="Column with the user id.")] = "user",
    item_field: Annotated[
        str, typer.Option(help="Column with the item id (must match the collection's ids).")
    ] = "item",
    rating_field: Annotated[str, typer.Option(help="Column with a rating (optional).")] = "rating",
    time_field: Annotated[
        str, typer.Option(help="Column with a unix time or a date (optional).")
    ] = "timestamp",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv | jsonl | parquet | movielens (raw u.data); default: suffix."),
    ] = None,
    keep_unknown: Annotated[
        bool, typer.Option(help="Keep interactions with items not in the collection.")
    ] = False,
    append: Annotated[
        bool, typer.Option(help="Add to the stored interactions instead of replacing them.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load interactions and store them beside the collection (atomic; unknown items, duplicates counted)."""

    report = load_interactions(
        open_collection(collection),
        file,
        user_field=user_field,
        item_field=item_field,
        rating_field=rating_field,
        time_field=time_field,
        fmt=fmt,
        keep_unknown=keep_unknown,
        append=append,
    )
    if as_json:
        print_json(report.to_dict())
        return
    for line in report.lines():
        console.print(line, highlight=False)


@interactions_app.command("info")
def interactions_info(collection: CollectionArg, as_json: JsonOpt = False) -> None:
    """Counts of the stored interactions: users, items, ratings, time span."""

    inter = Interactions.of(open_collection(collection))
    f = inter.frame
    sizes = f.groupby("user").size()
    out = {
        "interactions": len(f),
        "users": int(f["user"].nunique()),
        "items": int(f["item"].nunique()),
        "history_median": float(sizes.median()),
        "history_min": int(sizes.min()),
        "history_max": int(sizes.max()),
        "rated": int(f["rating"].notna().sum()),
        "timed": int(f["timestamp"].notna().sum()),
    }
    if as_json:
        print_json(out)
        return
    for key, value in out.items():
        console.print(f"{key:>15}: {value:,}" if isinstance(value, int) else f"{key:>15}: {value}")


@app.command("embed-behaviour")
def embed_behaviour_cmd(
    collection: CollectionArg,
    method: Annotated[str, typer.Argument(help="item2vec | als | ease | itemknn")] = "item2vec",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Parameter key=value (repeatable).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version name (default: method).")
    ] = None,
    index: Annotated[str, typer.Option(help="exact | hnsw")] = "exact",
    activate: Annotated[bool, typer.Option(help="Make this the active version.")] = False,
) -> None:
    """Learn item vectors from the stored interactions (item2vec, ALS, EASE, ItemKNN) as a version."""

    with status(f"training {method} on the interactions of {collection}"):
        info = embed_behaviour(
            open_collection(collection),
            method,
            parse_params(param),
            version=version,
            index=index,
            activate=activate,
        )
    s = info.stats
    chosen = "".join(
        f"; {key} = {s[f'chosen_{key}']:g} (by validation)"
        for key in ("l2", "k")
        if f"chosen_{key}" in s and info.encoder["params"].get(key) == "auto"
    )
    console.print(
        f"version [bold]{info.name}[/] ({method}, dim {info.dim}): {info.count:,} items from "
        f"{s['trained_on_interactions']:,} interactions in {s['encode_seconds']} s; "
        f"{s['items_without_interactions']:,} item(s) without interactions left out{chosen}"
    )


@app.command()
def recommend(
    collection: CollectionArg,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="User id with stored interactions.")
    ] = None,
    items: Annotated[
        str | None, typer.Option("--items", help="Anonymous session: comma-separated item ids, oldest first.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Number of recommendations.")] = 10,
    where: Annotated[
        str | None, typer.Option("--where", "-w", help="Metadata filter (business rules).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="mean | recency | multi (multi-interest, PinnerSage-style); default: the one measured "
            "with the default version, else mean."
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            "-v",
            help="Embedding version (default: the one evaluate-recs measured best, else a behavioural "
            "one, else the active one; the output says which and why).",
        ),
    ] = None,
    half_life: Annotated[float, typer.Option(help="Recency half-life (see --half-life-unit).")] = 5.0,
    half_life_unit: Annotated[str, typer.Option(help="items (interactions back) | days")] = "items",
    interests: Annotated[int, typer.Option(min=1, max=20, help="Max interests for --profile multi.")] = 3,
    popularity_weight: Annotated[
        float,
        typer.Option("--popularity-weight", min=0.0, max=1.0, help="Blend weight of the quality signal."),
    ] = 0.0,
    quality: Annotated[
        str, typer.Option(help="Quality signal: count | wilson (ratings >= 4) | a numeric metadata field.")
    ] = "count",
    mmr: Annotated[
        float | None, typer.Option("--mmr", min=0.0, max=1.0, help="MMR lambda for diversity (1 = none).")
    ] = None,
    dedupe: Annotated[
        bool, typer.Option(help="Keep one item per work (same normalised title and author).")
    ] = True,
    scoring: Annotated[
        str,
        typer.Option(help="auto | cosine | predict (item2vec context vectors, EASE/ItemKNN weights)."),
    ] = "auto",
    explain: Annotated[
        bool, typer.Option(help="Show the history items each recommendation comes from.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recommend items from a user's history (or a session), seen items excluded, filters applied."""

    if (user is None) == (items is None):
        raise EmbedscopeError("give --user USER or --items ID1,ID2,... (an anonymous session)")
    session = [s for s in (items or "").split(",") if s.strip()] if items is not None else None
    col = open_collection(collection)
    res = Recommender(col, version).recommend(
        user,
        items=session,
        k=k,
        where=where,
        profile=profile,
        half_life=half_life,
        half_life_unit=half_life_unit,
        max_interests=interests,
        popularity_weight=popularity_weight,
        quality=quality,
        mmr_lambda=mmr,
        dedupe=dedupe,
        scoring=scoring,
        explain=explain,
    )
    if as_json:
        print_json(res.to_dict())
        return
    if res.message:
        err_console.print(f"[yellow]note:[/] {res.message}", highlight=False)
    if version is None:
        err_console.print(f"version {res.version}: {res.version_reason}", highlight=False)
    who = f"user {user}" if user is not None else f"session of {len(session or [])} item(s)"
    table = Table(
        title=f"{collection}: {k} for {who} (history {res.history_size}, profile {res.profile}, "
        f"version {res.version})"
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("title")
    if res.profile == "multi":
        table.add_column("interest", justify="right")
    if explain:
        table.add_column("because you liked", style="dim")
    fields = col.display_fields()
    for n, r in enumerate(res.items, 1):
        row = [str(n), r.id, f"{r.score:.3g}", show(r.text, r.metadata, fields).title]
        if res.profile == "multi":
            row.append(str(r.interest if r.interest is not None else ""))
        if explain:
            row.append("; ".join(f"{b['title']} ({b['similarity']:.2f})" for b in r.because))
        table.add_row(*row)
    console.print(table)
    if res.removed_duplicates:
        console.print(f"[dim]{len(res.removed_duplicates)} near-duplicate(s) removed[/]")


def print_recs_report(report: RecsReport) -> None:
    """The evaluation as a Rich table: full ranking and sampled protocol side by side."""
    k = report.k
    table = Table(
        title=f"{report.collection}: leave-last-out by time, {report.users:,} users, {report.items:,} items; "
        f"full ranking over all unseen items | sampled: {report.negatives} negatives, seed {report.seed}"
    )
    table.add_column("method", overflow="fold")
    for col in (f"HR@{k}", f"NDCG@{k}", f"R@{2 * k}", f"cov@{k}", f"sHR@{k}", f"sNDCG@{k}", "s"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in report.results:
        f, s = r.full, r.sampled
        table.add_row(
            r.method,
            f"{f[f'HR@{k}']:.4f}",
            f"{f[f'NDCG@{k}']:.4f}",
            f"{f[f'Recall@{2 * k}']:.4f}",
            f"{f[f'coverage@{k}']:.3f}",
            f"{s[f'HR@{k}']:.4f}",
            f"{s[f'NDCG@{k}']:.4f}",
            f"{r.seconds:.1f}",
        )
    console.print(table)
    console.print(
        f"[dim]full ranking: HR, NDCG, R = Recall, cov = catalogue coverage of the top {k}; "
        "sHR/sNDCG = sampled protocol; s = seconds[/]"
    )
    for c in report.checks:
        mark = "[green]PASS[/]" if c["passed"] else "[red]FAIL[/]"
        console.print(
            f"{mark} {c['check']}: {c['value']:.4f} vs {c['popularity']:.4f} (lift {c['lift']:+.0%})",
            highlight=False,
        )
    for note in report.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def print_random_report(report: RandomSplitReport) -> None:
    """The random 80/20 protocol's table: mean (± std over seeds) per method."""
    k = report.k
    seeds = len(report.seeds)
    table = Table(
        title=f"{report.collection}: {report.protocol}; {report.users:,} users, {report.items:,} items; "
        f"{seeds} seed(s) {', '.join(map(str, report.seeds))}" + (", mean ± std" if seeds > 1 else "")
    )
    table.add_column("method")
    cols = [f"NDCG@{k}", f"Recall@{k}", f"Precision@{k}", f"HR@{k}", "MRR", f"MAP@{k}"]
    for col in [*cols, "fit s", "chosen"]:
        table.add_column(col, justify="right", no_wrap=True)
    for r in report.results:
        mean, std = r["mean"], r["std"]
        cells = [f"{mean[c]:.4f}" + (f" ± {std[c]:.4f}" if seeds > 1 else "") for c in cols]
        chosen = ", ".join(f"{key} {mean[key]:g}" for key in ("l2", "k") if key in mean)
        table.add_row(r["method"], *cells, f"{mean['seconds']:.1f}", chosen)
    console.print(table)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


@app.command("evaluate-recs")
def evaluate_recs(
    collection: CollectionArg,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="Cut-off (Recall uses 2k).")] = 10,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    versions: Annotated[
        str | None,
        typer.Option("--versions", help="Comma-separated text versions (default: all dense text ones)."),
    ] = None,
    profiles: Annotated[
        str, typer.Option(help="Comma-separated profiles: mean,recency,multi.")
    ] = "mean,recency,multi",
    tfidf: Annotated[bool, typer.Option(help="Also evaluate tf-idf content vectors (cheap).")] = True,
    negatives: Annotated[int, typer.Option(min=1, help="Sampled protocol: negatives per user.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed for the sampled negatives.")] = 42,
    protocol: Annotated[
        str,
        typer.Option(
            help="last (leave-last-out by time, the default) | random (random 80/20 of all interactions, "
            "the published MovieLens tables' protocol) | both."
        ),
    ] = "last",
    seeds: Annotated[int, typer.Option(min=1, max=20, help="random: splits (seeds 0..n-1) to average.")] = 1,
    record: Annotated[
        bool,
        typer.Option(help="Record the best version for `recommend` to use by default (leave-last-out)."),
    ] = True,
) -> None:
    """Offline evaluation on the stored interactions: leave-last-out by time (full and sampled
    ranking) and/or random 80/20; records the best version as recommend's default."""
    from embedscope.evaluate.recs import evaluate_recommenders
    from embedscope.evaluate.recs_random import evaluate_random_split
    from embedscope.recommend.choice import record_best

    if protocol not in ("last", "random", "both"):
        raise EmbedscopeError(f"unknown protocol '{protocol}'; valid: last, random, both")
    col = open_collection(collection)
    out: JSONObject = {}
    if protocol in ("last", "both"):
        with status("evaluating") as shown:
            report = evaluate_recommenders(
                col,
                k=k,
                negatives=negatives,
                seed=seed,
                tfidf=tfidf,
                content_versions=[v.strip() for v in versions.split(",") if v.strip()] if versions else None,
                profiles=[p.strip() for p in profiles.split(",") if p.strip()],
                progress=lambda name: shown.update(f"evaluating {name}"),
            )
        print_recs_report(report)
        out = report.to_dict()
        if report.best is not None:
            b = report.best
            line = f"best for recommend: version {b['version']}, profile {b['profile']} ({b['row']}: "
            line += f"{b['metric']} {b['value']:.4f})"
            if record:
                record_best(col, b)
                line += f"; recorded: `embedscope recommend {collection}` uses it by default"
            console.print(line, highlight=False)
    if protocol in ("random", "both"):
        with status("evaluating (random 80/20)") as shown:
            rand = evaluate_random_split(
                read_interactions(col),
                col.ids(),
                collection=collection,
                seeds=list(range(seeds)),
                k=k,
                progress=lambda name: shown.update(f"evaluating {name}"),
            )
        print_random_report(rand)
        out = {**out, "random_split": rand.to_dict()} if out else rand.to_dict()
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=2))
        console.print(f"wrote {json_out}")


@app.command("demo-movielens")
def demo_movielens(
    data: Annotated[Path, typer.Option("--data", help="MovieLens 100K folder (u.item, u.data, u.genre).")] = (
        DEFAULT_MOVIELENS
    ),
    collection: Annotated[str, typer.Option("--collection", "-c")] = "movielens",
    encoder: Annotated[
        str, typer.Option("--encoder", "-e", help="Text encoder for titles + genres.")
    ] = "minilm",
    evaluate: Annotated[bool, typer.Option(help="Run evaluate-recs at the end.")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the evaluation JSON here.")] = None,
) -> None:
    """One command: movies from u.item, ratings from u.data, text + item2vec + ALS + EASE embeddings,
    evaluation."""
    from embedscope.sources_movielens import read_movielens_items

    col = Collection.create(collection)
    counts = col.ingest(
        read_movielens_items(data),
        id_field="id",
        text="text",
        metadata=["title", "year", "genres", "release_date"],
    )
    console.print(f"{collection}: items {counts}")
    report = load_interactions(col, Path(data) / "u.data", fmt="movielens")
    for line in report.lines():
        console.print(line, highlight=False)
    with progress_bar() as bar:
        task = bar.add_task(f"encoding with {encoder}", total=len(col))
        col.embed(
            encoder, activate=True, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    for method in ("item2vec", "als", "ease"):
        with status(f"training {method}"):
            info = embed_behaviour(col, method)
        console.print(f"version {info.name}: {info.count:,} items, {info.stats['encode_seconds']} s")
    if evaluate:
        evaluate_recs(collection, json_out=json_out)
    console.print(
        f"try: embedscope recommend {collection} --user 196 --explain; "
        f"embedscope recommend {collection} --user 196 --version als --profile recency"
    )
