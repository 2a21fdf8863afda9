"""`nos report`'s HTML in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): the page loads with no console error, asks the network for nothing but the file itself, shows
markup from a store or a folder name as text, and its screenshot is saved (the path is printed).

Skipped, saying why, where Chromium, chromedriver or selenium is missing; `.ci/run` installs them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from search.cli.report import write_library_report, write_report
from tests.report_helpers import MARKUP, RUN_NAME, make_report_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Chromium and chromedriver on PATH (Debian: apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # The Debian chromedriver by path: selenium's own manager would try to download a driver.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def _open(driver, page: Path) -> tuple[list[dict], list[str]]:
    """Load the file; its SEVERE console entries and the URLs of every request the page made."""
    driver.get_log("browser"), driver.get_log("performance")  # drop what an earlier page left
    driver.get(page.resolve().as_uri())
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    return severe, requests


def _screenshot(driver, path: Path) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height, 800), 12000))  # the whole page, bounded
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_run_report_in_chromium(browser, tmp_path):
    first, second, records = make_report_runs(tmp_path)
    page = write_report([first, second], tmp_path / "report.html", directory=records)
    severe, requests = _open(browser, page)
    assert severe == [], severe
    # Nothing but the file: a data: URL (the empty icon) is no request to the network.
    assert [u for u in requests if u != page.resolve().as_uri() and not u.startswith("data:")] == []
    assert page.resolve().as_uri() in requests
    assert browser.execute_script("return document.scripts.length") == 0
    assert browser.execute_script("return document.querySelectorAll('svg').length") >= 4
    text = browser.find_element("tag name", "body").text
    assert MARKUP in text and RUN_NAME in text  # shown as text, not run as markup
    assert browser.execute_script("return document.querySelectorAll('img, b').length") == \
        browser.execute_script("return document.querySelectorAll('td b').length")  # only ours
    assert "does not beat adam" in text and "Search progress" in text and "Controller metrics" in text
    shot = _screenshot(browser, tmp_path / "report.png")
    assert shot.stat().st_size > 10_000


def test_library_report_in_chromium(browser, tmp_path):
    _, _, records = make_report_runs(tmp_path)
    page = write_library_report(tmp_path / "rules.html", records)
    severe, requests = _open(browser, page)
    assert severe == [], severe
    assert [u for u in requests if u != page.resolve().as_uri() and not u.startswith("data:")] == []
    text = browser.find_element("tag name", "body").text
    assert "nos_report_1" in text and "transfer to convnet" in text
    _screenshot(browser, tmp_path / "rules.png")
