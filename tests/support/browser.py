"""A headless Chromium for the page tests: Debian's `chromium` + `chromium-driver`, driven by selenium.

The driver path is given explicitly, so selenium never tries to download a driver or a browser (there is
no network in CI). Missing packages fail the test with the install command (.ci/run installs them).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

INSTALL_HINT = "apt-get install chromium chromium-driver (Debian packages; .ci/run installs them)"


def _find(name: str, env_var: str, candidates: tuple[str, ...]) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(f"{name} not found (or set {env_var}): {INSTALL_HINT}")


@contextlib.contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator:
    """Yield a selenium WebDriver on a fresh headless Chromium profile; quit it after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find("chromium", "SPLADE_TEST_CHROMIUM", ("chromium", "chromium-browser"))
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_find("chromedriver", "SPLADE_TEST_CHROMEDRIVER", ("chromedriver",)))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
