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
