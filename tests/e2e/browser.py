"""Headless Debian chromium for browser tests, driven by the Debian chromedriver (nothing downloaded).

`make system-deps` installs both (packages chromium and chromium-driver). Selenium Manager never runs:
the driver's path is given explicitly, so a missing binary fails here with a message, not with a
download attempt on a machine without internet.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("ETL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ETL_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
    "--window-size=1400,1000",
)


class BrowserUnavailable(RuntimeError):
    pass


def _executable(path: str, what: str) -> str:
    found = path if os.path.isfile(path) and os.access(path, os.X_OK) else shutil.which(Path(path).name)
    if not found:
        raise BrowserUnavailable(
            f"{what} not found at {path} (nor on PATH): install the Debian packages chromium and "
            "chromium-driver (`make system-deps`), or point ETL_CHROMIUM / ETL_CHROMEDRIVER at them"
        )
    return found


def chrome_options() -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = _executable(CHROMIUM, "chromium")
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages for diagnostics
    return options


@contextmanager
def chromium(log_path: Path | None = None) -> Iterator[webdriver.Chrome]:
    """A headless chromium session; always quit, also when the test fails."""
    options = chrome_options()
    service = Service(
        executable_path=_executable(CHROMEDRIVER, "chromedriver"),
        log_output=str(log_path) if log_path else None,
    )
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def console_log(driver: webdriver.Chrome) -> str:
    """The page's console messages so far (errors of the page's JS, failed requests)."""
    try:
        entries = driver.get_log("browser")
    except Exception as exc:  # the log type is a chromium extension; never mask the real failure
        return f"(no console log: {exc})"
    return "\n".join(f"{e.get('level')}: {e.get('message')}" for e in entries) or "(console empty)"
