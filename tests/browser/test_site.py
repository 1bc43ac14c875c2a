"""Open the built site in Debian's headless Chromium, the way a reader would."""
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from playwright.sync_api import sync_playwright

from repro import book, catalog

HTML = book.SITE / "_build" / "html"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no site at {HTML}: run `repro book` (make book) first")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, relative):
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto((HTML / relative).as_uri(), wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, failed


def broken_internal_links(page):
    broken = []
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
        url = urlparse(href)
        if url.scheme == "file" and not Path(unquote(url.path)).exists():
            broken.append(href)
    return broken


def broken_images(page):
    return page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")


def test_landing_page(browser):
    page, failed = open_page(browser, "index.html")
    assert "Reproduced" in page.title()
    assert page.locator("text=claims that a machine checks").count() >= 1
    assert not failed and not broken_images(page) and not broken_internal_links(page)


def test_catalog_lists_every_paper(browser):
    page, failed = open_page(browser, "book/catalog.html")
    rows = page.locator("table tbody tr").count()
    assert rows == len(catalog.papers())
    assert not failed and not broken_internal_links(page)


def test_scorecard(browser):
    page, _ = open_page(browser, "book/scorecard.html")
    assert page.locator("table tbody tr").count() >= len(catalog.with_notebooks())
    assert not broken_internal_links(page)


@pytest.mark.parametrize("paper", catalog.with_notebooks(), ids=lambda p: p.slug)
def test_paper_page(browser, paper):
    page, failed = open_page(browser, paper.notebook.replace(".ipynb", ".html"))
    figures = page.locator("img").count()
    assert figures >= 2, "a paper page shows its figures"
    assert not broken_images(page), "every figure loads"
    claims = page.locator("table:has(th:text('claim')):has(th:text('result'))")
    assert claims.count() == 1 and claims.locator("tbody tr").count() >= 2
    assert not broken_internal_links(page)
    assert not failed, f"requests failed: {failed}"
    # math is typeset by the MathJax copy served from the site itself (no CDN, works offline)
    page.wait_for_function("() => document.querySelector('.math') === null"
                           " || document.querySelector('mjx-container') !== null", timeout=15000)
