"""Where the demo's data comes from when it is not a local file: a URL downloaded once into a
cache, or the Wikipedia excerpt that ships inside gensim's test data (no network needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from embedscope.errors import EmbedscopeError


# --- corpora that ship with installed packages (the demo's offline fallback) --------------------
def wikipedia_sample(max_chars: int = 1500) -> pd.DataFrame:
    """English Wikipedia articles from the excerpt inside gensim's test data (no network needed)."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    path = datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    rows = []
    with bz2.open(path) as fh:
        for title, raw, page_id in extract_pages(fh):
            text = " ".join(filter_wiki(raw).split())
            if not text or text.upper().startswith("#REDIRECT") or len(text) < 200:
                continue
            rows.append({"id": page_id, "title": title, "text": text[:max_chars]})
    return pd.DataFrame(rows)


def fetch_url(url: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Download a file once into a cache (with a progress bar); later calls reuse it."""
    import hashlib
    import os
    import tempfile
    from urllib.parse import urlparse

    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    cache_dir = Path(cache_dir or os.environ.get("EMBEDSCOPE_CACHE") or Path.home() / ".cache" / "embedscope")
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urlparse(url).path).name or "download"
    target = cache_dir / f"{hashlib.sha1(url.encode()).hexdigest()[:12]}-{name}"
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".part-")
    try:
        # the file is opened first so its descriptor is closed on every path, errors included
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, follow_redirects=True, timeout=30) as resp:
            if resp.status_code != 200:
                raise EmbedscopeError(f"download failed: {url} answered HTTP {resp.status_code}")
            total = int(resp.headers.get("content-length") or 0) or None
            with (
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    disable=not progress,
                    transient=True,
                ) as bar,
            ):
                task = bar.add_task(f"downloading {name}", total=total)
                for chunk in resp.iter_bytes():
                    out.write(chunk)
                    bar.update(task, advance=len(chunk))
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, target)  # atomic: a half-downloaded file never looks cached
    except httpx.HTTPError as exc:
        raise EmbedscopeError(f"download failed: {url}: {exc.__class__.__name__}: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
