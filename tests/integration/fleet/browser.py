"""Debian's Chromium, headless, driven by Selenium from async tests.

Selenium blocks; the plane under test runs on the test's event loop. Every browser call
therefore runs in a worker thread (``asyncio.to_thread``), so the server keeps answering
while the browser waits for it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No network here: without these Chromium keeps trying to reach Google's services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


class Browser:
    """One headless Chromium with a fresh profile; screenshots go to ``shots``."""

    def __init__(self, profile: Path, shots: Path) -> None:
        if CHROMIUM is None or CHROMEDRIVER is None:
            pytest.skip(
                "Debian's chromium and chromium-driver are not installed (scripts/install "
                "installs them)"
            )
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        # Arges' API port has a certificate from its own CA, which this profile does not know.
        options.accept_insecure_certs = True
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def on_page(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, which finds elements and reads or uses them; again when the page was
        replaced under it.

        The dashboard swaps whole sections as watches deliver changes, so an element found a
        moment ago can be gone when its text is asked for or it is clicked
        (StaleElementReferenceException, and nothing was done): finding it again on the new
        page is what a person's eyes and hand would do."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(20):
            try:
                return await self.call(fn)
            except StaleElementReferenceException:
                await asyncio.sleep(0.05)
        return await self.call(fn)

    async def text(self, css: str = "body") -> str:
        from selenium.webdriver.common.by import By

        return str(await self.on_page(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text))

    async def texts(self, css: str) -> list[str]:
        from selenium.webdriver.common.by import By

        def read() -> list[str]:
            return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css)]

        return list(await self.on_page(read))

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        def press() -> None:
            self.driver.find_element(By.CSS_SELECTOR, css).click()

        await self.on_page(press)

    async def type(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        def enter() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(value)

        await self.on_page(enter)

    async def select(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        def choose() -> None:
            Select(self.driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value)

        await self.on_page(choose)

    async def script(self, source: str) -> Any:
        return await self.call(self.driver.execute_script, source)

    async def until(self, check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        """Poll ``check`` (run in the browser's thread) until it is truthy."""
        from selenium.common.exceptions import WebDriverException

        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while True:
            try:
                last = await self.call(check)
            except WebDriverException as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what} not seen within {timeout:.0f}s (last: {last!r})")
            await asyncio.sleep(0.2)

    async def until_text(self, css: str, wanted: str, timeout: float = 20.0) -> str:
        """Wait until the element ``css`` shows ``wanted``; returns its text."""
        from selenium.webdriver.common.by import By

        def shown() -> str | None:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            text = found[0].text if found else ""
            return text if wanted in text else None

        return str(await self.until(shown, f"{wanted!r} in {css}", timeout))

    async def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.call(self.driver.save_screenshot, str(path))
        return path

    @property
    def source(self) -> str:
        return str(self.driver.page_source)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    def quit(self) -> None:
        self.driver.quit()
