"""Open the built site in Debian's headless Chromium, the way a reader would: served over HTTP."""
import csv
import functools
import io
import json
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
from bs4 import BeautifulSoup
from playwright.sync_api import sync_playwright

from repro.harness import book, catalog, checkout, contract, pages

HTML = (checkout.root() / book.SITE).parent
CHROMIUM = os.environ.get("REPRO_CHROMIUM", "/usr/bin/chromium")  # CI: Playwright's build
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


def test_the_gallery_has_a_card_per_reproduction_with_its_thumbnail(browser):
    page, failed = open_page(browser, "index.html")
    cards = page.locator(".repro-card")
    papers = catalog.with_notebooks()
    assert cards.count() == len(papers)
    hrefs = set(page.eval_on_selector_all(".repro-card a", "els => els.map(e => e.href)"))
    pages = {browser.base + p.notebook.replace(".ipynb", ".html") for p in papers}
    assert hrefs == pages, "every card links to its paper's page, and every page has a card"
    thumbnails = page.locator(".repro-card img")
    assert thumbnails.count() == len(papers), "every card shows its notebook's key figure"
    assert not broken_images(page, browser) and not failed
    counts = page.locator(".repro-count").all_inner_texts()
    for status in catalog.STATUSES:
        n = sum(p.status == status for p in catalog.papers())
        assert any(t.split() == [str(n), *status.split()] for t in counts), (status, counts)


def test_the_explorer_filters_the_claims_in_the_browser(browser):
    page, failed = open_page(browser, "book/scorecard.html")
    assert not failed, f"requests failed: {failed}"
    page.wait_for_selector(".tabulator-row")
    total = len(json.loads(page.locator("#repro-scorecard").inner_text()))
    count = page.locator("#explorer-count")
    assert count.inner_text() == f"{total} of {total} claims"
    groups = page.locator(".tabulator-group").count()
    assert groups == len(catalog.with_notebooks()), "one section per paper"
    page.select_option("#filter-kind", "sanity")
    sanity = int(count.inner_text().split()[0])
    assert 0 < sanity < total
    kinds = page.eval_on_selector_all(".tabulator-row .tabulator-cell[tabulator-field='kind']",
                                      "els => els.map(e => e.innerText.trim())")
    assert kinds and set(kinds) == {"sanity"}
    page.select_option("#filter-result", "holds")
    assert int(count.inner_text().split()[0]) <= sanity
    page.select_option("#filter-kind", "")
    page.select_option("#filter-result", "")
    assert count.inner_text() == f"{total} of {total} claims"


def test_the_scorecard_downloads_are_well_formed(browser):
    stored = sum(len(contract.stored_claims(contract.read(p.notebook_path)) or [])
                 for p in catalog.with_notebooks())
    page, _ = open_page(browser, "book/scorecard.html")
    for link in ("CSV", "JSON"):
        href = page.get_by_role("link", name=link, exact=True).get_attribute("href")
        response = page.request.get(urljoin(page.url, href))
        assert response.ok, href
        if link == "CSV":
            rows = list(csv.DictReader(io.StringIO(response.text())))
            assert list(rows[0]) == pages.SCORECARD_COLUMNS
        else:
            rows = response.json()
        assert len(rows) == stored and all(r["statement"] and r["result"] for r in rows)


def test_the_statistics_page_has_a_row_per_notebook(browser):
    page, failed = open_page(browser, "book/statistics.html")
    rows = page.locator("table tbody tr")
    assert rows.count() == len(catalog.with_notebooks()) and not failed
    assert all(" s" in text for text in rows.locator("td:nth-child(2)").all_inner_texts())
    assert not broken_internal_links(page, browser)


def every_page():
    """The site's pages, less Sphinx's index and search pages and the root's redirect."""
    return sorted(str(p.relative_to(HTML)) for p in HTML.rglob("*.html")
                  if not p.relative_to(HTML).parts[0].startswith("_")
                  and p.name not in ("genindex.html", "search.html")
                  and p.relative_to(HTML) != Path("index.html"))


def test_no_page_scrolls_sideways_at_1280_px(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    wide = {}
    for relative in every_page():
        page.goto(browser.base + relative, wait_until="load")
        overflow = page.evaluate("""() => {
            const root = document.documentElement;
            const code = [...document.querySelectorAll('div.highlight pre')]
                .filter(e => e.scrollWidth > e.clientWidth + 1).length;
            return {page: root.scrollWidth > root.clientWidth, code: code};
        }""")
        if overflow["page"] or overflow["code"]:
            wide[relative] = overflow
    assert not wide, f"pages that scroll sideways at 1280 px: {wide}"


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
    box = soup.select_one("div.repro-summary")
    assert box is not None, "the summary box opens the page"
    assert paper.status in box.get_text() and "findings hold" in box.get_text()
    hrefs = [a["href"] for a in box.find_all("a", href=True)]
    assert any(h.startswith("https://colab.research.google.com/") for h in hrefs)
    assert all((path.parent / h).resolve().is_file() for h in hrefs if "://" not in h), hrefs
    links = [a["href"].split("#")[0] for a in soup.find_all("a", href=True)]
    missing = [h for h in links if h and "://" not in h and not h.startswith("mailto:")
               and not (path.parent / h).resolve().exists()]
    assert not missing, f"internal links that lead nowhere: {missing}"
