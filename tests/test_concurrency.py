"""Several processes on one collection, as a busy team uses it: real OS processes, real books.

The store's guarantees (embedscope/store/base.py, `Store`): readers never see a half state, one
version writer at a time (a second one waits, then gets ConflictError "busy"), and garbage
collection never removes a live writer's work in progress. Every test runs against both stores
(ids `[embedded]` / `[postgres]`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from embedscope import Collection
from embedscope.errors import ConflictError

TEMPLATE = "{title}. {description}"
META = ["title", "authors", "categories", "published_year"]

# One worker process: does `role` `ops` times (or until `deadline`), printing one JSON line per
# operation: {"op", "outcome": "ok" | "busy" | "error", "error"}. "busy" is the clean refusal.
WORKER = textwrap.dedent(
    """
    import json, random, sys, time
    import pandas as pd
    from embedscope import Collection
    from embedscope.errors import ConflictError

    root, role, csv = sys.argv[1], sys.argv[2], sys.argv[5]
    ops, deadline = int(sys.argv[3]), float(sys.argv[4])
    rng = random.Random(role)
    books = pd.read_csv(csv, dtype={"isbn13": str})
    ids = books.isbn13.tolist()
    queries = ["a detective story", "love and war", "dragons and magic", "a history of rome", "cooking"]

    col = None

    def once(n):
        global col
        if col is None or n % 5 == 0:  # reopen often: opening runs garbage collection
            if col is not None:
                col.close()
            col = Collection.open("team", root=root)
        if role.startswith("search"):
            hits = col.search(rng.choice(queries), k=5, where="published_year >= 1900")
            assert all(h.metadata["published_year"] >= 1900 for h in hits)
            return "search"
        if role.startswith("info"):
            info = col.info()
            assert not any(v["problems"] for v in info["versions"]), info["versions"]
            col.similar(rng.choice(ids), k=3)
            return "info"
        if role.startswith("embed"):
            info = col.embed("tfidf", refit=True)
            assert info.count == len(col.load_version("tfidf").data.ids)
            return "embed"
        rows = books.sample(40, random_state=n).copy()
        rows["description"] = rows["description"].fillna("") + f" revision {n}"
        col.ingest(rows, id_field="isbn13", template="{title}. {description}",
                   metadata=["title", "authors", "categories", "published_year"])
        return "ingest"

    stop = time.monotonic() + deadline
    for n in range(ops):
        if time.monotonic() > stop:
            break
        try:
            op = once(n)
            print(json.dumps({"op": op, "outcome": "ok"}), flush=True)
        except ConflictError as exc:
            outcome = "busy" if "busy" in str(exc) else "error"
            print(json.dumps({"op": role, "outcome": outcome, "error": str(exc)}), flush=True)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            print(json.dumps({"op": role, "outcome": "error", "error": error}), flush=True)
    """
)


def _spawn(script: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def team(
    tmp_path: Path, books_frame: pd.DataFrame, store_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """~1,000 real books embedded with TF-IDF (cheap to refit, so writers are many), in the embedded
    store or in PostgreSQL (new collections of the worker processes too, by EMBEDSCOPE_STORE)."""
    if store_url:
        monkeypatch.setenv("EMBEDSCOPE_STORE", store_url)
    else:
        monkeypatch.delenv("EMBEDSCOPE_STORE", raising=False)
    root = tmp_path / "home"
    csv = tmp_path / "books1000.csv"
    books_frame.head(1000).to_csv(csv, index=False)
    col = Collection.create("team", root=root)
    col.ingest(books_frame.head(1000), id_field="isbn13", template=TEMPLATE, metadata=META)
    col.embed("tfidf")
    col.close()
    return root, csv


def test_readers_and_writers_hammering_one_collection(
    tmp_path: Path, team: tuple[Path, Path], no_leftovers
) -> None:
    """Several hundred operations from six processes at once: every read answers, every write
    completes or is cleanly refused as busy, and afterwards every version passes `check`."""
    root, csv = team
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    roles = {"search-1": 120, "search-2": 120, "info-1": 60, "embed-1": 8, "embed-2": 8, "ingest-1": 40}
    procs = {role: _spawn(script, str(root), role, str(ops), "30", str(csv)) for role, ops in roles.items()}
    outcomes: list[dict] = []
    for role, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{role} crashed: {err[-2000:]}"
        outcomes += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    errors = [o for o in outcomes if o["outcome"] == "error"]
    assert not errors, errors[:5]
    done = pd.Series([o["op"] for o in outcomes if o["outcome"] == "ok"]).value_counts().to_dict()
    print(f"{len(outcomes)} operations: {done}")
    assert len(outcomes) >= 200, f"only {len(outcomes)} operations ran: {done}"
    assert done.get("embed", 0) >= 2 and done.get("ingest", 0) >= 5 and done.get("search", 0) >= 50, done
    col = Collection.open("team", root=root)
    report = col.check()
    assert report["ok"], report
    assert len(col.search("a detective story", k=5)) == 5
    no_leftovers(col)  # nothing but the live revisions is left once no writer is active


SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    import embedscope.store.embedded as embedded
    import embedscope.store.postgres.versions as postgres
    from embedscope import Collection

    def slowly(step):  # the revision is being written; hold here, as a big version would
        def slow(*args):
            print("writing", flush=True)
            time.sleep(float(sys.argv[2]))
            return step(*args)
        return slow

    embedded._fsync_tree = slowly(embedded._fsync_tree)  # files written, not yet fsynced
    postgres._copy_vectors = slowly(postgres._copy_vectors)  # table created, transaction open
    col = Collection.open("team", root=sys.argv[1])
    col.embed("tfidf", refit=True)
    col.load_version("tfidf")
    print("done", flush=True)
    """
)


