"""Fixtures for checking the built book site in a real headless Chromium.

The site (`_build/html`) is served over HTTP on the loopback interface, as a reader's browser would
load it, and driven through selenium with Debian's chromium and chromium-driver.
"""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
# What the site test saw, kept by CI: screenshots of figures and widgets, and measurements
SITE_REPORT = ROOT / "_build" / "site-report"
SCREENSHOTS = SITE_REPORT / "screenshots"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(condition: bool, message: str):
    "Skip with `message` on a developer's machine; in CI a missing piece is a failure, never a skip."
    if not condition:
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def site_url():
    _need((SITE / "index.html").exists(),
          f"{SITE}/index.html is missing: build the book first "
          "(.venv/bin/jupyter-book build . -W -n --keep-going, or bash scripts/test.sh).")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def start_chromium(*extra_flags: str):
    "A headless Chromium driven by selenium, with `extra_flags` added to the usual ones."
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    _need(chromium is not None and driver is not None,
          "Chromium is not installed, so the browser test of the book site is skipped. Enable it "
          "with: sudo apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1600", *extra_flags):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    drv.set_page_load_timeout(180)  # chapter 9 compiles WebAssembly and loads three models
    return drv


@pytest.fixture(scope="session")
def browser():
    drv = start_chromium()
    yield drv
    drv.quit()


@pytest.fixture(scope="session")
def first_loads():
    """Page -> (console entries, title) of each page the reader's report loaded (test_reader.py
    runs before test_site.py), so that the console test need not load the page a second time."""
    return {}
