"""The built tutorial site, read in a real browser (headless Chromium through Playwright).

Run after the README's docs command has built ``docs/_build/html`` (or point
``SDA_SITE`` at another build), with ``pip install -e ".[docs,site]"``:
``python -m pytest tests/test_site.py -m site``. The system's Chromium is used
(``SDA_CHROMIUM``, else ``chromium`` on the PATH); nothing is downloaded, and
requests to other hosts are refused, so the site is checked as an offline reader
sees it. A missing site or browser fails the tests: they never skip.

Every page must load without a JavaScript error or a failed request, every image
must decode, every link inside the site must reach an existing page and anchor,
and the header's pieces (site title, menu items, buttons) must neither overlap one
another nor the article, at a desktop width and at a narrow one. Each page of the
learning path (the index's toctree captioned "Learning path") must offer its
notebook, and the downloaded notebook must run top to bottom in an empty folder.
"""

import functools
import http.server
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.site

REPO = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("SDA_SITE") or REPO / "docs" / "_build" / "html")
SHOTS = SITE.parent / "site-test"  # screenshots of a page whose header fails, beside the build
WIDTHS = (1280, 800)  # a laptop screen, and below the theme's 960 px breakpoint where the menu folds
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTEBOOK_TIMEOUT = 900  # seconds per cell: a generous bound, only there so that a hung kernel ends


def learning_path() -> list[str]:
    """The documents of docs/index.md's toctree captioned "Learning path", in reading order."""
    index = (REPO / "docs" / "index.md").read_text()
    for block in re.findall(r"```\{toctree\}\n(.*?)```", index, flags=re.S):
        lines = block.splitlines()
        if any(re.fullmatch(r":caption:\s*Learning path\s*", line.strip()) for line in lines):
            return [line.strip() for line in lines if line.strip() and not line.strip().startswith(":")]
    raise AssertionError("docs/index.md has no toctree captioned 'Learning path'")


def chromium() -> str:
    """The system Chromium: $SDA_CHROMIUM, else chromium (or chromium-browser) on the PATH."""
    found = os.environ.get("SDA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "no Chromium found: install Debian's chromium (apt-get install chromium) "
            "or set SDA_CHROMIUM to a Chromium or Chrome executable"
        )
    return found


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output to the failures
        pass


