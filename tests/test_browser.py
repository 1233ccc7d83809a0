"""The web page in a real browser (Selenium + Debian's chromium/chromedriver): search, more like this,
switching encoders, filters, phone width. Screenshots go to artifacts/ (gitignored) for a human look.

Needs: `apt-get install chromium chromium-driver` and `pip install selenium`; skipped otherwise."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from embedscope import Collection

REPO = Path(__file__).resolve().parents[1]
BOOKS = REPO.parent / "shared" / "data" / "books" / "books.csv"
ARTIFACTS = REPO / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(webdriver is None, reason="selenium is not installed (pip install selenium)"),
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="chromium/chromedriver not found (apt-get install chromium chromium-driver)",
    ),
    pytest.mark.skipif(not BOOKS.exists(), reason=f"shared books data not found at {BOOKS}"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 real books in two versions (and so the implicit `hybrid` recipe)."""
    root = tmp_path_factory.mktemp("browser")
    col = Collection.create("books", root)
    meta = ["title", "authors", "categories", "published_year", "average_rating", "thumbnail"]
    frame = pd.read_csv(BOOKS).head(200)
    col.ingest(frame, id_field="isbn13", template="{title}. {description}", metadata=meta)
    col.embed("bm25", index="exact")
    col.embed("minilm", {"max_seq_length": 64}, activate=True)  # short: keeps the test's encoding cheap
    col.close()
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, serving the books."""
    import uvicorn

    from embedscope.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(["books"], root=root)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture()
def browser() -> Iterator[object]:
    opts = webdriver.ChromeOptions()
    for arg in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        # nothing leaves the machine: thumbnails point at the internet, the cards fall back to initials
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]:
        opts.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, cond, timeout: float = 30):  # noqa: ANN001, ANN202
    return WebDriverWait(driver, timeout).until(cond)


def _cards(driver) -> list:  # noqa: ANN001
    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def _titles(driver) -> list[str]:  # noqa: ANN001
    # read in one script call: the cards may be replaced between two WebDriver calls
    return driver.execute_script(
        "return [...document.querySelectorAll('#results .card .title')].map(e => e.textContent)"
    )


def _results_change(driver, before: list[str]):  # noqa: ANN001, ANN202
    return _wait(driver, lambda d: (t := _titles(d)) and t != before and t)


def test_search_more_like_this_and_switch_encoder(server: str, browser) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(exist_ok=True)
    d = browser
    d.get(server + "/")
    _wait(d, lambda d: d.execute_script("return document.body.dataset.ready"))
    box = d.find_element(By.ID, "q")
    assert "worldbuilding" in box.get_attribute("placeholder")
    assert d.find_element(By.CSS_SELECTOR, "label[for=q]").text  # the box has a visible label
    # type a vibe and press Enter
    box.send_keys("a detective solves murders in an english village", Keys.ENTER)
    titles = _wait(d, lambda d: _titles(d))
    assert len(titles) == 12
    status = d.find_element(By.ID, "status").text
    assert "minilm" in status and "ms" in status
    first = _cards(d)[0]
    assert first.find_element(By.CSS_SELECTOR, ".byline").text  # authors · year shown
    assert "q=a+detective" in d.current_url  # state in the URL: shareable, back button works
    d.save_screenshot(str(ARTIFACTS / "browser-search.png"))

    # more like this: the clicked book is excluded, the heading names it
    clicked = titles[0]
    first.find_element(By.CSS_SELECTOR, ".more-like").click()
    similar = _results_change(d, titles)
    assert "like=" in d.current_url
    assert clicked in d.find_element(By.ID, "context").text
    assert clicked not in similar[:1]
    d.save_screenshot(str(ARTIFACTS / "browser-more-like-this.png"))

    # back to the search, then switch the encoder to BM25 with the keyboard-focusable radio
    d.back()
    _wait(d, lambda d: _titles(d) == titles)
    d.find_element(By.CSS_SELECTOR, "input[name=version][value=bm25]").click()
    bm25 = _results_change(d, titles)
    assert "bm25" in d.find_element(By.ID, "status").text and "v=bm25" in d.current_url
    assert bm25 != titles  # a lexical encoder ranks differently
    d.find_element(By.CSS_SELECTOR, "input[name=version][value=hybrid]").click()
    _wait(d, lambda d: "hybrid" in d.find_element(By.ID, "status").text)
    d.save_screenshot(str(ARTIFACTS / "browser-hybrid.png"))

    # side by side: one column per encoder
    d.find_element(By.CSS_SELECTOR, "input[name=version][value=__compare__]").click()
    cols = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, ".compare .col"))
    assert len(cols) == 3
    d.save_screenshot(str(ARTIFACTS / "browser-compare.png"))


def test_filters_suggestions_and_phone_width(server: str, browser) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(exist_ok=True)
    d = browser
    d.set_window_size(390, 844)  # a phone
    d.get(server + "/")
    _wait(d, lambda d: d.execute_script("return document.body.dataset.ready"))
    # a suggested vibe is a real button and runs a search
    vibe = d.find_element(By.CSS_SELECTOR, "#suggestions button")
    assert vibe.tag_name == "button"
    vibe_text = vibe.text
    vibe.click()
    titles = _wait(d, lambda d: _titles(d))
    assert d.find_element(By.ID, "q").get_attribute("value") == vibe_text
    # the year filter: open the filters, set a range, submit with Enter
    d.find_element(By.CSS_SELECTOR, "#filters-box summary").click()
    low = d.find_element(By.ID, "f-published_year-min")
    low.send_keys("2004", Keys.ENTER)
    _results_change(d, titles)
    assert "f.published_year.min=2004" in d.current_url
    bylines = d.execute_script(
        "return [...document.querySelectorAll('#results .byline')].map(e => e.textContent)"
    )
    years = [b.rsplit("·", 1)[-1].strip() for b in bylines]
    assert years and all(int(y) >= 2004 for y in years), years
    # nothing overflows sideways at phone width
    overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone screen"
    d.save_screenshot(str(ARTIFACTS / "browser-phone.png"))


def test_projection_page_draws_hovers_and_finds_offline(browser, tmp_path: Path) -> None:  # noqa: ANN001
    """The page `embedscope project` writes, opened from disk: the map is drawn, hovering a point
    shows its title, the search box highlights matching titles."""
    from selenium.webdriver.common.action_chains import ActionChains

    from embedscope.projection import point_data, project, write_html

    col = Collection.create("proj", tmp_path)
    col.ingest(pd.read_csv(BOOKS).head(150), id_field="isbn13", template="{title}. {description}",
               metadata=["title", "categories"])  # fmt: skip
    col.embed("bm25")  # sparse: reduced by SVD, then PCA; cheap
    points = point_data(col, project(col, "bm25", method="pca"), "categories")
    page = write_html(points, tmp_path / "map.html")
    d = browser
    d.get(page.as_uri())
    canvas = _wait(d, lambda d: d.find_element(By.CSS_SELECTOR, "#map canvas"))
    drawn = d.execute_script(
        "const c = document.querySelector('#map canvas'); const px = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n"
    )
    assert drawn > 150  # at least a pixel per point
    legend = d.find_element(By.CSS_SELECTOR, ".embedmap-legend").text
    assert legend.splitlines()[0].startswith(points["legend"][0]["label"].split(" (")[0])
    # hover the point the map drew for item 0 (offsets are from the canvas centre)
    x, y = d.execute_script("return map._screen(0)")
    rect = canvas.rect
    ActionChains(d).move_to_element_with_offset(
        canvas, x - rect["width"] / 2, y - rect["height"] / 2
    ).perform()
    tip = _wait(
        d, lambda d: (t := d.find_element(By.CSS_SELECTOR, ".embedmap-tip")).is_displayed() and t.text
    )
    # the nearest point within 8 px: item 0's title unless another point is drawn at the same spot
    near = [t for t, px, py in zip(points["titles"], *d.execute_script(
        "return [points.x.map((_, i) => map._screen(i)[0]), points.x.map((_, i) => map._screen(i)[1])]"
    ), strict=True) if (px - x) ** 2 + (py - y) ** 2 < 64]  # fmt: skip
    # the tip's first line is the title; authors, year and categories follow
    assert tip.splitlines()[0] in near and points["titles"][0] in near
    word = "the"
    expected = sum(word in t.lower() for t in points["titles"])
    d.find_element(By.ID, "find").send_keys(word)
    _wait(d, lambda d: d.find_element(By.ID, "found").text == f"{expected} matching")
    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / "projection-page.png"))


def _ready(d, url: str) -> None:  # noqa: ANN001
    d.get(url)
    _wait(d, lambda d: d.execute_script("return document.body.dataset.ready"))


def _clicks(d) -> int:  # noqa: ANN001
    return int(d.execute_script("return document.body.dataset.clicks || 0"))


def test_experiment_banner_and_clicks_by_mouse_and_keyboard(server: str, root: Path, browser) -> None:  # noqa: ANN001
    """While an experiment runs, the page says so, the default search shows its interleaved list,
    and opening a result by mouse or by Enter on the focused card logs a click."""
    from embedscope.experiments import Experiments
    from embedscope.experiments.eventlog import read_events

    experiments = Experiments.of(Collection.open("books", root))
    exp = experiments.start("minilm", "hybrid", method="interleave", name="browser")
    log = experiments.events_path(exp.name)
    try:
        d = browser
        _ready(d, server + "/")
        banner = d.find_element(By.ID, "experiment-banner")
        assert banner.is_displayed() and "browser" in banner.text and "interleave" in banner.text
        assert d.find_element(By.CSS_SELECTOR, "input[name=version][value='']").is_selected()
        query = "a detective solves murders in an english village"
        d.find_element(By.ID, "q").send_keys(query, Keys.ENTER)
        _wait(d, lambda d: len(_titles(d)) == 12)
        assert "experiment browser" in d.find_element(By.ID, "status").text
        session = d.execute_script("return localStorage.getItem('embedscope.session')")
        [impression] = [r for r in read_events(log).records if r["type"] == "impression"]
        cards = _cards(d)
        assert [c.get_attribute("data-id") for c in cards] == impression["ids"]
        assert impression["query"] == query and impression["user"] == session

        cards[0].find_element(By.CSS_SELECTOR, ".title").click()  # the mouse
        _wait(d, lambda d: _clicks(d) == 1)
        cards[2].send_keys(Keys.ENTER)  # the keyboard: Enter on the focused card
        _wait(d, lambda d: _clicks(d) == 2)
        assert d.execute_script("return document.activeElement.dataset.position") == "2"
        clicks = [r for r in read_events(log).records if r["type"] == "click"]
        assert [(c["position"], c["item"]) for c in clicks] == [(p, impression["ids"][p]) for p in (0, 2)]
        assert all(c["query"] == query and c["user"] == session for c in clicks)
        assert [c["side"] for c in clicks] == [impression["teams"][p] for p in (0, 2)]
        # an opened card shows the item's full text
        _wait(d, lambda d: "expanded" in cards[2].get_attribute("class"))
        d.save_screenshot(str(ARTIFACTS / "browser-experiment.png"))

        # a search that names a version is not part of the experiment: nothing is logged for it
        d.find_element(By.CSS_SELECTOR, "input[name=version][value=bm25]").click()
        _wait(d, lambda d: "bm25" in d.find_element(By.ID, "status").text)
        assert "experiment" not in d.find_element(By.ID, "status").text
        _cards(d)[0].send_keys(Keys.ENTER)
        time.sleep(0.5)  # give a (wrong) click request time to arrive
        assert len(read_events(log).records) == 3 and _clicks(d) == 2
    finally:
        experiments.stop(exp.name)
    _ready(d, server + "/")
    assert not d.find_element(By.ID, "experiment-banner").is_displayed()


def test_map_highlights_the_results_at_phone_width(server: str, browser) -> None:  # noqa: ANN001
    """The projection view: the collection's map (PCA, computed on first use) with the current
    query's results highlighted; a point opens more like it."""
    from selenium.webdriver.common.action_chains import ActionChains

    d = browser
    d.set_window_size(390, 844)
    _ready(d, server + "/?q=dragons+and+magic")
    _wait(d, lambda d: len(_titles(d)) == 12)
    d.find_element(By.CSS_SELECTOR, "#map-box summary").click()
    status = _wait(d, lambda d: (t := d.find_element(By.ID, "map-status").text) and "highlighted" in t and t)
    assert "PCA of 200 items of minilm" in status and "12 of the 12 results" in status
    ids = d.execute_script("return [...document.querySelectorAll('#results .card')].map(c => c.dataset.id)")
    marked = d.execute_script("const v = map.view; return [...v.marked].map(i => v.points.ids[i])")
    assert sorted(marked) == sorted(ids)
    # the highlighted dots are drawn (dark outlines over the dimmed points)
    dark = d.execute_script(
        "const c = document.querySelector('#map canvas'); const px = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 0; i < px.length; i += 4) if (px[i + 3] > 200 && px[i] + px[i + 1] + px[i + 2] < 90)"
        " n++;"
        "return n"
    )
    assert dark > 12 * 10, dark
    overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone screen"
    d.save_screenshot(str(ARTIFACTS / "browser-map.png"))
    # clicking a highlighted point shows more like that item
    i = d.execute_script("return [...map.view.marked][0]")
    x, y = d.execute_script(f"return map.view._screen({i})")
    canvas = d.find_element(By.CSS_SELECTOR, "#map canvas")
    rect = canvas.rect
    ActionChains(d).move_to_element_with_offset(
        canvas, x - rect["width"] / 2, y - rect["height"] / 2
    ).click().perform()
    _wait(d, lambda d: "like=" in d.current_url)
