"""`embedscope serve`: the HTTP API and the "search by vibe" web page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from embedscope.cli.app import app, console, fail
from embedscope.collection import Collection, default_root
from embedscope.errors import EmbedscopeError


@app.command()
def serve(
    names: Annotated[
        list[str] | None, typer.Argument(help="Collections to serve (default: all under EMBEDSCOPE_HOME).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 exposes it to the network).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    token_env: Annotated[
        str | None,
        typer.Option(
            help="Name of the environment variable holding the bearer token for write endpoints "
            "(never pass the token itself on the command line: it would show in `ps`). "
            "Without it, writes are refused (403).",
        ),
    ] = "EMBEDSCOPE_TOKEN",
    log_dir: Annotated[
        Path | None, typer.Option(help="Write the JSON-lines query log (rotated) into this folder.")
    ] = None,
    cache_size: Annotated[int, typer.Option(min=0, help="Query-embedding LRU cache entries.")] = 1024,
    torch_threads: Annotated[
        int,
        typer.Option(
            min=0,
            help="Threads for query encoding (PyTorch, ONNX Runtime, OpenVINO; 0 = one per core). "
            "Concurrent queries are micro-batched into one encoder call, so the default is best unless "
            "other processes compete for the cores (docs/serve.md).",
        ),
    ] = 0,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Connections served at once; a request beyond them gets 503.")
    ] = 256,
    head_timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds a request head may take to arrive (then the connection closes)."),
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a request body may take after its head (408).")
    ] = 30.0,
    keep_alive: Annotated[
        float, typer.Option(min=0.1, help="Seconds an idle keep-alive connection stays open.")
    ] = 5.0,
) -> None:
    """Serve collections over HTTP: API (OpenAPI at /docs), Prometheus /metrics, web page at /."""
    import uvicorn

    from embedscope.serve import create_app
    from embedscope.serve.server import Limits, config

    if torch_threads:
        from embedscope.encoders.runtime import set_cpu_threads

        set_cpu_threads(torch_threads)
    token = os.environ.get(token_env) if token_env else None
    if token is not None and len(token) < 16:
        fail(f"the token in ${token_env} is shorter than 16 characters; use a long random one")
    chosen = names or Collection.list()
    if not chosen:
        fail(f"no collections under {default_root()}; create one with `embedscope ingest` or `demo`")
    try:
        with console.status(f"loading {', '.join(chosen)} (versions, encoders, indexes)"):
            application = create_app(
                chosen, token=token, log_dir=log_dir, cache_size=cache_size, body_timeout=body_timeout
            )
    except EmbedscopeError as exc:
        fail(str(exc))
    writes = f"enabled (token from ${token_env})" if token else f"disabled (set ${token_env} to enable)"
    console.print(
        f"serving [bold]{', '.join(chosen)}[/] at [link]http://{host}:{port}/[/]  "
        f"API docs: http://{host}:{port}/docs  writes: {writes}"
        + (f"  query log: {log_dir}" if log_dir else ""),
        highlight=False,
    )
    for served in application.state.embedscope.collections.values():
        live = served.experiments.running()  # one started later (`experiment start`) is served too
        if live is not None:
            console.print(
                f"experiment [bold]{live.name}[/] runs on {served.name} ({live.method}: A = {live.a}, "
                f"B = {live.b}): default searches with a session get its list (docs/online.md)",
                highlight=False,
            )
    limits = Limits(head_timeout, body_timeout, keep_alive, max_connections)
    uvicorn.Server(config(application, host, port, limits, log_level="warning", access_log=False)).run()