def test_opening_never_collects_a_live_writers_revision(tmp_path: Path, team: tuple[Path, Path]) -> None:
    """Defect 1 of issue 13: opening the collection (as `info` does) while an embed is writing its
    revision folder deleted the folder, failing the embed or leaving a version that points nowhere."""
    root, _ = team
    script = tmp_path / "slow.py"
    script.write_text(SLOW_WRITER)
    writer = _spawn(script, str(root), "4")
    assert writer.stdout.readline().strip() == "writing"
    for _ in range(3):  # what `embedscope info` does, from this process, while the writer writes
        col = Collection.open("team", root=root)
        col.info()
        col.close()
        time.sleep(0.3)
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0 and out.strip() == "done", err[-2000:]
    col = Collection.open("team", root=root)
    assert col.check()["ok"]
    assert len(col.search("a detective story", k=3)) == 3


HOLDER = textwrap.dedent(
    """
    import sys, time
    from embedscope import Collection

    col = Collection.open("team", root=sys.argv[1])
    with col.store.writing():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_a_second_writer_gets_a_clear_busy_error(tmp_path: Path, team: tuple[Path, Path]) -> None:
    root, _ = team
    script = tmp_path / "hold.py"
    script.write_text(HOLDER)
    holder = _spawn(script, str(root), "6")
    assert holder.stdout.readline().strip() == "locked"
    col = Collection.open("team", root=root)
    col.store.write_wait = 0.5
    with pytest.raises(ConflictError, match="collection 'team' is busy"):
        col.embed("tfidf", refit=True)
    with pytest.raises(ConflictError, match="busy"):
        col.delete_version("tfidf")
    assert len(col.search("love", k=2)) == 2  # readers are never blocked
    holder.wait(timeout=60)
    col.store.write_wait = 30
    assert col.embed("tfidf", refit=True).count == 1000  # and once the holder is gone, it works


INGESTER = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from embedscope import Collection

    root, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    rows = pd.read_csv(sys.argv[4], dtype={"isbn13": str}).head(300)
    for n in range(rounds):
        while time.time() < start + n * 1.5:  # both processes begin each round together
            time.sleep(0.001)
        col = Collection.create(f"race{n}", root=root)
        print(col.ingest(rows, id_field="isbn13", template="{title}. {description}")["added"], flush=True)
        col.close()
    """
)


def test_two_ingests_of_the_same_new_rows_at_once(tmp_path: Path, team: tuple[Path, Path]) -> None:
    """Defect 5: both read "no such ids yet", then the second insert failed with `UNIQUE constraint
    failed`. Existence is now read inside the write transaction: one adds, the other finds them."""
    root, csv = team
    script = tmp_path / "ingest.py"
    script.write_text(INGESTER)
    start, rounds = time.time() + 6, 4
    procs = [_spawn(script, str(root), str(start), str(rounds), str(csv)) for _ in range(2)]
    added = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
        added.append([int(x) for x in out.split()])
    assert [sorted(pair) for pair in zip(*added, strict=True)] == [[0, 300]] * rounds
    assert all(len(Collection.open(f"race{n}", root=root)) == 300 for n in range(rounds))


def test_info_while_a_writer_cleans_up_the_old_revision_reports_no_damage(
    home: Path, books_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader looking at a revision's files while a writer replaces it and is half-way through
    deleting the old folder (its encoder already gone) must read the new revision, not report the
    version damaged (seen in the hammering test: 'the fitted encoder ... is missing')."""
    import shutil

    from embedscope.store import embedded

    col = Collection.create("race")
    col.ingest(books_frame.head(30), id_field="isbn13", text="description")
    col.embed("tfidf", index="exact")
    real = embedded._inspect_revision
    seen: list[Path] = []

    def racing(d: Path, info: object) -> list[str]:
        if not seen:
            seen.append(d)
            col.embed("tfidf", index="exact", refit=True)  # replaces the revision; the old one goes
            new = next(p for p in d.parent.iterdir() if p != d and p.name.startswith("tfidf-"))
            shutil.copytree(new, d, ignore=shutil.ignore_patterns("encoder"))  # rmtree half-way
        return real(d, info)

    monkeypatch.setattr(embedded, "_inspect_revision", racing)
    (row,) = col.info()["versions"]
    assert seen and row["problems"] == []
