"""Arguments and options several commands share, defined once: the same flag means the same thing,
with the same help, in every command that takes it (Typer reads them from these annotations)."""

from __future__ import annotations

from typing import Annotated

import typer

CollectionArg = Annotated[str, typer.Argument(help="Collection name (see `embedscope collections`).")]
K = Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Number of results.")]
Where = Annotated[
    str | None,
    typer.Option(
        "--where",
        "-w",
        help="Metadata filter, e.g. \"published_year >= 2000 and categories has 'Fiction'\": "
        "comparisons, and/or/not, in [...]; 'contains' is a substring test ('Fiction' also matches "
        "'Juvenile Nonfiction'), 'has' an element test (a list's element, or one comma-separated "
        "part of a text), 'startswith' a prefix test; all three ignore case.",
    ),
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        "-v",
        help="Embedding version or search recipe, e.g. hybrid (default: the collection's default "
        "search; more-like-this: the active version).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CollapseOpt = Annotated[
    bool,
    typer.Option(help="Show one edition of each work (same normalised title and author), the best-ranked."),
]
