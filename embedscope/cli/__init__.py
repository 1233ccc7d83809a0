"""Command-line interface: `embedscope --help`. A thin layer over `embedscope.collection`."""

from __future__ import annotations

import importlib
import os

from embedscope.cli.app import app, err_console

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


def _load_commands() -> None:
    for module in _COMMAND_MODULES:
        try:
            importlib.import_module(f"embedscope.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"embedscope.cli.{module}":
                raise


def main() -> None:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _load_commands()
    from embedscope.errors import EmbedscopeError

    try:
        app()
    except EmbedscopeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; stored data is unchanged by the unfinished step")
        raise SystemExit(130) from None


_load_commands()
