"""The built book, as a reader sees it: pages load cleanly, navigation, search, figures, math."""
import re
import time

import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import ROOT, SCREENSHOTS, SITE


def toc_pages() -> list[str]:
    "Every page listed in _toc.yml, as a path like 'nbs/02_text_data'."
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [ch["file"] for ch in part["chapters"]]
        pages += [s["file"] for ch in part["chapters"] for s in ch.get("sections", [])]
    return pages


def load(browser, url: str, settle: bool = True):
    """Open `url`, wait for it to load, and return the browser console entries it produced.
    `settle=False` where no console entry is read: the half second for scripts deferred to after
    load is spent once a page, by the load whose entries the console test reads."""
    browser.get_log("browser")  # drop entries from earlier pages
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")
    if settle:
        time.sleep(0.5)  # scripts deferred to after load (search index, MathJax) report here
    return browser.get_log("browser")


def own_errors(entries, site_url: str) -> list[str]:
    "Console errors raised by the site's own code, as opposed to failed loads of external resources."
    errors = []
    for e in entries:
        if e["level"] != "SEVERE":
            continue
        msg = e["message"]
        external = re.search(r"https?://", msg) and site_url not in msg
        if external:
            print(f"external resource failed to load (offline is expected here): {msg}")
        else:
            errors.append(msg)
    return errors


def page_title(browser) -> str:
    "The text of the loaded page's first heading ('' if it has none)."
    titles = browser.find_elements(By.CSS_SELECTOR, "article h1")
    return titles[0].text.strip() if titles else ""


@pytest.mark.parametrize("page", toc_pages())
def test_page_loads_without_js_errors(browser, site_url, first_loads, page):
    entries, title = first_loads.pop(page, None) or (load(browser, f"{site_url}/{page}.html"),
                                                     page_title(browser))
    assert title, f"{page} has no title"
    assert not own_errors(entries, site_url), f"JavaScript errors on {page}: {own_errors(entries, site_url)}"


def test_navigation_links_every_chapter(browser, site_url):
    load(browser, f"{site_url}/nbs/index.html", settle=False)
    hrefs = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "nav.bd-docs-nav a")}
    linked = {re.sub(r"\.html(#.*)?$", "", h.replace(site_url + "/", "")) for h in hrefs if h}
    missing = [p for p in toc_pages()[1:] if p not in linked]
    assert not missing, f"the navigation does not link {missing}"


def test_search_finds_chapter_2(browser, site_url):
    load(browser, f"{site_url}/search.html?q=SimpleTokenizerV2", settle=False)
    WebDriverWait(browser, 30).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#search-results ul.search li a")))
    results = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#search-results ul.search li a")]
    assert any("02_text_data" in r for r in results), results


def test_chapter_2_shows_its_plots(browser, site_url):
    load(browser, f"{site_url}/nbs/02_text_data.html")
    images = browser.find_elements(By.CSS_SELECTOR, "div.cell_output img")
    loaded = [img for img in images
              if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 100", img)]
    assert loaded, "chapter 2 shows no rendered figure"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.TAG_NAME, "body").screenshot(str(SCREENSHOTS / "02_text_data.png"))
    assert (SCREENSHOTS / "02_text_data.png").stat().st_size > 10_000


def test_equations_render_offline(browser, site_url):
    load(browser, f"{site_url}/nbs/02_sliding_windows.html", settle=False)
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "mjx-container")))
    scripts = [s.get_attribute("src") for s in browser.find_elements(By.TAG_NAME, "script")]
    mathjax = [s for s in scripts if s and "mathjax" in s.lower()]
    assert mathjax and all(s.startswith(site_url) for s in mathjax), f"MathJax not served locally: {mathjax}"


@pytest.mark.parametrize("page", toc_pages())
def test_figures_load_and_the_first_is_photographed(browser, site_url, page):
    if not (SITE / f"{page}.html").exists():
        pytest.skip(f"{page} was not built (test_page_loads_without_js_errors fails for it)")
    load(browser, f"{site_url}/{page}.html", settle=False)
    images = browser.find_elements(By.CSS_SELECTOR, "article img")
    broken = [img.get_attribute("src") for img in images if not browser.execute_script(
        "arguments[0].scrollIntoView(); return arguments[0].decode().then(() => true, () => false)",
        img) or not browser.execute_script("return arguments[0].naturalWidth > 0", img)]
    assert not broken, f"{page}: images that did not load: {broken}"
    figures = browser.find_elements(By.CSS_SELECTOR, "div.cell_output img, figure img")
    if figures:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.execute_script("arguments[0].scrollIntoView()", figures[0])
        shot = SCREENSHOTS / f"{page.replace('/', '_')}_first_figure.png"
        figures[0].screenshot(str(shot))
        assert shot.stat().st_size > 1000