@pytest.fixture(scope="module")
def site_url():
    """The built site, served on localhost from a thread."""
    if not (SITE / "index.html").is_file():
        pytest.fail(
            f"no built site in {SITE}: build it first with the README's docs command "
            "(sphinx-build -W -b html docs docs/_build/html), or set SDA_SITE"
        )
    handler = functools.partial(QuietHandler, directory=SITE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[site]'")
    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield chrome
        chrome.close()


class Reader:
    """One browser tab that records what went wrong while pages load."""

    def __init__(self, browser, site_url: str, width: int):
        self.site_url = site_url
        self.context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        # An offline reader: nothing leaves localhost.
        self.context.route(lambda url: not url.startswith(site_url), lambda route: route.abort())
        self.page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        self.page.on("console", self._console)
        self.page.on("response", self._response)

    def _internal(self, url: str) -> bool:
        return url.startswith(self.site_url)

    def _console(self, message):
        # A refused request to another host (a CDN) is reported as a console error too; it is
        # the offline reading, not a fault of the site, and local failures are caught below.
        source = message.location.get("url", "")
        if message.type == "error" and not (
            message.text.startswith("Failed to load resource") and not self._internal(source)
        ):
            self.problems.append(f"console error: {message.text} ({source})")

    def _response(self, response):
        if self._internal(response.url) and response.status >= 400:
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def open(self, path: str):
        self.problems.clear()
        self.page.goto(self.site_url + path, wait_until="load")
        return self.page

    def close(self):
        self.context.close()


def site_pages() -> list[str]:
    """Every HTML page of the site; _static/ holds the theme's files, some of them raw templates."""
    return sorted(
        path.relative_to(SITE).as_posix()
        for path in SITE.rglob("*.html")
        if path.relative_to(SITE).parts[0] != "_static"
    )


# Every <img> made to load now (not lazily) and decoded; the sources that did not decode.
BROKEN_IMAGES_JS = """async () => {
    const broken = [];
    for (const img of document.images) {
        img.loading = "eager";
        try { await img.decode(); } catch (e) { }
        if (!(img.complete && img.naturalWidth > 0)) broken.push(img.currentSrc || img.src);
    }
    return broken;
}"""

# The absolute address of every link, and the anchors the page defines.
LINKS_AND_ANCHORS_JS = """() => ({
    links: Array.from(document.querySelectorAll("a[href]"), a => a.href),
    anchors: Array.from(document.querySelectorAll("[id], a[name]"), e => e.id || e.name),
})"""

# The visible pieces of the header, each with the box its text or content covers.
HEADER_PIECES_JS = """() => {
    const header = document.querySelector("header.bd-header");
    const box = r => ({left: r.left, top: r.top, right: r.right, bottom: r.bottom});
    const visible = e => {
        const r = e.getBoundingClientRect(), s = getComputedStyle(e);
        return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
    };
    const extent = e => {  // the text's own box: a title that overflows its box still counts
        const range = document.createRange();
        range.selectNodeContents(e);
        const r = range.getBoundingClientRect(), o = e.getBoundingClientRect();
        return box({left: Math.min(r.left, o.left), top: Math.min(r.top, o.top),
                    right: Math.max(r.right, o.right), bottom: Math.max(r.bottom, o.bottom)});
    };
    const pieces = [];
    const add = (name, e) => { if (e && visible(e)) pieces.push({name, ...extent(e)}); };
    add("site title", header.querySelector(".navbar-brand"));
    header.querySelectorAll(".navbar-header-items .navbar-nav > li.nav-item").forEach(
        (e, i) => add(`menu item ${i + 1} "${e.innerText.trim()}"`, e));
    header.querySelectorAll(".navbar-header-items__end > .navbar-item, .navbar-persistent--container, "
                            + ".navbar-persistent--mobile, .primary-toggle, .secondary-toggle").forEach(
        (e, i) => add(`button ${i + 1} (${e.className})`, e));
    const article = document.querySelector(".bd-article, main");
    return {header: box(header.getBoundingClientRect()), pieces,
            article: article ? box(article.getBoundingClientRect()) : null};
}"""


def overlap(a: dict, b: dict, slack: float = 1.0) -> bool:
    return (
        min(a["right"], b["right"]) - max(a["left"], b["left"]) > slack
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > slack
    )


def header_problems(layout: dict) -> list[str]:
    """Pieces of the header that overlap each other, leave the header, or cover the article."""
    pieces, header, article = layout["pieces"], layout["header"], layout["article"]
    problems = []
    if not any(piece["name"] == "site title" for piece in pieces):
        problems.append("the site title is not visible")
    for i, first in enumerate(pieces):
        problems += [
            f"{first['name']} overlaps {second['name']}"
            for second in pieces[i + 1 :]
            if overlap(first, second)
        ]
        if first["bottom"] > header["bottom"] + 1 or first["top"] < header["top"] - 1:
            problems.append(f"{first['name']} sticks out of the header")
    if article is None:
        problems.append("no article element")
    elif article["top"] < header["bottom"] - 1:
        problems.append("the header covers the top of the article")
    menu_rows = {round((p["top"] + p["bottom"]) / 2) for p in pieces if p["name"].startswith("menu item")}
    if max(menu_rows, default=0) - min(menu_rows, default=0) > 2:
        problems.append(f"the menu wraps onto {len(menu_rows)} rows")
    return problems


@pytest.fixture(scope="module")
def pages(site_url) -> list[str]:
    found = site_pages()
    assert "index.html" in found
    return found


def test_every_page_loads_clean(browser, site_url, pages):
    """No JavaScript error, no failed request, every image decoded, every internal link resolves."""
    reader = Reader(browser, site_url, WIDTHS[0])
    problems, links, anchors = [], {}, {}
    try:
        for path in pages:
            page = reader.open(path)
            broken = page.evaluate(BROKEN_IMAGES_JS)
            found = page.evaluate(LINKS_AND_ANCHORS_JS)
            problems += [f"{path}: {problem}" for problem in reader.problems]
            problems += [f"{path}: image not decoded: {src}" for src in broken]
            anchors[site_url + path] = set(found["anchors"])
            for link in found["links"]:
                if link.startswith(site_url):
                    links.setdefault(link, path)
    finally:
        reader.close()
    for link, source in links.items():
        target, _, anchor = link.partition("#")
        target = target.split("?")[0]
        if target.endswith("/"):
            target += "index.html"
        if target not in anchors:  # not a page visited above: a download, a source file, an image
            try:
                with urllib.request.urlopen(target) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:
                problems.append(f"{source}: link to {link} gives HTTP {exc.code}")
                continue
            if target.endswith(".ipynb"):
                problems += [f"{source}: {link} is not a notebook: {why}" for why in notebook_problems(body)]
        elif anchor and urllib.parse.unquote(anchor) not in anchors[target]:
            problems.append(f"{source}: link to {link}: no such anchor")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("width", WIDTHS)
def test_header_does_not_overlap(browser, site_url, pages, width):
    """The site title, the menu and the buttons each keep their own place, on every page."""
    reader = Reader(browser, site_url, width)
    problems = []
    try:
        for path in pages:
            page = reader.open(path)
            found = header_problems(page.evaluate(HEADER_PIECES_JS))
            if found and not problems:  # the first bad page, for a person to look at
                SHOTS.mkdir(parents=True, exist_ok=True)
                shot = SHOTS / f"{path.replace('/', '_')}-{width}.png"
                page.screenshot(path=shot)
                problems.append(f"(screenshot: {shot})")
            problems += [f"{path} at {width} px: {problem}" for problem in found]
    finally:
        reader.close()
    assert not problems, "\n".join(problems)


def notebook_problems(content: bytes) -> list[str]:
    """Why ``content`` is not a valid notebook with code in it (none: it is one)."""
    import nbformat

    try:
        notebook = nbformat.reads(content.decode(), as_version=4)
        nbformat.validate(notebook)
    except Exception as exc:  # nbformat raises several types for bad JSON or a bad schema
        return [f"{type(exc).__name__}: {str(exc).splitlines()[0]}"]
    if not any(cell.cell_type == "code" for cell in notebook.cells):
        return ["no code cell"]
    return []


@pytest.mark.parametrize("docname", learning_path())
def test_learning_path_notebook_runs_on_its_own(
    browser, site_url, shared_data, docname, tmp_path, monkeypatch
):
    """The page's download link gives its notebook, which runs top to bottom in an empty folder."""
    import nbclient
    import nbformat

    reader = Reader(browser, site_url, WIDTHS[0])
    try:
        page = reader.open(f"{docname}.html")
        link = page.get_by_role("link", name="Download this page as a notebook")
        assert link.count() == 1, f"{docname}.html has {link.count()} notebook download links"
        with page.expect_download() as download:
            link.click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert not reader.problems, "\n".join(reader.problems)
    finally:
        reader.close()
    assert saved.suffix == ".ipynb"
    assert not notebook_problems(saved.read_bytes()), notebook_problems(saved.read_bytes())
    notebook = nbformat.read(saved, as_version=4)
    for cell in notebook.cells:  # run the learner's copy afresh, not the build's outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    monkeypatch.setenv("SDA_DATA", str(shared_data))
    workdir = tmp_path / "run"
    workdir.mkdir()
    started = time.perf_counter()
    nbclient.NotebookClient(
        notebook,
        timeout=NOTEBOOK_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    ).execute()
    print(f"{docname}.ipynb ran in {time.perf_counter() - started:.0f} s")
    ran = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert ran and all(cell.execution_count for cell in ran), "a code cell did not run"
