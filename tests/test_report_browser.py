"""The report in a real browser: Debian's headless Chromium driven by chromedriver (selenium).

Skipped with the reason when Chromium, chromedriver or selenium is absent, unless
REQUIRE_BROWSER=1 (CI sets it), where absence is a failure. REPORT_SCREENSHOT_DIR=DIR keeps
the screenshot outside pytest's temporary directory.
"""

import base64
import os
import shutil
import tempfile

import pytest
from helpers import report_fixtures as fx
from helpers.report_html import decode_png

from report.cli import main as report_main

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Headless, no sandbox (CI runs as root), nothing that reaches the network on its own.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1400,1000",
]


def need_browser():
    missing = [
        name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path
    ]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = "browser test needs %s" % ", ".join(missing)
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (REQUIRE_BROWSER=1)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def driver():
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="report-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + ["--user-data-dir=" + profile]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def matrix_report(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("browser") / "browserstudy")
    manifest, states = fx.build_matrix_study(root)
    out = os.path.join(root, "report")
    assert report_main(["--manifest", manifest, "--out", out]) == 0
    return os.path.join(out, "report.html"), states


def open_page(driver, path):
    """Load a file and return the console entries it produced (the log is read-and-clear)."""
    driver.get_log("browser")
    driver.get("file://" + os.path.abspath(path))
    return driver.get_log("browser")


def problems(entries):
    return [e for e in entries if e["level"] in ("SEVERE", "WARNING")]


def test_console_errors_would_be_caught(driver, tmp_path):
    """Control: the check below can fail (a script error and a missing file are reported)."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><script>console.error('x'); missing();</script>"
        "<img src='absent.png'></body></html>"
    )
    assert len(problems(open_page(driver, str(page)))) >= 2


def test_report_opens_without_console_errors(driver, matrix_report, tmp_path):
    path, _ = matrix_report
    entries = open_page(driver, path)
    assert problems(entries) == [], entries
    # every figure decoded by the browser, and nothing fetched: the page is self-contained
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"
    )
    assert len(images) == 6 and all(done and width > 300 for done, width in images)
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(height, 16000))
    shot_dir = os.environ.get("REPORT_SCREENSHOT_DIR") or str(tmp_path)
    os.makedirs(shot_dir, exist_ok=True)
    shot = os.path.join(shot_dir, "report.png")
    assert driver.save_screenshot(shot)
    driver.set_window_size(1400, 1000)
    with open(shot, "rb") as f:
        image = decode_png("data:image/png;base64," + base64.b64encode(f.read()).decode())
    assert image.height >= min(height, 16000) * 0.9 and len(image.getcolors(1 << 24)) > 100


def test_status_filter_shows_one_state(driver, matrix_report):
    from selenium.webdriver.common.by import By

    path, states = matrix_report
    open_page(driver, path)
    visible = (
        "return Array.from(document.querySelectorAll('#cells-table tbody'))"
        ".filter(b => !b.hidden).map(b => b.dataset.cell);"
    )
    assert len(driver.execute_script(visible)) == sum(len(v) for v in states.values())
    driver.find_element(By.CSS_SELECTOR, '#filters button[data-status="failed"]').click()
    assert driver.execute_script(visible) == states["failed"]
    driver.find_element(By.CSS_SELECTOR, '#filters button[data-status="all"]').click()
    assert len(driver.execute_script(visible)) == sum(len(v) for v in states.values())
    assert problems(driver.get_log("browser")) == []
