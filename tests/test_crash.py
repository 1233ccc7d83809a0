"""A real kill -9 of a child process in the middle of ingest + embed leaves the collection
readable in its previous (or the new, complete) state, in both stores (ids `[embedded]`,
`[postgres]`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import Collection

CHILD = textwrap.dedent(
    """
    import sys, pandas as pd
    from embedscope import Collection
    frame = pd.read_csv(sys.argv[2])
    col = Collection.open("crash", root=sys.argv[1])
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=["title"], replace=True)
    print("ingested", flush=True)
    col.embed("minilm", {"max_seq_length": 64}, batch_size=16)
    print("embedded", flush=True)
    """
)


@pytest.mark.slow
def test_kill_during_ingest_and_embed(
    tmp_path: Path, books_frame: pd.DataFrame, store_url: str | None, no_leftovers
) -> None:
    root = tmp_path / "home"
    col = Collection.create("crash", root=root, store=store_url)
    base = books_frame.head(40)
    col.ingest(base, id_field="isbn13", template="{title}. {description}", metadata=["title"])
    col.embed("minilm", {"max_seq_length": 64}, batch_size=16)
    col.close()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = np.random.default_rng(7)
    outcomes = set()
    for attempt in range(6):
        new = books_frame.iloc[40 + attempt * 20 : 100 + attempt * 20]
        csv = tmp_path / f"new{attempt}.csv"
        new.to_csv(csv, index=False)
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, str(script), str(root), str(csv)], stdout=subprocess.PIPE, text=True
        )
        if attempt == 0:
            child.wait(timeout=300)  # one whole run: how long a child lives on this machine
            lifetime = time.perf_counter() - started
            assert child.returncode == 0, "the child failed without a kill"
        else:
            # a kill somewhere in the child's measured life (start-up, ingest or embed), so that a
            # faster machine or start-up does not turn every kill into a finished run
            time.sleep(float(rng.uniform(0.2, 1.0)) * lifetime)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        outcomes.add("finished" if child.returncode == 0 else "killed")
        col = Collection.open("crash", root=root)
        n = len(col)
        ids, vectors = col.vectors()
        assert vectors.shape == (len(ids), 384)
        assert np.isfinite(np.asarray(vectors)).all()
        # readable: a search answers, and every hit is a stored item; a version that is not stale
        # (its items are the collection's items) answers with results
        hits = col.search("a story about love", k=3)
        assert all(col.get(h.id) for h in hits)
        if not col.info()["versions"][0]["stale"]:
            assert len(hits) == 3
        assert n in {len(base), 60}  # the old items or the new file's, never a mix
        no_leftovers(col)
        col.close()
    assert "killed" in outcomes
