"""`embedscope demo`: books corpus -> embeddings -> a few vibe queries, on any machine."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from embedscope.cli.app import console, print_hits, progress_bar
from embedscope.collection import Collection
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.search.recipe import HYBRID
from embedscope.sources import detect_format, read_table
from embedscope.store.locate import env_url

BOOK_QUERIES = [
    "atmospheric, female lead, worldbuilding, funny",
    "a cozy mystery in a small english village",
    "hard science fiction about first contact with aliens",
]
WIKI_QUERIES = [
    "political philosophy and self-governed societies",
    "ancient greek mathematics",
    "a famous painter",
]
#: what the books' two versions encode (embedscope.encoders.document): BM25 reads authors and the
#: categories twice (BM25F), MiniLM the categories before the text; the best measured documents on the
#: books dev set (docs/evaluation.md, `python bench/bench_quality.py`)
BOOK_DOCUMENTS = {
    "sparse_document": "{text} {authors} {categories^2}",
    "dense_document": "{categories}. {text}",
}
BOOK_METADATA = [
    "title",
    "authors",
    "categories",
    "published_year",
    "average_rating",
    "num_pages",
    "ratings_count",
    "thumbnail",
]


def default_books_path() -> Path | None:
    """The shared books corpus: $EMBEDSCOPE_BOOKS, else ../shared/data/books/books.csv near here."""
    candidates = [os.environ.get("EMBEDSCOPE_BOOKS")]
    for base in [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]]:
        candidates.append(str(base / ".." / "shared" / "data" / "books" / "books.csv"))
        candidates.append(str(base / "shared" / "data" / "books" / "books.csv"))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    return None


def _check_target(collection: str, ids: list[str], store: str | None, replace: bool) -> None:
    """The demo never deletes items of an existing collection, nor builds somewhere else than asked:
    an existing collection must live in the store asked for (`--store`, else $EMBEDSCOPE_STORE) and
    hold no item the demo's input lacks (unless `--replace`); otherwise a one-line error says what
    to run instead."""
    from embedscope.store.postgres.schema import redact

    try:
        existing = Collection.open(collection)
    except NotFoundError:
        return
    wanted = store or env_url()
    if wanted and existing.location != redact(wanted):
        asked = "--store" if store else "EMBEDSCOPE_STORE"
        raise EmbedscopeError(
            f"collection '{collection}' already exists in {existing.location}, not in the database "
            f"{asked} names; the demo does not move collections: run it with -c NEW_NAME to build one there"
        )
    extra = sorted(set(existing.ids()) - set(ids))
    if extra and not replace:
        raise EmbedscopeError(
            f"collection '{collection}' holds {len(extra)} item(s) the demo's {len(ids)} books lack "
            f"(e.g. {', '.join(extra[:3])}); the demo deletes nothing: run it with -c NEW_NAME, or "
            f"with --replace to make '{collection}' exactly the demo's items"
        )


def run_demo(
    data: str | None,
    collection: str,
    encoder: str,
    limit: int | None,
    store: str | None = None,
    replace: bool = False,
) -> None:
    from embedscope.cli.demo_data import fetch_url, wikipedia_sample

    if data and data.startswith(("http://", "https://")):
        path: Path | None = fetch_url(data)
    elif data:
        path = Path(data)
        if not path.exists():
            raise EmbedscopeError(f"--data: file not found: {data}")
    else:
        path = default_books_path()
    from_text = False
    if path is not None:
        # values as written (CSV: text, typed per field by the ingest rule, so ISBN-10s keep zeros)
        frame = read_table(path, exact=True)
        from_text = detect_format(path) == "csv"
        needed = {"isbn13", "title", "description"}
        if not needed <= set(frame.columns):
            raise EmbedscopeError(f"{path.name}: a books file needs columns {', '.join(sorted(needed))}")
        id_field, template = "isbn13", "{title}. {description}"
        metadata = [c for c in BOOK_METADATA if c in frame.columns]
        queries = BOOK_QUERIES
        console.print(f"corpus: [bold]{len(frame)}[/] books from {path}")
    else:
        frame = wikipedia_sample()
        id_field, template, metadata = "id", "{title}. {text}", ["title"]
        queries = WIKI_QUERIES
        console.print(
            "[yellow]no books file found[/] (looked for ../shared/data/books/books.csv; "
            "pass --data PATH_OR_URL): "
            f"using the {len(frame)} English Wikipedia articles that ship inside gensim's test data instead"
        )
    if limit:
        frame = frame.head(limit)
    frame = frame.dropna(subset=["description"]) if "description" in frame.columns else frame
    _check_target(collection, [str(i) for i in frame[id_field]], store, replace)
    col = Collection.create(collection, store=store)
    counts = col.ingest(
        frame, id_field=id_field, template=template, metadata=metadata, replace=replace, from_text=from_text
    )
    console.print(f"collection [bold]{collection}[/] in {col.location}")
    console.print(f"ingested into collection [bold]{collection}[/]: {counts}")
    with progress_bar("encoding") as bar:
        task = bar.add_task(f"embedding with {encoder}", total=len(col))
        # `embed hybrid` stores the recipe `hybrid` (BM25 + MiniLM, the default fusion, the best
        # measured on the books' vibe set: docs/evaluation.md): activated, searches (and `serve`)
        # use it by default
        documents = BOOK_DOCUMENTS if encoder == HYBRID and queries is BOOK_QUERIES else None
        info = col.embed(
            encoder,
            documents,
            activate=encoder == HYBRID,
            progress=lambda d, t: bar.update(task, completed=d, total=t),
        )
        bar.update(task, completed=len(col), total=len(col))
    console.print(
        f"version [bold]{info.name}[/]: {info.stats['encoded']} encoded, {info.stats['reused']} reused "
        f"(dim {info.dim}, {info.index['kind']} index)"
    )
    if encoder == HYBRID:
        docs = "; ".join(f"{v.name} encodes {v.document or '{text}'}" for v in col.versions())
        console.print(
            f"default search: the recipe [bold]{col.recipes()[HYBRID].label()}[/]: "
            f"{col.recipes()[HYBRID].describe()}; {docs}",
            highlight=False,
        )
    for q in queries:
        print_hits(col.search(q, k=5), f"{q!r}", col.display_fields())
    # name the command as this user can run it: plain `embedscope` only if it is on PATH
    exe = "embedscope"
    if not shutil.which("embedscope") and sys.argv[0].endswith("embedscope"):
        exe = sys.argv[0]
    where = '--where "published_year >= 2000"' if "published_year" in metadata else ""
    # one command a line, never wrapped (soft_wrap: a terminal folds a long line visually, and
    # copying it gives the whole command), no markup (a [bracket] in a query stays as typed)
    hints = [
        f'{exe} search {collection} "{queries[0]}" -k 10',
        f'{exe} search {collection} "{queries[1]}" {where}'.rstrip(),
        f"{exe} similar {collection} {col.search(queries[0], k=1)[0].id}",
        f"{exe} info {collection}",
        f"{exe} serve {collection}   # web page at http://127.0.0.1:8000/",
    ]
    console.print("\nThe collection is stored; try:")
    for line in hints:
        console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
