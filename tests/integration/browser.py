"""A real headless Chromium for the page tests (the web chat, the status page): Debian's
`chromium` and `chromium-driver`, driven by selenium. The `browser` fixture
(tests/integration/conftest.py) opens one per test.

Skipped when Chromium is not installed, except in CI (CI=true), where it must run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = "chromium" if not chromium else "chromedriver (Debian: chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test, but {missing} is not installed")
    pytest.skip(f"{missing} is not installed: apt-get install chromium chromium-driver")


@contextmanager
def chromium(tmp_path: Path) -> Iterator[Any]:
    path, driver_path = binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1280,860")
    options.binary_location = path
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """A PNG of the window to the test's tmp dir, and to $SCREENSHOT_DIR when set."""
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), "the browser took no screenshot"
    if target := os.environ.get("SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    return path
