"""Where the demo's data comes from when it is not a local file: a URL downloaded once into a
cache, or the Wikipedia excerpt that ships inside gensim's test data (no network needed). The
excerpt's reader lives in `embedscope.samples` (one copy, below the encoders: the static encoder
trains on its passages too) and is re-exported here for the demo."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from embedscope.errors import EmbedscopeError
from embedscope.samples import wikipedia_sample

__all__ = ["fetch_url", "wikipedia_sample"]


def fetch_url(url: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Download a file once into a cache (with a progress bar); later calls reuse it."""

    import httpx

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
