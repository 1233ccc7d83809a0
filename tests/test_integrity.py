"""Damage is visible and repairable, and a full disk loses nothing: `check`, `info`'s health column,
failed ingests that leave no collection behind, "more like this" of deleted items, and a real full
filesystem (a tiny tmpfs, when this process may mount one)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import EmbedscopeError, NotFoundError, StorageFullError

TEMPLATE = "{title}. {description}"
META = ["title", "authors", "published_year"]
EXE = [sys.executable, "-m", "embedscope.cli"]


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBEDSCOPE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*EXE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def small(home: Path, books_frame: pd.DataFrame) -> Collection:
    """120 real books with a TF-IDF version (exact index) and an LSA version (HNSW index)."""
    col = Collection.create("small")
    col.ingest(books_frame.head(120), id_field="isbn13", template=TEMPLATE, metadata=META)
    col.embed("tfidf")
    col.embed("lsa", {"n_components": 16}, index="hnsw")
    return col


def _revision(col: Collection, version: str) -> Path:
    return col.store.path / "versions" / col.store.version_revision(version)


@pytest.mark.parametrize(
    ("version", "damage", "says"),
    [
        ("tfidf", "vectors.npz", "vectors.npz is missing"),
        ("lsa", "index/hnsw.usearch", "index file is missing"),
        ("lsa", "encoder/encoder.json", "encoder"),
        ("tfidf", "ids.json", "ids.json is missing"),
    ],
)
def test_check_and_info_show_damage_and_the_repair_works(
    small: Collection, home: Path, version: str, damage: str, says: str
) -> None:
    """Defect 6: a version whose files are missing was reported healthy until a search failed."""
    assert small.check()["ok"]
    target = _revision(small, version) / damage
    assert target.exists(), sorted(p.name for p in target.parent.iterdir())
    target.unlink()
    info = _cli(["info", "small", "--json"], home)
    assert info.returncode == 0, info.stderr
    broken = {v["name"]: v["problems"] for v in json.loads(info.stdout)["versions"]}
    assert any(says in p for p in broken[version]) and not broken[({"tfidf", "lsa"} - {version}).pop()]
    assert "DAMAGED" in _cli(["info", "small"], home).stdout
    check = _cli(["check", "small"], home)
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert f"version {version}: damaged" in check.stdout and says in check.stdout
    repair = json.loads(_cli(["check", "small", "--json"], home).stdout)
    hint = next(v["repair"] for v in repair["versions"] if v["name"] == version)
    rebuild = hint.split("`")[1].split()  # `embedscope embed small --encoder ... --refit`
    assert rebuild[:3] == ["embedscope", "embed", "small"] and "--refit" in rebuild
    assert _cli([a.strip("'") for a in rebuild[1:]], home).returncode == 0
    after = _cli(["check", "small"], home)
    assert after.returncode == 0 and "all ok" in after.stdout, after.stdout + after.stderr
    assert len(Collection.open("small").search("a murder mystery", k=3, version=version)) == 3


def test_a_damaged_version_fails_its_searches_with_a_pointer_to_check(small: Collection) -> None:
    (_revision(small, "tfidf") / "vectors.npz").unlink()
    fresh = Collection.open("small")
    with pytest.raises(EmbedscopeError, match=r"version 'tfidf' .* is damaged .*embedscope check small"):
        fresh.search("a murder mystery", version="tfidf")
    assert len(fresh.search("a murder mystery", version="lsa")) == 10  # the other version still answers


def test_an_index_that_does_not_match_its_vectors_is_found(small: Collection) -> None:
    """The index file of another version (same size, other vectors) in place of the right one."""
    other = small.embed("lsa", {"n_components": 16, "random_state": 5}, version="lsa2", index="hnsw")
    assert other.count == 120
    src = _revision(small, "lsa2") / "index" / "hnsw.usearch"
    (_revision(small, "lsa") / "index" / "hnsw.usearch").write_bytes(src.read_bytes())
    report = Collection.open("small").check()
    lsa = next(v for v in report["versions"] if v["name"] == "lsa")
    assert not report["ok"] and any("does not find the version's own vectors" in p for p in lsa["problems"])


def test_more_like_a_deleted_item_is_not_found(small: Collection) -> None:
    """Defect 6: "more like this" answered for items deleted since the version was built."""
    gone = small.items()[5].id
    assert small.similar(gone, k=3)
    small.delete([gone])
    with pytest.raises(NotFoundError, match=f"no item '{gone}'"):
        small.similar(gone, k=3)


def test_a_failed_ingest_creates_no_collection(store_home: Path, tmp_path: Path) -> None:
    """Defect 6: `ingest` into a new collection created it before reading the file (both stores)."""
    home = store_home
    dup = tmp_path / "dup.csv"
    dup.write_text("id,text\n1,a\n1,b\n")
    proc = _cli(["ingest", str(dup), "-c", "fresh", "--text", "text"], home)
    assert proc.returncode == 2 and "duplicate id" in proc.stderr
    assert Collection.list() == []
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,text\n1,hello\n2\n")
    proc = _cli(["ingest", str(ragged), "-c", "fresh", "--text", "text"], home)
    assert proc.returncode == 2 and "line 3 has 1 field(s)" in proc.stderr
    assert Collection.list() == []
    with pytest.raises(EmbedscopeError, match="unknown index"):
        Collection.create_from("fresh", ragged, default_index="annoy", text="text")
    assert Collection.list() == []


def test_a_write_that_runs_out_of_space_changes_nothing(small: Collection, monkeypatch) -> None:
    """Monkeypatched ENOSPC (runs everywhere): a clear error, the previous version kept, no debris."""
    before = small.load_version("lsa").data.vectors.copy()
    revision = small.store.version_revision("lsa")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(StorageFullError, match="no space left on device: writing version 'lsa'"):
        small.embed("lsa", {"n_components": 16}, refit=True)
    assert small.store.version_revision("lsa") == revision
    assert np.array_equal(Collection.open("small").load_version("lsa").data.vectors, before)
    assert {p.name for p in (small.store.path / "versions").iterdir()} == {
        small.store.version_revision(v) for v in ("tfidf", "lsa")
    }


# --- a real full disk ----------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Path:
    """A 24 MB tmpfs (root only: skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    assert os.statvfs(disk).f_bavail == 0
    return filler


def test_a_full_disk_still_reads_and_refuses_writes_cleanly(
    tiny_disk: Path, books_frame: pd.DataFrame, tmp_path: Path
) -> None:
    """Defect 5: at 0 bytes free even `info` failed (SQLite could not create its shared-memory
    index). Now reads work and writes fail with one line, leaving the previous state."""
    home = tiny_disk / "home"
    col = Collection.create("full", root=home)
    col.ingest(books_frame.head(300), id_field="isbn13", template=TEMPLATE, metadata=META)
    col.embed("tfidf")
    col.close()
    more = tmp_path / "more.csv"
    books_frame.iloc[300:400].to_csv(more, index=False)
    filler = _fill(tiny_disk)

    info = _cli(["info", "full", "--json"], home)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["items"] == 300
    assert _cli(["check", "full"], home).returncode == 0
    search = _cli(["search", "full", "a ghost story", "-k", "3", "--json"], home)
    assert search.returncode == 0 and len(json.loads(search.stdout)) == 3, search.stderr
    for args in (
        ["ingest", str(more), "-c", "full", "--id-field", "isbn13", "--template", TEMPLATE],
        ["embed", "full", "--encoder", "tfidf", "--refit"],
        ["ingest", str(more), "-c", "another", "--id-field", "isbn13", "--template", TEMPLATE],
    ):
        proc = _cli(args, home)
        assert proc.returncode == 2, proc.stderr
        assert "error: no space left on device" in proc.stderr and "Traceback" not in proc.stderr

    filler.unlink()
    col = Collection.open("full", root=home)
    assert len(col) == 300 and col.check()["ok"] and Collection.list(home) == ["full"]
    col.ingest(more, id_field="isbn13", template=TEMPLATE, metadata=META)
    assert len(col) == 400 and col.embed("tfidf").count == 400


# --- experiments on a full disk (issue 16, item 5) ------------------------------------------------
def test_an_experiment_write_that_runs_out_of_space_leaves_nothing(
    small: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Monkeypatched ENOSPC (runs everywhere): `experiment start` raised OSError (a traceback in the
    CLI, a 500 over HTTP) and left a `.tmp` file per attempt; a full event log must not tear the
    next record either."""
    from embedscope.experiments import Experiments
    from embedscope.experiments.eventlog import read_events

    exps = Experiments.of(small)
    real_fsync, real_write = os.fsync, os.write

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    for _ in range(3):
        with pytest.raises(StorageFullError, match="no space left on device: starting experiment"):
            exps.start("tfidf", "lsa", name="full")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert sorted(p.name for p in exps.folder.iterdir()) == [".lock"] and exps.list() == []
    exp = exps.start("tfidf", "lsa", name="full")
    imp = exps.present(exp, "q", lambda q: ["a", "b"], lambda q: ["c", "d"], k=2)

    def half(fd: int, data: bytes) -> int:  # writes part of the line, then the disk is full
        monkeypatch.setattr(os, "write", full)
        return real_write(fd, bytes(data)[:7])

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(StorageFullError, match="no space left on device: writing the event log"):
        exps.click("full", imp.id, 0)
    monkeypatch.setattr(os, "write", real_write)
    assert not exps.click("full", imp.id, 0)["duplicate"]  # refused, so not a duplicate: retried
    read = read_events(exps.events_path("full"))
    assert read.skipped == 1 and [r["type"] for r in read.records] == ["impression", "click"]
    exps.close()


def test_experiment_start_on_a_full_disk(tiny_disk: Path, books_frame: pd.DataFrame) -> None:
    """A real full disk: the CLI says so in one line (exit 2), HTTP answers 507 without the server's
    path, nothing is left behind; a click that cannot be logged is a 507, a search with a session
    is still answered (without the experiment), and both work again once there is space."""
    from fastapi.testclient import TestClient

    from embedscope.serve import create_app

    home = tiny_disk / "home"
    col = Collection.create("full", root=home)
    col.ingest(books_frame.head(60), id_field="isbn13", template=TEMPLATE, metadata=META)
    col.embed("tfidf")
    col.embed("bm25")
    col.close()
    token = "full-disk-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    http = TestClient(create_app(["full"], root=home, token=token, warm=False), raise_server_exceptions=False)
    http.get("/api/collections/full/experiments")  # the server's experiments folder exists
    filler = _fill(tiny_disk)
    folder = home / "full" / "experiments"
    for _ in range(2):
        proc = _cli(["experiment", "start", "full", "--a", "tfidf", "--b", "bm25"], home)
        assert proc.returncode == 2, proc.stderr
        assert "error: no space left on device: starting experiment" in proc.stderr
        assert "Traceback" not in proc.stderr
        resp = http.post("/api/collections/full/experiments", json={"a": "tfidf", "b": "bm25"}, headers=auth)
        assert resp.status_code == 507 and "no space left on device" in resp.json()["error"]
        assert str(tiny_disk) not in resp.text
    assert not [p.name for p in folder.iterdir() if p.name != ".lock"]
    filler.unlink()
    started = http.post("/api/collections/full/experiments", json={"a": "tfidf", "b": "bm25"}, headers=auth)
    assert started.status_code == 201
    http.close()


def test_a_full_event_log_over_http(small: Collection, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A click that cannot be logged is a 507 without the server's path; a search with a session
    is still answered (without the experiment, whose impression cannot be logged); both work again
    once there is space. (Monkeypatched: on a real full tmpfs an append fits in its page's slack.)"""
    from fastapi.testclient import TestClient

    from embedscope.experiments.eventlog import EventLog
    from embedscope.serve import create_app

    token = "full-log-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    http = TestClient(
        create_app(["small"], root=home, token=token, warm=False), raise_server_exceptions=False
    )
    started = http.post("/api/collections/small/experiments", json={"a": "tfidf", "b": "lsa"}, headers=auth)
    assert started.status_code == 201, started.text
    search = {"query": "a ghost story", "k": 5, "session": "s1"}
    shown = http.post("/api/collections/small/search", json=search).json()["experiment"]
    click = {"experiment": shown["name"], "impression": shown["impression"], "position": 0}
    real = EventLog._write

    def full(self: EventLog, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(EventLog, "_write", full)
    resp = http.post("/api/collections/small/click", json=click)
    assert resp.status_code == 507 and "no space left on device" in resp.json()["error"]
    assert str(home) not in resp.text
    plain = http.post("/api/collections/small/search", json=search)
    assert plain.status_code == 200 and plain.json()["experiment"] is None and plain.json()["hits"]
    monkeypatch.setattr(EventLog, "_write", real)
    assert http.post("/api/collections/small/click", json=click).json()["duplicate"] is False
    http.close()
