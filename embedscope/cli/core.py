"""Core commands: ingest, embed, search, similar, info, check, collections, activate, delete, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedscope.cli.app import app, console, open_collection, print_hits, print_json, progress_bar
from embedscope.cli.options import CollapseOpt, CollectionArg, JsonOpt, K, VersionOpt, Where
from embedscope.collection import Collection, default_root
from embedscope.display import show
from embedscope.encoders.registry import parse_params
from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject
from embedscope.search.query import describe


@app.command()
def ingest(
    items: Annotated[Path, typer.Argument(help="CSV, JSON lines or Parquet file of items.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to create or update.")],
    id_field: Annotated[
        str | None,
        typer.Option(
            "--id-field", help="Field holding each item's unique id (default: the collection's, else id)."
        ),
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="Field holding the text to embed.")] = None,
    template: Annotated[
        str | None,
        typer.Option("--template", help="Text built from several fields, e.g. '{title}. {description}'."),
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata",
            help="Comma-separated fields to keep as metadata (default: the collection's choice, else all).",
        ),
    ] = None,
    types: Annotated[
        str | None,
        typer.Option(
            "--types",
            help="Fields' types, e.g. zip=text,year=int (text | int | float | bool); kept for later "
            "ingests and HTTP writes. Default: decided per field (CSV digits with a leading zero stay text).",
        ),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv | jsonl | parquet (default: from suffix).")
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text encoding of CSV and JSON lines files, e.g. latin-1, cp1252.")
    ] = "utf-8",
    replace: Annotated[bool, typer.Option(help="Delete items that are not in the file.")] = False,
    default_index: Annotated[
        str | None,
        typer.Option("--default-index", help="Index for this collection's new versions: hnsw or exact."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Create the collection in PostgreSQL + pgvector: postgresql://USER@HOST:PORT/DB "
            "(default: $EMBEDSCOPE_STORE, else the embedded store). Later commands find it by name.",
        ),
    ] = None,
) -> None:
    """Add or update items from a file (one atomic transaction; a failed ingest changes nothing, and
    creates no collection)."""

    fields = [f.strip() for f in metadata.split(",") if f.strip()] if metadata else None
    col, counts = Collection.create_from(
        collection,
        items,
        default_index=default_index,
        store=store,
        id_field=id_field,
        text=text,
        template=template,
        metadata=fields,
        types=types,
        fmt=fmt,
        encoding=encoding,
        replace=replace,
    )
    retyped = (
        f" ({counts['retyped']} stored item(s) converted to a field's wider type: "
        f"`embedscope info {collection}`)"
        if counts.get("retyped")
        else ""
    )
    console.print(
        f"[green]{collection}[/]: {counts['added']} added, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['deleted']} deleted; {len(col)} items{retyped}. "
        f"Next: [bold]embedscope embed {collection} --encoder minilm[/]",
        soft_wrap=True,  # a command to copy is never cut by a line break
    )


@app.command()
def embed(
    collection: CollectionArg,
    encoder: Annotated[
        str, typer.Option("--encoder", "-e", help="Encoder name (see `embedscope encoders`).")
    ] = "minilm",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Encoder parameter key=value (repeatable).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version name (default: encoder name).")
    ] = None,
    index: Annotated[str | None, typer.Option("--index", help="hnsw (approximate) or exact.")] = None,
    index_param: Annotated[
        list[str] | None,
        typer.Option(
            "--index-param",
            "-i",
            help="Index parameter key=value (repeatable): connectivity, expansion_add, expansion_search, "
            "dtype=f32|f16|i8 (hnsw storage; i8 embedded only). PostgreSQL maps them to m, "
            "ef_construction, ef_search and vector|halfvec.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 64,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Transformer arithmetic: auto (default: by the CPU's features, OpenVINO bf16 / int8 / "
            "f32), fp32 (PyTorch reference), bf16 (OpenVINO), int8 (OpenVINO, calibrated on this "
            "collection). Same as -p precision=...",
        ),
    ] = None,
    refit: Annotated[bool, typer.Option(help="Refit learning encoders and re-encode everything.")] = False,
    activate: Annotated[bool, typer.Option(help="Make this the active version.")] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local (this process) or ray (Ray Data actors: a local Ray, or the cluster at --address).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster to join with --engine ray: auto (the Ray running on this machine, from "
            "`ray start --head`: no start-up and shutdown per command) or HOST:PORT / ray://head:10001.",
        ),
    ] = None,
    document: Annotated[
        str | None,
        typer.Option(
            "--document",
            "-d",
            help="What each item is encoded as: a template over its metadata fields and {text}, e.g. "
            "'{title}. {authors}. {categories}. {text}'; a boost repeats a field (BM25F): "
            "'{title^2} {text}'. Default: the version's own, else the item's text ('{text}').",
        ),
    ] = None,
) -> None:
    """Encode the collection into an embedding version; only items whose document changed are encoded."""

    params = parse_params(param)
    if precision is not None:
        if params.setdefault("precision", precision) != precision:
            raise EmbedscopeError(f"--precision {precision} contradicts -p precision={params['precision']}")
    col = open_collection(collection)
    with progress_bar("encoding") as bar:
        task = bar.add_task(f"encoding {collection} with {encoder}", total=len(col))
        info = col.embed(
            encoder,
            params,
            version=version,
            index=index,
            index_params=parse_params(index_param, "--index-param") or None,
            batch_size=batch_size,
            refit=refit,
            activate=activate,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            engine=engine,
            address=address,
            document=document,
        )
        bar.update(task, completed=len(col), total=len(col))
    if encoder == "hybrid":
        recipe = col.recipes()["hybrid"]
        searched = (
            "it is the default search"
            if col.default_search == "hybrid"
            else f"`embedscope search {collection} QUERY --version hybrid`"
        )
        console.print(
            f"recipe hybrid = {' + '.join(recipe.parts)} fused by {recipe.fusion} at search time: "
            f"{searched} (settings: `embedscope hybrid list {collection}`)"
        )
    s = info.stats
    console.print(
        f"version [bold]{info.name}[/] ({info.encoder['name']}, dim {info.dim}, {info.index['kind']} index): "
        f"{s['encoded']} encoded, {s['reused']} reused"
        + (f" (from version {s['reused_from']})" if s.get("reused_from") else "")
        + f" in {s['encode_seconds']} s"
        + (f" ({s['items_per_second']} items/s)" if s.get("items_per_second") else "")
        + (f", {ran['runtime']} {ran['precision']}" if (ran := s.get("runtime")) else "")
        + ("; active" if info.active else f"; activate with `embedscope activate {collection} {info.name}`"),
        soft_wrap=True,
    )


@app.command()
def search(
    collection: CollectionArg,
    query: Annotated[str, typer.Argument(help="What you are looking for, e.g. a vibe.")],
    k: K = 10,
    where: Where = None,
    version: VersionOpt = None,
    exact: Annotated[bool, typer.Option(help="Exact search instead of the ANN index.")] = False,
    collapse: CollapseOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Semantic search: the items nearest to the query. One edition per work (same title and
    author) unless --no-collapse; --version hybrid (or any recipe) fuses several versions."""
    col = open_collection(collection)
    hits = col.search(query, k, where=where, version=version, exact=exact, collapse=collapse)
    if as_json:
        print_json([h.to_dict() for h in hits])
    else:
        print_hits(hits, f"{collection}: {query!r}", col.display_fields())


