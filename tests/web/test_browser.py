"""End to end in headless Chromium (Debian's package) driven by Selenium.

Install the browser with `bash scripts/install_test_deps.sh`. Selenium is pointed
at /usr/bin/chromedriver and /usr/bin/chromium, so Selenium Manager never
downloads anything. Screenshots of every page at 1280 px and 375 px go to
bench/out/screenshots/ (gitignored).
"""
from __future__ import annotations

import base64
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from web_helpers import make_app

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[2] / "bench" / "out" / "screenshots"
WIDTHS = {"desktop": 1280, "phone": 375}
COUNT_SQL = "SELECT region, COUNT(*) AS purchases FROM purchases GROUP BY region"
BIG_SQL = "SELECT age_band, COUNT(*) AS purchases FROM purchases GROUP BY age_band"

pytestmark = pytest.mark.slow


def _require_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} "
                    f"not found); run `bash scripts/install_test_deps.sh`")
    return pytest.importorskip("selenium.webdriver", reason="selenium is not installed; "
                               "run `bash scripts/install_test_deps.sh`")


@pytest.fixture
def server(stack):
    """The web app on 127.0.0.1 (a free port) in a thread."""
    httpd = make_server("127.0.0.1", 0, make_app(stack), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    webdriver = _require_browser()
    from selenium.webdriver.chrome.service import Service as DriverService
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def _width(driver, width: int) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})


def _check_and_shoot(driver, name: str) -> None:
    """At both widths: no horizontal scrolling, and a full-page screenshot."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, width in WIDTHS.items():
        _width(driver, width)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                      {"captureBeyondViewport": True, "format": "png"})
        (SHOTS / f"{name}-{label}.png").write_bytes(base64.b64decode(shot["data"]))
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
    _width(driver, WIDTHS["desktop"])


def _submit(driver, button) -> None:
    """Click a submit button and wait until the next page has loaded.

    The old page is marked with a window property; the wait ends when a page
    without the mark has finished loading. Chromium can answer a command sent
    mid-navigation with an inspector error (a CI run failed on one inside
    Selenium's `staleness_of`), so the wait ignores WebDriver errors and asks again.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    driver.execute_script("window.__dpqOldPage = true;")
    button.click()
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return window.__dpqOldPage === undefined && document.readyState === 'complete';"))


def _by(driver):
    from selenium.webdriver.common.by import By
    return By


def _sign_in(driver, base: str, key: str) -> None:
    By = _by(driver)
    driver.get(base + "/login")
    driver.find_element(By.ID, "api_key").send_keys(key)
    _submit(driver, driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))


def _ask(driver, sql: str, spend: str, action: str) -> None:
    By = _by(driver)
    box = driver.find_element(By.ID, "sql")
    box.clear()
    box.send_keys(sql)
    field = driver.find_element(By.ID, "spend")
    field.clear()
    field.send_keys(spend)
    _submit(driver, driver.find_element(By.CSS_SELECTOR, f"button[name=action][value={action}]"))


def _success(driver) -> str:
    """The page's success notice; if there is none, fail with what the page says instead."""
    By = _by(driver)
    found = driver.find_elements(By.CSS_SELECTOR, ".notice.success")
    if not found:
        main = driver.find_elements(By.TAG_NAME, "main")
        pytest.fail(f"no success notice at {driver.current_url}: "
                    f"{main[0].text if main else driver.page_source[:2000]}")
    return found[0].text


def _sign_out(driver) -> None:
    _submit(driver, driver.find_element(_by(driver).CSS_SELECTOR, "header form button[type=submit]"))


def test_analyst_admin_and_public_pages(browser, server, stack):
    By = _by(browser)
    browser.get(server + "/")
    _check_and_shoot(browser, "01-landing")
    _sign_in(browser, server, stack.partner_key)
    assert browser.current_url.endswith("/console")
    _check_and_shoot(browser, "02-console")

    _ask(browser, COUNT_SQL, "0.5", "preview")
    preview = browser.find_element(By.ID, "preview").text
    assert "nothing was charged" in preview and "ε=0.5" in preview
    _check_and_shoot(browser, "03-preview")

    _submit(browser, browser.find_element(By.CSS_SELECTOR, "button[name=action][value=run]"))
    assert "/console/answers/" in browser.current_url
    assert "Charged ε=0.5" in _success(browser)
    bars = browser.find_elements(By.CSS_SELECTOR, "figure.bars svg.bar-plot")
    assert len(bars) == 12  # every public region, each with an error bar
    assert browser.find_elements(By.CSS_SELECTOR, "figure.bars line.err")
    _check_and_shoot(browser, "04-answer")

    browser.get(server + "/console")
    _ask(browser, BIG_SQL, "0.7", "run")
    refusal = browser.find_element(By.ID, "query-error").text
    assert "needs ε=0.7 but only ε=0.5 remains" in refusal
    _check_and_shoot(browser, "05-refused")
    _sign_out(browser)

    _sign_in(browser, server, stack.admin_key)
    assert browser.current_url.endswith("/admin")
    partner = browser.find_element(By.ID, f"partner-{stack.partner_id}")
    partner.find_element(By.XPATH, ".//summary[contains(., 'Change budget')]").click()
    partner.find_element(By.NAME, "amount").send_keys("3")
    partner.find_element(By.NAME, "reason").send_keys("second study approved by the board")
    _submit(browser, partner.find_element(By.XPATH, ".//button[contains(., 'Set budget')]"))
    assert "is now ε=3" in _success(browser)
    assert "second study approved by the board" in browser.find_element(By.ID, "audit-h").find_element(
        By.XPATH, "..").text
    _check_and_shoot(browser, "06-admin")
    _sign_out(browser)

    _sign_in(browser, server, stack.partner_key)
    _ask(browser, BIG_SQL, "0.7", "run")
    assert "Charged ε=0.7" in _success(browser)
    _sign_out(browser)

    browser.get(server + "/transparency")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "ε 1.2 of its limit 3" in page
    assert "pricing research on healthy eating" in page
    assert browser.find_elements(By.CSS_SELECTOR, ".timechart polyline")
    _check_and_shoot(browser, "07-transparency")


def test_browser_tools_are_debian_packages():
    """The e2e setup must not depend on a downloaded browser (no internet here)."""
    _require_browser()
    assert shutil.which("chromium") == CHROMIUM or Path(CHROMIUM).exists()
