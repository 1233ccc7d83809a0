"""`embedscope tune`: fine-tune the sentence encoder on the collection (the `tuned` encoder's CLI face)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.progress import TaskID

from embedscope.cli.app import app, console, err_console, open_collection, print_json, progress_bar
from embedscope.cli.options import CollectionArg, JsonOpt
from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    from embedscope.collection import Collection


def base_config(col: Collection, source: str) -> tuple[JSONObject, str | None]:
    """The encoder config and document template to tune from: the collection's version `source`'s
    (the tuned version encodes the same documents, so the two compare on the model alone), else the
    encoder of that name with its defaults and the items' text (`--from minilm` before any minilm
    version exists)."""
    from embedscope.encoders.registry import create_encoder
    from embedscope.errors import NotFoundError

    versions = {v.name: v for v in col.versions()}
    if source in versions:
        return versions[source].encoder, versions[source].document
    if source in ("minilm", "transformer"):
        return create_encoder(source).config(), None
    have = ", ".join(versions) or "none"
    raise NotFoundError(f"collection '{col.name}' has no version '{source}' to tune from (versions: {have})")


@app.command()
def tune(
    collection: CollectionArg,
    source: Annotated[
        str, typer.Option("--from", help="Version to tune from (its model and encoding settings).")
    ] = "minilm",
    pairs: Annotated[
        str,
        typer.Option(
            "--pairs",
            help="Pair kinds, comma-separated: ict (a sentence -> the rest of the text) and metadata "
            "field names (field -> text), e.g. title,categories,ict.",
        ),
    ] = "ict",
    version: Annotated[str, typer.Option("--version", "-v", help="Name of the tuned version.")] = "tuned",
    from_clicks: Annotated[
        str | None,
        typer.Option("--from-clicks", help="Also learn from this experiment's (query, clicked item) pairs."),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=100)] = 1,
    batch_size: Annotated[
        int, typer.Option(min=2, max=4096, help="Pairs per step (in-batch negatives).")
    ] = 64,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate.")] = 2e-5,
    seed: Annotated[int, typer.Option(help="Seed of the pairs, the batches and the model's dropout.")] = 0,
    loss: Annotated[
        str,
        typer.Option(help="mnrl, or cached_mnrl (the same gradients in constant memory, ~1/3 slower)."),
    ] = "mnrl",
    train_layers: Annotated[
        int,
        typer.Option(min=0, help="Top transformer layers trained, the rest kept as the base's (0: all)."),
    ] = 3,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Other `tuned` parameter key=value (see `embedscope encoders`)."),
    ] = None,
    activate: Annotated[bool, typer.Option(help="Make the tuned version the active one.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune MiniLM on the collection's own items.

    Self-supervised pairs with in-batch negatives make an ordinary embedding version: compare it
    with `evaluate`/`compare`, try it against its base with `experiment start`."""
    from embedscope.encoders.registry import create_encoder, parse_params
    from embedscope.encoders.tune import TunedEncoder, tuned_params

    col = open_collection(collection)
    base, document = base_config(col, source)
    options = dict(
        pairs=pairs,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        loss=loss,
        train_layers=train_layers,
    )
    # `-p key=value` may name an option's parameter too: said twice, the -p value wins
    params = tuned_params(base, **{**options, **parse_params(param)})
    skipped = 0
    clicks: list[tuple[str, str]] = []
    if from_clicks:
        from embedscope.experiments import clicked_pairs

        clicks, skipped = clicked_pairs(col, from_clicks)
        params["clicks"] = from_clicks
    enc = cast(TunedEncoder, create_encoder("tuned", params))  # the registry's "tuned" is this class
    enc.add_pairs(clicks)
    with progress_bar("tuning", out=err_console if as_json else None) as bar:
        train = bar.add_task(f"tuning {params['base']} on {collection}", total=None)
        enc.progress = lambda done, total: bar.update(train, completed=done, total=total)
        encode: list[TaskID] = []  # the encoding line appears once training is done

        def encoding(done: int, total: int) -> None:
            if not encode:
                encode.append(bar.add_task(f"encoding {collection} with it", total=total))
            bar.update(encode[0], completed=done, total=total)

        info = col.embed(
            enc, version=version, refit=True, activate=activate, progress=encoding, document=document
        )
    record = {k: v for k, v in enc.training.items() if k != "losses"}
    if as_json:
        print_json({"version": info.to_dict(), "training": record, "clicks_skipped": skipped})
        return
    kinds = ", ".join(f"{n} {k}" for k, n in record["pairs"].items())
    console.print(
        f"version [bold]{info.name}[/] = {params['base']} tuned on {record['items']} items: pairs {kinds}; "
        f"{record['steps']} steps of {params['batch_size']}, loss {record['loss_first_tenth']} -> "
        f"{record['loss_last_tenth']} (first -> last tenth), {record['seconds']} s "
        f"({record['cpu_seconds']} CPU s, {record['device']}); {info.stats['encoded']} items encoded in "
        f"{info.stats['encode_seconds']} s",
        highlight=False,
    )
    if skipped:
        console.print(f"[yellow]note:[/] {skipped} clicked item(s) no longer in the collection were skipped")
    console.print(
        f"next: `embedscope compare {collection} QUERY --versions {source},{info.name}`, "
        f"`embedscope experiment start {collection} --a {source} --b {info.name}`",
        highlight=False,
    )
