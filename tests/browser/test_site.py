"""Open the built site in Debian's headless Chromium, the way a reader would: served over HTTP."""
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from bs4 import BeautifulSoup
from playwright.sync_api import sync_playwright

from repro.harness import book, catalog, checkout

HTML = (checkout.root() / book.SITE).parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """The built site on a local HTTP server; yields its base URL."""
    if not (HTML / "index.html").exists():
        pytest.fail(f"no site at {HTML}: run `repro book` (make book) first")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(site):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        b.base = site
        yield b
        b.close()


def local(url, browser):
    return url.startswith(browser.base)


def open_page(browser, relative):
    """Open a page; return it and the local requests that failed (the site is offline-first:
    remote badges may fail here, the site's own files may not)."""
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda r: failed.append(r.url) if local(r.url, browser) else None)
    page.on("response", lambda r: failed.append(r.url) if local(r.url, browser) and r.status >= 400 else None)
    page.goto(browser.base + relative, wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, failed


def broken_internal_links(page, browser):
    broken = []
    for href in set(page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")):
        if local(href, browser):
            path = HTML / urlparse(href).path.lstrip("/")
            if not (path.is_file() or (path / "index.html").is_file()):
                broken.append(href)
    return broken


def broken_images(page, browser):
    """Local images that did not load (a remote badge cannot load offline)."""
    return [src for src in page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")
        if local(src, browser) or src.startswith("data:")]


def test_landing_page(browser):
    page, failed = open_page(browser, "index.html")
    assert "Reproduced" in page.title()
    assert page.locator("text=claims that a machine checks").count() >= 1
    assert not failed and not broken_images(page, browser) and not broken_internal_links(page, browser)


def test_catalog_lists_every_paper(browser):
    page, failed = open_page(browser, "book/catalog.html")
    rows = page.locator("table tbody tr").count()
    assert rows == len(catalog.papers())
    assert not failed and not broken_internal_links(page, browser)


def test_scorecard(browser):
    page, _ = open_page(browser, "book/scorecard.html")
    assert page.locator("table tbody tr").count() >= len(catalog.with_notebooks())
    assert not broken_internal_links(page, browser)


def one_per_theme():
    """A paper page of every theme: what the browser opens (every page is read as HTML below)."""
    first = {}
    for paper in catalog.with_notebooks():
        first.setdefault(paper.theme, paper)
    return list(first.values())


@pytest.mark.parametrize("paper", one_per_theme(), ids=lambda p: p.theme)
def test_paper_page_in_the_browser(browser, paper):
    page, failed = open_page(browser, paper.notebook.replace(".ipynb", ".html"))
    assert page.locator("img").count() >= 2, "a paper page shows its figures"
    assert not broken_images(page, browser), "every figure loads"
    assert page.locator("table.repro-claims tbody tr").count() >= 2
    badge = page.eval_on_selector("img[alt='Open In Colab']", "e => e.src")
    assert local(badge, browser), f"the Colab badge {badge} is served by the site itself"
    assert not broken_internal_links(page, browser)
    assert not failed, f"requests failed: {failed}"
    # math is typeset by the MathJax copy served from the site itself (no CDN, works offline)
    page.wait_for_function("() => document.querySelector('.math') === null"
                           " || document.querySelector('mjx-container') !== null", timeout=15000)


@pytest.mark.parametrize("paper", catalog.with_notebooks(), ids=lambda p: p.slug)
def test_every_paper_page_has_its_figures_claims_and_links(paper):
    """The built HTML of every paper page, read without a browser (fast at hundreds of pages)."""
    path = HTML / paper.notebook.replace(".ipynb", ".html")
    soup = BeautifulSoup(path.read_text(), "html.parser")
    images = [img["src"] for img in soup.find_all("img") if not img["src"].startswith("data:")]
    assert len(soup.find_all("img")) >= 2, "a paper page shows its figures"
    assert all((path.parent / src).resolve().is_file() for src in images if "://" not in src), images
    rows = soup.select("table.repro-claims tbody tr:not(.kind)")  # claims, without the kind headers
    assert len(rows) >= 3 and len(soup.select("table.repro-claims td.measured")) == len(rows)
    links = [a["href"].split("#")[0] for a in soup.find_all("a", href=True)]
    missing = [h for h in links if h and "://" not in h and not h.startswith("mailto:")
               and not (path.parent / h).resolve().exists()]
    assert not missing, f"internal links that lead nowhere: {missing}"
