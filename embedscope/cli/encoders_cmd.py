"""CLI: `embedscope encoders`, `embedscope words`, `embedscope compare`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from embedscope.cli.app import app, console, fail, print_json
from embedscope.errors import EmbedscopeError


@app.command("encoders")
def list_encoders(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every available encoder with its description and parameters (with defaults)."""
    from embedscope.encoders.registry import describe_encoders

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
    from embedscope.api import Collection

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
        if not hasattr(enc, "most_similar"):
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
        else:
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
    encoders: Annotated[str, typer.Option("--encoders", "-e", help="Comma-separated encoder names.")] = (
        "bm25,tfidf,lsa,word2vec,minilm,hybrid"
    ),
    k: Annotated[int, typer.Option("-k", help="Results per encoder.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run one query through several encoders and show their top-k side by side, with timings.

    Uses the collection's stored version of each encoder when there is one, else fits and encodes
    the collection on the fly (slow for minilm on big collections: embed it once instead)."""
    from embedscope.api import Collection
    from embedscope.compare import compare

    names = [e.strip() for e in encoders.split(",") if e.strip()]
    if not names:
        fail("--encoders needs at least one encoder name")
    try:
        col = Collection.open(collection)
        if not as_json:
            with console.status("encoding and searching…"):
                out = compare(col, query, names, k=k)
        else:
            out = compare(col, query, names, k=k)
    except EmbedscopeError as exc:
        fail(str(exc))
    if as_json:
        print_json(out)
        return
    table = Table(title=f"{query!r} in {collection}: top {k}", show_lines=True)
    table.add_column("rank", justify="right")
    for r in out["results"]:
        table.add_column(r["encoder"], overflow="fold")
    for rank in range(k):
        cells = []
        for r in out["results"]:
            if r["error"]:
                cells.append(f"[red]{r['error']}[/]" if rank == 0 else "")
            elif rank < len(r["hits"]):
                h = r["hits"][rank]
                cells.append(f"{h['title']} [dim]{h['score']:.3g}[/]")
            else:
                cells.append("")
        table.add_row(str(rank + 1), *cells)
    timing = [
        f"{r['encoder']}: {r['source'] or '-'}; fit {r['fit_s'] or 0:.2f}s, "
        f"encode {r['encode_ms'] or 0:.1f} ms, "
        f"search {r['search_ms'] or 0:.1f} ms"
        for r in out["results"]
        if not r["error"]
    ]
    console.print(table)
    for line in timing:
        console.print(f"[dim]{line}[/]", highlight=False)
