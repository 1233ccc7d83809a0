"""Screenshots of the web page for docs/serve.md, taken in headless Chromium with no network.

    python scripts/page_screenshots.py --collection books --prefix after --out docs/img

Serves the collection from $EMBEDSCOPE_HOME on a free loopback port and saves, as
`<out>/page-<prefix>-<shot>.png`: `search` (a vibe query with the default search), `nomatch`
(the nonsense query "xyzzy plugh"), `map` (the map panel open over the same vibe query) and `docs`
(the /docs page: blank when Swagger UI's assets come from a CDN the browser cannot reach). Every
host but 127.0.0.1 resolves to nothing, as on a machine with no network. Needs selenium and
Debian's chromium + chromium-driver (what tests/test_browser.py uses).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

VIBE = "a cozy mystery in a small english village"
NONSENSE = "xyzzy plugh"


def serve(collection: str) -> tuple[str, object]:
    import uvicorn

    from embedscope.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app([collection]), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline:
            raise SystemExit("the server did not start within 60 s")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def browser(width: int, height: int):  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--no-first-run",
        f"--window-size={width},{height}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]:
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-shots-')}")
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collection", default="books")
    ap.add_argument("--prefix", default="after", help="before | after: part of the file names")
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    args.out.mkdir(parents=True, exist_ok=True)
    base, server = serve(args.collection)
    driver = browser(args.width, args.height)
    c = quote(args.collection)

    def shot(name: str) -> None:
        path = args.out / f"page-{args.prefix}-{name}.png"
        driver.save_screenshot(str(path))
        print(path)

    def results(query: str) -> None:
        driver.get(f"{base}/?c={c}&q={quote(query)}")
        WebDriverWait(driver, 60).until(
            lambda d: (
                d.find_element(By.ID, "status").text
                and not d.find_element(By.ID, "status").text.startswith("Searching")
            )
        )
        time.sleep(0.5)  # thumbnails fail over to initials

    try:
        results(VIBE)
        shot("search")
        results(NONSENSE)
        shot("nomatch")
        results(VIBE)
        driver.find_element(By.CSS_SELECTOR, "#map-box summary").click()
        WebDriverWait(driver, 300).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#map canvas"))
        time.sleep(1)
        driver.execute_script("document.getElementById('map-box').scrollIntoView()")
        shot("map")
        driver.get(f"{base}/docs")
        time.sleep(4)  # Swagger UI draws itself from script, if its script loads at all
        shot("docs")
    finally:
        driver.quit()
        server.should_exit = True


if __name__ == "__main__":
    main()
