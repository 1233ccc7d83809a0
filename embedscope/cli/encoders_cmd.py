"""CLI: `embedscope encoders`, `embedscope words`, `embedscope compare`."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated

import typer
from rich.table import Table

from embedscope.cli.app import app, console, fail, print_json, status
from embedscope.collection import Collection
from embedscope.encoders.registry import describe_encoders
from embedscope.encoders.word2vec import WordVectorMixin
from embedscope.errors import EmbedscopeError


@app.command("encoders")
def list_encoders(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every available encoder with its description and parameters (with defaults)."""

    try:
        rows = describe_encoders()
    except EmbedscopeError as exc:
        fail(str(exc))
    if as_json:
        print_json(rows)
        return
    table = Table(title="Encoders", show_lines=True)
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("description")
    table.add_column("params (defaults)", overflow="fold")
    for r in rows:
        kind = ("sparse" if r["sparse"] else "dense") + (", fit" if r["requires_fit"] else "")
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["params"].items())
        table.add_row(r["name"], kind, r["description"], params or "-")
    console.print(table)
    console.print(
        "[dim]hybrid (sparse + dense fused at search time) is a search recipe, not an encoder: "
        "`embedscope embed NAME --encoder hybrid` or `embedscope hybrid create NAME --parts bm25,minilm`[/]"
    )


def _split(value: str, n: int, option: str) -> list[str]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) != n:
        fail(f"{option} needs {n} comma-separated words, got {value!r}")
    return parts


@app.command("words")
def words(
    collection: Annotated[str, typer.Argument(help="Collection with a word2vec embedding version.")],
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="word2vec or torch_word2vec.")] = "word2vec",
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version (default: the first of that encoder).")
    ] = None,
    neighbors: Annotated[str | None, typer.Option("--neighbors", help="Nearest words to WORD.")] = None,
    analogy: Annotated[
        str | None, typer.Option("--analogy", help="a,b,c: words nearest a - b + c (king,man,woman).")
    ] = None,
    similarity: Annotated[str | None, typer.Option("--similarity", help="w1,w2: cosine similarity.")] = None,
    topn: Annotated[int, typer.Option("--topn", "-k", help="How many words to show.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Explore the word vectors of a collection's word2vec version: neighbours, analogies, similarity."""

    if sum(x is not None for x in (neighbors, analogy, similarity)) != 1:
        fail("give exactly one of --neighbors WORD, --analogy a,b,c or --similarity w1,w2")
    try:
        col = Collection.open(collection)
        if version is None:
            matching = [v.name for v in col.versions() if v.encoder.get("name") == encoder]
            if not matching:
                fail(
                    f"collection '{collection}' has no {encoder} version; run "
                    f"`embedscope embed {collection} --encoder {encoder}`"
                )
            version = matching[0]
        enc = col.encoder(version)
        if not isinstance(enc, WordVectorMixin):
            fail(f"version '{version}' uses encoder '{enc.name}', which has no word vectors")
        if similarity is not None:
            w1, w2 = _split(similarity, 2, "--similarity")
            score = enc.similarity(w1, w2)
            if as_json:
                print_json({"version": version, "w1": w1, "w2": w2, "similarity": score})
            else:
                console.print(f"similarity({w1}, {w2}) = [bold]{score:.4f}[/]")
            return
        if analogy is not None:
            a, b, c = _split(analogy, 3, "--analogy")
            result = enc.analogy(a, b, c, topn=topn)
            title = f"{a} - {b} + {c}"
        elif neighbors is not None:
            result = enc.most_similar(neighbors, topn=topn)
            title = f"nearest to {neighbors}"
    except EmbedscopeError as exc:
        fail(str(exc))
    if as_json:
        print_json(
            {"version": version, "query": title, "words": [{"word": w, "score": s} for w, s in result]}
        )
        return
    table = Table(title=f"{title} ({collection}/{version})")
    table.add_column("#", justify="right")
    table.add_column("word", style="bold")
    table.add_column("cosine", justify="right")
    for n, (w, s) in enumerate(result, 1):
        table.add_row(str(n), w, f"{s:.4f}")
    console.print(table)


@app.command("compare")
def compare_cmd(
    collection: Annotated[str, typer.Argument(help="Collection to search.")],
    query: Annotated[str, typer.Argument(help="Query text.")],
    versions: Annotated[
        str | None,
        typer.Option(
            "--versions", help="Comma-separated versions or recipes (default: every version and recipe)."
        ),
    ] = None,
    encoders: Annotated[
        str | None,
        typer.Option(
            "--encoders",
            "-e",
            help="Comma-separated encoder names instead: each one's version, or encoded on the fly.",
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", "-w", help="Metadata filter, applied to every column (as in `search`)."),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="Results per column.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run one query through several versions, recipes or encoders and show their top-k side by side.

    Each column is exactly what `embedscope search --version NAME` answers (same filter, same
    collapsing of repeated works). With --encoders, an encoder without a version of its own is
    fitted and encoded on the fly (slow for minilm on big collections: embed it once instead)."""
    from embedscope.compare import compare

    if versions is not None and encoders is not None:
        fail("give --versions or --encoders, not both")
    spec = encoders if encoders is not None else versions
    names = [e.strip() for e in spec.split(",") if e.strip()] if spec is not None else None
    if spec is not None and not names:
        fail("--versions/--encoders needs at least one name")
    try:
        col = Collection.open(collection)
        with status("encoding and searching…") if not as_json else contextlib.nullcontext():
            out = compare(col, query, names, k=k, where=where, by_encoder=encoders is not None)
    except EmbedscopeError as exc:
        fail(str(exc))
    body = out.to_json(col.display_fields())
    if as_json:
        print_json(body)
        return
    rows = body["runs"]
    title = f"{query!r} in {collection}: top {k}" + (f" where {where}" if where else "")
    table = Table(title=title, show_lines=True)
    table.add_column("rank", justify="right")
    for r in rows:
        table.add_column(r["target"], overflow="fold")
    for rank in range(k):
        cells = []
        for r in rows:
            if r["error"]:
                cells.append(f"[red]{r['error']}[/]" if rank == 0 else "")
            elif rank < len(r["hits"]):
                h = r["hits"][rank]
                cells.append(f"{h['title']} [dim]{h['score']:.3g}[/]")
            else:
                cells.append("")
        table.add_row(str(rank + 1), *cells)
    console.print(table)
    for r in rows:
        if not r["error"]:
            console.print(
                f"[dim]{r['target']}: {r['source']}; fit {r['fit_s']:.2f}s, encode {r['encode_ms']:.1f} ms, "
                f"search {r['search_ms']:.1f} ms[/]",
                highlight=False,
            )
