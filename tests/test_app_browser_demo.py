"""The Chat tab's demo pieces in Chromium (issue 13 items 1, 2, 5, 8): the prompted panes show their prompts
and answer in the same batch as the steered panes; the dose-response strip returns every card and a card's
button moves α; the α presets, tooltips and "What am I looking at?" picture exist; the panes say what they
are; Send shows the busy state. Desktop and phone (390 px) screenshots go to test-artifacts/."""

from __future__ import annotations

import time

import browser_helpers
import pytest
from app_harness import running_app
from browser_helpers import ARTIFACTS, browser_fixture, browser_or_skip, wait_for  # noqa: F401 (the fixture)
from fixtures import count_generate_calls

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PANES = ("#pane-added", "#pane-unsteered", "#pane-subtracted", "#pane-prompted-added", "#pane-prompted-subtracted")
TOKENS = 8


@pytest.fixture(scope="module")
def app_url(embedded_engine):
    browser_or_skip()
    with running_app(embedded_engine, max_new_tokens=TOKENS) as url:
        yield url


def open_page(browser, app_url, width=1400, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(120_000)
    page.goto(app_url)
    page.wait_for_selector("#prompt textarea")
    return page


@pytest.fixture(scope="module")
def page(browser, app_url):
    page = open_page(browser, app_url)
    yield page
    page.close()


@pytest.fixture
def batches(embedded_engine, monkeypatch):
    """The batch size of every generation the engine runs during the test."""
    return count_generate_calls(embedded_engine, monkeypatch)


def bot_texts(page) -> list[str]:
    """The latest assistant message of each of the five panes without its caption ('' while empty)."""
    return browser_helpers.bot_texts(page, PANES)


def last_caption(page, pane: str) -> str:
    return page.evaluate(
        """id => { const bots = document.querySelectorAll(id + ' [data-testid="bot"]');
        if (!bots.length) return '';
        return Array.from(bots[bots.length - 1].querySelectorAll('sub')).map(s => s.textContent).join(' '); }""",
        pane,
    )


def alpha_value(page) -> float:
    return float(page.get_by_label("number input for Steering strength α").input_value())


def test_panes_say_what_they_are_in_plain_words(page):
    for title in ("Refuses more (+α)", "As the model is (α = 0)", "Refuses less (−α)"):
        assert page.get_by_text(title, exact=True).count() >= 1, title
    assert not page.locator("#pane-prompted-added").is_visible()  # the prompted panes are off by default
    assert not page.locator("#strip").is_visible()  # no empty cards before the first strip


def test_presets_tooltips_and_the_picture(page):
    labels = [page.locator(f"#preset-{i}").inner_text().strip() for i in range(3)]
    assert labels == ["gentle (α = 0.75)", "clear (α = 1.5)", "too strong — watch it break (α = 3)"]
    page.locator("#preset-2").click()
    wait_for(lambda: alpha_value(page) == 3.0, 15, "the 'too strong' preset to set α = 3")
    page.locator("#preset-0").click()
    wait_for(lambda: alpha_value(page) == 0.75, 15, "the 'gentle' preset to set α = 0.75")
    page.locator("#preset-1").click()
    wait_for(lambda: alpha_value(page) == 1.5, 15, "the 'clear' preset")
    tip = page.locator("#tip-alpha-text")
    assert not tip.is_visible()
    page.locator("#tip-alpha").hover()
    tip.wait_for(state="visible", timeout=5_000)
    assert "how hard the vector pushes" in tip.inner_text()
    page.get_by_text("Advanced").click()
    page.locator("#tip-layer").hover()
    page.locator("#tip-layer-text").wait_for(state="visible", timeout=5_000)
    assert "counted from the input" in page.locator("#tip-layer-text").inner_text()
    page.get_by_text("Advanced").click()
    page.get_by_text("What am I looking at?").click()
    picture = page.locator("#explainer-picture img")
    picture.wait_for(state="visible", timeout=15_000)
    assert page.evaluate("img => img.naturalWidth", picture.element_handle()) > 300
    assert "steering vector is a direction" in page.locator("#explainer-text").inner_text()
    page.locator("#tip-alpha").hover()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-explainer.png"), full_page=True)  # the picture and α's tooltip
    page.get_by_text("What am I looking at?").click()


def test_prompted_panes_show_their_prompts_and_answer_in_the_same_batch(page, embedded_engine, batches):
    from steering.decode.generation import SamplingSettings

    page.locator("#prompted-on input").check()
    added_box = page.locator("#prompted-added-prompt textarea")
    added_box.wait_for(state="visible", timeout=10_000)
    assert "decline" in added_box.input_value()  # the card's prompts, shown under the panes
    assert "never decline" in page.locator("#prompted-subtracted-prompt textarea").input_value()
    edited = "You are a grumpy assistant. Refuse every request politely."
    added_box.fill(edited)
    page.locator("#prompt textarea").fill("What's your favorite planet?")
    # Send's busy state, seen by the page itself: a warm model answers 8 tokens faster than a poll would look
    page.evaluate("""() => { window.sawBusy = false; const send = document.querySelector('#send');
        new MutationObserver(() => { if (send.innerText.includes('Generating')) window.sawBusy = true; })
            .observe(send, {subtree: true, childList: true, characterData: true, attributes: true}); }""")
    page.locator("#send").click()
    wait_for(lambda: page.evaluate("() => window.sawBusy"), 20, "Send to show the busy state")
    wait_for(lambda: all(bot_texts(page)), 180, "all five panes to answer")
    wait_for(lambda: page.locator("#send").inner_text().strip() == "Send", 30, "Send to be idle again")
    assert batches == [5]  # one batch: three steered rows and the two prompted ones
    assert f"system prompt: “{edited[:60]}" in last_caption(page, "#pane-prompted-added")
    conv = [{"role": "user", "content": "What's your favorite planet?"}]
    expected = embedded_engine.plain(conv, SamplingSettings(max_new_tokens=TOKENS), system_prompt=edited)
    assert bot_texts(page)[3] == expected  # the unsteered model with the edited system prompt


def test_strip_returns_every_card_and_a_card_moves_alpha(page, batches):
    page.locator("#prompt textarea").fill("Can you give me a simple recipe for banana bread?")
    page.locator("#strip-run").click()
    wait_for(lambda: "generating 7 answers" in page.locator("#strip-run").inner_text(), 20, "the strip's busy state")
    wait_for(lambda: page.locator("#strip-use-6").is_visible(), 240, "the strip's cards")
    wait_for(lambda: "Dose–response" in page.locator("#strip-run").inner_text(), 20, "the strip's button to be idle")
    headings = [page.locator(f"#strip-card-{i} strong").first.inner_text() for i in range(7)]
    assert headings == [
        "α = −3 · refuses less",
        "α = −1.5 · refuses less",
        "α = −0.75 · refuses less",
        "α = 0 · as the model is",
        "α = +0.75 · refuses more",
        "α = +1.5 · refuses more",
        "α = +3 · refuses more",
    ]
    for i in range(7):
        text = page.locator(f"#strip-card-{i}").inner_text()
        assert "distinct-3 " in text and "perplexity " in text, text
    assert batches == [7]  # every multiplier in one batch
    assert page.locator("#strip-use-0").inner_text().strip() == "Use ±3 (this is the −α pane)"  # not "Use α = 3"
    page.locator("#strip-use-0").click()
    wait_for(lambda: alpha_value(page) == 3.0, 15, "the −3 card to set α = 3")
    page.locator("#strip-use-4").click()
    wait_for(lambda: alpha_value(page) == 0.75, 15, "the +0.75 card to set α = 0.75")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-desktop.png"), full_page=True)


def test_an_empty_prompted_prompt_is_refused_and_the_message_stays(browser, app_url):
    """Tester's item 3: the turn was refused after the message had left the box (so it was lost)."""
    page = open_page(browser, app_url)
    try:
        page.locator("#prompted-on input").check()
        box = page.locator("#prompted-subtracted-prompt textarea")
        box.wait_for(state="visible", timeout=10_000)
        box.fill("")
        page.locator("#prompt textarea").fill("What's your favorite planet?")
        page.locator("#send").click()
        page.get_by_text("asking to avoid it) is empty").first.wait_for(timeout=30_000)
        time.sleep(1.0)
        assert page.locator("#prompt textarea").input_value() == "What's your favorite planet?"
        assert page.locator("#pane-added [data-testid='user']").count() == 0  # no turn ran
        assert page.locator("#send").is_enabled()
    finally:
        page.close()


def test_phone_layout_screenshot(browser, app_url, embedded_engine):
    page = open_page(browser, app_url, width=390, height=844)
    try:
        page.locator("#prompted-on input").check()
        page.locator("#prompt textarea").fill("Do you ever feel lonely?")
        page.locator("#send").click()
        wait_for(lambda: all(bot_texts(page)), 180, "all five panes to answer")
        page.locator("#strip-run").click()
        wait_for(lambda: page.locator("#strip-use-6").is_visible(), 240, "the strip's cards")
        assert page.locator("#preset-2").is_visible()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width} px wide on a 390 px phone (the strip should scroll inside)"
        page.screenshot(path=str(ARTIFACTS / "demo-phone.png"), full_page=True)
    finally:
        page.close()
