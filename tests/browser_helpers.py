"""Shared helpers of the browser tests (tests/test_app_browser*.py): the Chromium path and flags, the skip-or-fail
check (REQUIRE_BROWSER=1 turns a missing browser into a failure), the artifacts folder, polling, and reading the
answer panes of the page."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from app_harness import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
PANES = ("#pane-added", "#pane-unsteered", "#pane-subtracted")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_or_skip() -> None:
    """Skip the test when Chromium (CHROMIUM) or Playwright is missing; with REQUIRE_BROWSER=1 fail instead.

    Raises:
        pytest.skip.Exception / pytest.fail.Exception naming what is missing.
    """
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
        except ImportError:
            reason = "playwright is not installed"
    if reason:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required (REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (CHROMIUM with CHROMIUM_ARGS) launched through Playwright; yields the Browser and
    closes it on exit unless the caller already did."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            if browser.is_connected():
                browser.close()


def wait_for(condition, timeout: float, what: str, step: float = 0.1):
    """Poll `condition()` every `step` seconds until it returns a truthy value (returned) or `timeout` seconds
    pass (AssertionError naming `what`)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def bot_texts(page, panes=PANES) -> list[str]:
    """The latest assistant message of each pane in `panes` (CSS ids) without its caption ('' while empty)."""
    return page.evaluate(
        """panes => panes.map(id => {
        const bots = document.querySelectorAll(id + ' [data-testid="bot"]');
        if (!bots.length) return '';
        const copy = bots[bots.length - 1].cloneNode(true);
        copy.querySelectorAll('sub').forEach(sub => sub.remove());
        return copy.textContent.trim();
    })""",
        list(panes),
    )


def captions(page, pane: str = "#pane-added") -> list[str]:
    """The caption of every answer in a pane, oldest first."""
    return page.evaluate(
        """id => Array.from(document.querySelectorAll(id + ' [data-testid="bot"]'))
        .map(bot => Array.from(bot.querySelectorAll('sub')).map(s => s.textContent.trim()).join(' '))""",
        pane,
    )


def set_alpha(page, value: float) -> None:
    """Type `value` into the α number box, press Enter and wait until the help text shows the new α."""
    alpha = page.get_by_label("number input for Steering strength α")
    alpha.fill(f"{value:g}")
    alpha.press("Enter")
    page.get_by_text(f"so α = {value:g} means").wait_for(timeout=30_000)


@pytest.fixture(scope="module", name="browser")
def browser_fixture(app_url):
    """The `browser` fixture: one Chromium for a test module (import browser_fixture; the module's own `app_url`
    fixture starts the app)."""
    with chromium() as launched:
        yield launched
        launched.close()


def start_sweep(page, layers: str, multipliers: str, questions: int) -> None:
    """Open the Calibrate tab, type the sweep's layers, multipliers and number of questions, and run it."""
    page.get_by_role("tab", name="Calibrate").click()
    for box, value in (("#cal-layers textarea", layers), ("#cal-mults textarea", multipliers)):
        page.locator(box).fill(value)
    items = page.locator("#cal-items input[type=number]")
    items.fill(str(questions))
    items.press("Tab")
    page.locator("#cal-run").click()


def subtracted_caption(alpha: float, layer: int, engine) -> str:
    """The caption the subtracted pane shows for α at `layer` with the engine's refusal recipe: when the recipe
    steers that side at its own strength (strength_minus), it says what was applied (steering.ui.chat.Turn)."""
    ratio = engine.recipe().minus_ratio()
    applied = "" if ratio == 1.0 else f" × {ratio:.3g} on this side = −{round(alpha * ratio, 4):g}"
    return f"−α = −{alpha:g}{applied} · layer {layer} · refusal"
