"""Command-line interface: `embedscope --help`. A thin layer over `embedscope.collection`."""

from __future__ import annotations

import importlib
import os

import typer

from embedscope.cli.app import app, err_console
from embedscope.errors import EmbedscopeError

# Each module adds its commands to `app` when imported.
_COMMAND_MODULES = [
    "core",
    "hybrid_cmd",
    "encoders_cmd",
    "evaluate_cmd",
    "recommend_cmd",
    "serve_cmd",
    "experiment_cmd",
    "project_cmd",
    "tune_cmd",
]


#: one line per command for `embedscope --help` (at most ~50 characters: click cuts a longer one
#: mid-sentence with "..." at 80 columns); each command's own --help has its full text
SHORT_HELP = {
    "ingest": "Add or update items from a CSV, JSONL or Parquet file.",
    "embed": "Encode items into an embedding version.",
    "search": "The items nearest to a query text.",
    "similar": "More like this: the items nearest to an item.",
    "info": "Items, metadata fields and versions of a collection.",
    "check": "Check every version; print the repair if one fails.",
    "collections": "Every collection: items, versions, default search.",
    "activate": "Choose the active version or the default search.",
    "delete-version": "Delete a version (items are kept).",
    "delete-items": "Delete items by id.",
    "demo": "Books in, embeddings, a few vibe queries: the main job.",
    "encoders": "Every encoder with its parameters.",
    "words": "Word vectors of a word2vec version: neighbours, analogies.",
    "compare": "One query through several versions, side by side.",
    "evaluate": "Retrieval quality on a BEIR data set: nDCG@10 and more.",
    "compare-runs": "Two TREC runs compared with paired significance tests.",
    "ann-recall": "HNSW recall@k against exact search, and latency.",
    "word-tests": "Analogies, WordSim-353, SimLex-999 of word vectors.",
    "drift": "What moved: versions, queries over time, items.",
    "embed-behaviour": "Item vectors from interactions (EASE, ALS, item2vec).",
    "recommend": "Recommendations from a user's history or some items.",
    "evaluate-recs": "Offline evaluation of recommendations (HR, NDCG).",
    "demo-movielens": "MovieLens 100K end to end: the recommendations demo.",
    "serve": "HTTP API, web page and metrics.",
    "project": "A 2-D map of a version: PNG and HTML.",
    "hybrid": "Search recipes fusing versions (e.g. bm25 + minilm).",
    "interactions": "Store and inspect user-item interactions.",
    "experiment": "Online experiments: interleaving or A/B on live traffic.",
    "hybrid create": "Store a search recipe.",
    "hybrid list": "The collection's search recipes.",
    "hybrid delete": "Delete a stored recipe (versions are kept).",
    "interactions load": "Load interactions from a file.",
    "interactions info": "Users, items, ratings and time span.",
    "experiment start": "Start an experiment between two configurations.",
    "experiment stop": "Stop the running experiment.",
    "experiment list": "The collection's experiments.",
    "experiment report": "Winner, credit or CTR, significance, as a PNG too.",
}


def _load_commands() -> None:
    for module in _COMMAND_MODULES:
        try:
            importlib.import_module(f"embedscope.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"embedscope.cli.{module}":
                raise
    _short_help(app)


def _short_help(typer_app: typer.Typer, prefix: str = "") -> None:
    """Give every registered command and group its line of SHORT_HELP."""
    for info in typer_app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        info.short_help = info.short_help or SHORT_HELP.get(f"{prefix}{name}")
    for group in typer_app.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        name = group.name or ""
        group.short_help = group.short_help or SHORT_HELP.get(f"{prefix}{name}")
        _short_help(sub, f"{prefix}{name} ")


def main() -> None:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _load_commands()

    try:
        app()
    except EmbedscopeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; stored data is unchanged by the unfinished step")
        raise SystemExit(130) from None


_load_commands()
