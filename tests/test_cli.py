"""The CLI as a user meets it: real subprocesses, one-line errors, exit codes, JSON output.
The tests on `cli_home` run twice: on the embedded store and on a collection ingested with
`--store postgresql://...` (ids `[postgres]`), which every later command must find by name."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

EXE = [sys.executable, "-m", "embedscope.cli"]


def run(args: list[str], home: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "160"}
    proc = subprocess.run([*EXE, *args], capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def cli_home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, books_frame: pd.DataFrame
) -> Path:
    home = tmp_path_factory.mktemp("clihome")
    csv = home / "books.csv"
    books_frame.head(120).to_csv(csv, index=False)
    store = []
    if request.param == "postgres":
        url = request.getfixturevalue("pg_server").create_database(f"embedscope_cli_{os.getpid()}")
        store = ["--store", url]
    run(
        [
            "ingest",
            str(csv),
            "--collection",
            "books",
            "--id-field",
            "isbn13",
            "--template",
            "{title}. {description}",
            "--metadata",
            "title,authors,published_year",
            *store,
        ],
        home,
    )
    run(["embed", "books", "--encoder", "minilm"], home)
    return home


def test_search_json_and_filter(cli_home: Path) -> None:
    out = run(
        [
            "search",
            "books",
            "a story of war and soldiers",
            "-k",
            "4",
            "--where",
            "published_year < 2000",
            "--json",
        ],
        cli_home,
    )
    hits = json.loads(out.stdout)
    assert len(hits) == 4
    assert all(h["metadata"]["published_year"] < 2000 for h in hits)
    table = run(["search", "books", "a story of war and soldiers", "-k", "3"], cli_home).stdout
    assert hits[0]["metadata"]["title"][:20] in table or hits[0]["id"] in table


def test_similar_and_info(cli_home: Path, books_frame: pd.DataFrame) -> None:
    item = str(books_frame.isbn13[0])
    hits = json.loads(run(["similar", "books", item, "-k", "3", "--json"], cli_home).stdout)
    assert len(hits) == 3 and item not in [h["id"] for h in hits]
    info = json.loads(run(["info", "books", "--json"], cli_home).stdout)
    assert info["items"] == 120 and info["active_version"] == "minilm"
    listed = json.loads(run(["collections", "--json"], cli_home).stdout)
    assert [(c["name"], c["items"], c["versions"], c["default_search"]) for c in listed] == [
        ("books", 120, ["minilm"], "minilm")
    ]
    # a collection made with --store is found by name through its pointer file
    assert (cli_home / "books" / "store.json").exists() == info["store"].startswith("postgresql://")
    assert info["metadata_fields"]["published_year"].startswith("int")
    assert info["versions"][0]["encoder"]["name"] == "minilm" and info["versions"][0]["dim"] == 384


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "nope", "x"], "collection 'nope' does not exist"),
        (["search", "books", "x", "--where", "colour = 'red'"], "unknown field(s) colour"),
        (["search", "books", "x", "--version", "v9"], "no version or recipe 'v9'"),
        (["embed", "books", "--encoder", "bert9"], "unknown encoder 'bert9'"),
        (["embed", "books", "--param", "nope=1"], "has no parameter 'nope'"),
        (["similar", "books", "0000"], "no item '0000'"),
        (["ingest", "x.csv", "-c", "books", "--store", "mysql://db"], "not a PostgreSQL URL"),
        (["embed", "books", "--index-param", "size"], "must look like key=value"),
        # issue 13: deep or ill-typed filters, list-valued and mistyped --param, a missing collection
        (["search", "books", "x", "--where", "published_year > " + "-" * 400 + "1"], "too deeply nested"),
        (["search", "books", "x", "--where", "authors in [[1], {2: 3}]"], "list of plain values"),
        (["embed", "books", "--encoder", "bm25", "--param", "k1=[1, 2]"], "'k1' must be a number"),
        (["embed", "books", "--encoder", "bm25", "--param", "stemmer=[1]"], "invalid parameter value"),
        (["embed", "books", "--encoder", "tfidf", "--param", "lowercase=1"], "must be true or false"),
        (["check", "nope"], "collection 'nope' does not exist"),
    ],
)
def test_errors_are_one_line(cli_home: Path, args: list[str], message: str) -> None:
    proc = run(args, cli_home, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2


def test_bad_files(cli_home: Path, tmp_path: Path) -> None:
    ragged = tmp_path / "r.csv"
    ragged.write_text("id,text\n1,a\n2,b,c\n")
    proc = run(["ingest", str(ragged), "--collection", "books", "--text", "text"], cli_home, check=False)
    assert proc.returncode == 2 and "malformed CSV" in proc.stderr and "Traceback" not in proc.stderr
    dup = tmp_path / "d.csv"
    dup.write_text("id,text\n1,a\n1,b\n")
    proc = run(["ingest", str(dup), "--collection", "books", "--text", "text"], cli_home, check=False)
    assert proc.returncode == 2 and "the collection's id field 'isbn13' not found" in proc.stderr
    args = ["ingest", str(dup), "--collection", "books", "--text", "text", "--id-field", "id"]
    proc = run(args, cli_home, check=False)
    assert proc.returncode == 2 and "duplicate id" in proc.stderr
    info = json.loads(run(["info", "books", "--json"], cli_home).stdout)
    assert info["items"] == 120  # nothing lost


@pytest.mark.slow
def test_demo_from_url_downloads_once(tmp_path: Path, books_frame: pd.DataFrame) -> None:
    served = tmp_path / "www"
    served.mkdir()
    books_frame.head(40).to_csv(served / "books.csv", index=False)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/books.csv"
    env_home = tmp_path / "home"
    os.environ["EMBEDSCOPE_CACHE"] = str(tmp_path / "cache")
    try:
        proc = run(["demo", "--data", url, "--collection", "web"], env_home)
        assert "40 books" in proc.stdout
        # the default: BM25 + MiniLM, and the hybrid recipe answers searches without a --version
        assert "default search: the recipe hybrid(bm25+minilm" in proc.stdout
        # the best measured configuration, said in full: documents from the fields, the split stage
        said = " ".join(proc.stdout.split())
        assert "minilm encodes {categories}. {text}" in said and "split(by=sentence" in said
        (served / "books.csv").unlink()  # a second run must use the cache, not the server
        again = run(["demo", "--data", url, "--collection", "web"], env_home)
        assert "0 encoded, 40 reused" in again.stdout
        missing = run(
            ["demo", "--data", url.replace("books.csv", "nope.csv"), "--collection", "x"],
            env_home,
            check=False,
        )
        assert missing.returncode == 2 and "HTTP 404" in missing.stderr
    finally:
        server.shutdown()
        os.environ.pop("EMBEDSCOPE_CACHE", None)


@pytest.mark.slow
def test_demo_falls_back_to_shipped_wikipedia(home: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import embedscope.cli.demo as demo
    from embedscope import Collection

    monkeypatch.setattr(demo, "default_books_path", lambda: None)
    demo.run_demo(data=None, collection="wiki", encoder="minilm", limit=40)
    out = capsys.readouterr().out
    assert "no books file found" in out and "Wikipedia" in out
    col = Collection.open("wiki")
    assert len(col) == 40
    top = col.search("political philosophy and self-governed societies", k=3)
    assert "Anarchism" in [h.metadata["title"] for h in top]