@app.command()
def similar(
    collection: CollectionArg,
    item_id: Annotated[str, typer.Argument(help="Id of the item to find more like.")],
    k: K = 10,
    where: Where = None,
    version: VersionOpt = None,
    collapse: CollapseOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """More like this: items nearest to an item (itself and its other editions excluded)."""

    col = open_collection(collection)
    hits = col.similar(item_id, k, where=where, version=version, collapse=collapse)
    if as_json:
        print_json([h.to_dict() for h in hits])
    else:
        item, fields = col.get(item_id), col.display_fields()
        print_hits(hits, f"more like {show(item.text, item.metadata, fields).title!r}", fields)


@app.command()
def info(collection: CollectionArg, as_json: JsonOpt = False) -> None:
    """Items, metadata fields and embedding versions of a collection (with a quick health check of
    each version's files; `embedscope check` goes further)."""
    data = open_collection(collection).info()
    if as_json:
        print_json(data)
        return
    console.print(
        f"[bold]{data['name']}[/] at {data['store']}: {data['items']} items, id field "
        f"'{data['id_field']}', text {data['text']}"
    )
    console.print("metadata: " + ", ".join(f"{k} ({v})" for k, v in data["metadata_fields"].items()))
    table = Table(title="embedding versions")
    for col in ("version", "encoder", "dim", "items", "index", "updated", "state"):
        table.add_column(col, overflow="fold")
    for v in data["versions"]:
        state = ("active" if v["active"] else "") + (" stale: run embed again" if v["stale"] else "")
        if v["problems"]:
            state = f"[bold red]DAMAGED[/] (`embedscope check {collection}`) {state}"
        table.add_row(
            v["name"],
            v["encoder"]["name"],
            str(v["dim"]),
            str(v["count"]),
            v["index"]["kind"],
            v["updated_at"][:16].replace("T", " "),  # to the minute; --json has all of it
            state.strip(),
        )
    console.print(table)

    # parameters and documents below the table, one version a line, wrapped between parameters: a
    # table cell cut them mid-token ("{'model': 'all-MiniLM-L6…") at 80 columns
    for v in data["versions"]:
        params = ", ".join(f"{k}={json.dumps(x)}" for k, x in v["encoder"]["params"].items())
        document = v.get("document") or "{text}"
        console.print(f"  {v['name']}: {params or 'no parameters'}; document {document}", highlight=False)
    for r in data["recipes"]:
        stages = f"; stages: {describe(r['stages'])}" if r.get("stages") else ""
        console.print(
            f"recipe [bold]{r['name']}[/]: {' + '.join(r['parts'])}, {r['fusion']}{stages}", highlight=False
        )
    if data.get("default_search"):
        console.print(
            f"default search: [bold]{data['default_search']}[/]; active version (more-like-this, "
            f"recommendations, maps): [bold]{data['active_version']}[/]",
            highlight=False,
        )


@app.command()
def check(collection: CollectionArg, as_json: JsonOpt = False) -> None:
    """Check that every embedding version can answer: files present and loadable, ids, vectors and
    index of one size, the index finding the version's own vectors, the encoder matching the
    dimension. Exits 1 if anything is wrong, printing what and the commands that repair it."""
    report = open_collection(collection).check()
    if as_json:
        print_json(report)
    else:
        for problem in report["problems"]:
            console.print(f"[bold red]problem:[/] {problem}", highlight=False)
        for v in report["versions"]:
            if v["ok"]:
                console.print(f"version [bold]{v['name']}[/]: [green]ok[/]")
                continue
            console.print(f"version [bold]{v['name']}[/]: [bold red]damaged[/]", highlight=False)
            for problem in v["problems"]:
                console.print(f"  - {problem}", highlight=False, soft_wrap=True)
            console.print(f"  repair: {v['repair']}", highlight=False, soft_wrap=True)
        if report["ok"]:
            console.print(f"{collection}: {len(report['versions'])} version(s), all ok")
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def collections(as_json: JsonOpt = False) -> None:
    """List collections under $EMBEDSCOPE_HOME (default ~/.embedscope), and in $EMBEDSCOPE_STORE's
    database when it is set, with their items, versions and default search."""

    rows = [_summary(Collection, name) for name in Collection.list()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"{default_root()}: no collections yet; `embedscope demo` makes one", highlight=False)
        return
    table = Table(title=f"collections in {default_root()}")
    for column in ("collection", "items", "versions", "default search", "store"):
        table.add_column(column, overflow="fold")
    for r in rows:
        if r.get("error"):
            table.add_row(r["name"], "", "", f"[red]{r['error']}[/]", "")
            continue
        table.add_row(
            r["name"],
            f"{r['items']:,}",
            ", ".join(r["versions"]) or "none",
            r["default_search"] or "",
            r["store"],
        )
    console.print(table)


def _summary(collection_class: type[Collection], name: str) -> JSONObject:
    """A collection's summary, or why it cannot be opened (one broken collection must not hide the
    others from the listing)."""

    try:
        col = collection_class.open(name)
    except EmbedscopeError as exc:
        return {"name": name, "error": str(exc)}
    try:
        return col.summary()
    finally:
        col.close()


@app.command()
def activate(
    collection: CollectionArg,
    version: Annotated[str, typer.Argument(help="Version or search recipe (e.g. hybrid) to activate.")],
) -> None:
    """Make a version, or a search recipe such as `hybrid`, the default search (what a query with
    no --version uses).

    Activating a version also makes it the active version, whose vectors more-like-this,
    recommendations and maps use; activating a recipe leaves the active version as it is."""
    col = open_collection(collection)
    col.activate(version)
    console.print(
        f"{collection}: default search [bold]{col.default_search}[/]; active version (more-like-this, "
        f"recommendations, maps) [bold]{col.active_version}[/]",
        highlight=False,
    )


@app.command("delete-version")
def delete_version(collection: CollectionArg, version: Annotated[str, typer.Argument()]) -> None:
    """Delete an embedding version (items are kept) and say what the collection uses now.

    Deleting the active version makes another one active (a dense one when one is left)."""
    now = open_collection(collection).delete_version(version)
    console.print(f"{collection}: deleted version {version}", highlight=False)
    if not now["versions"]:
        console.print(
            f"{collection} has no versions now: `embedscope embed {collection} --encoder minilm` makes one",
            highlight=False,
            soft_wrap=True,
        )
    elif now["was_active"]:
        console.print(
            "active version (more-like-this, recommendations, maps) is now "
            f"[bold]{now['active_version']}[/]; default search is [bold]{now['default_search']}[/] "
            f"(change them with `embedscope activate {collection} NAME`)",
            highlight=False,
        )
    for name in now["broken_recipes"]:
        console.print(
            f"[yellow]recipe {name} fused {version}[/]: searching with it fails until you embed "
            f"{version} again or run `embedscope hybrid delete {collection} --name {name}`",
            highlight=False,
        )


@app.command("delete-items")
def delete_items(
    collection: CollectionArg, ids: Annotated[list[str], typer.Argument(help="Item ids.")]
) -> None:
    """Delete items; the next `embed` drops their vectors."""
    n = open_collection(collection).delete(ids)
    console.print(f"{collection}: deleted {n} of {len(ids)} item(s)")


@app.command()
def demo(
    data: Annotated[
        str | None,
        typer.Option("--data", help="Books CSV path or URL (default: ../shared/data/books/books.csv)."),
    ] = None,
    collection: Annotated[str, typer.Option("--collection", "-c")] = "books",
    encoder: Annotated[
        str,
        typer.Option(
            "--encoder",
            "-e",
            help="hybrid (default: BM25 + MiniLM fused by the default recipe, the best measured on the "
            "vibe development set, docs/evaluation.md) or any single encoder, e.g. minilm.",
        ),
    ] = "hybrid",
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N items (quick try).")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Build a new collection in PostgreSQL + pgvector: postgresql://USER@HOST:PORT/DB "
            "(default: $EMBEDSCOPE_STORE, else the embedded store).",
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(help="Let the demo delete the existing collection's items that are not in its input."),
    ] = False,
) -> None:
    """The main job: ingest the books corpus, embed it, and answer a few example vibe queries.

    It never deletes items of an existing collection (without --replace it refuses and says so) and
    never builds in another store than --store / $EMBEDSCOPE_STORE asks for."""
    from embedscope.cli.demo import run_demo

    run_demo(data=data, collection=collection, encoder=encoder, limit=limit, store=store, replace=replace)
