"""The web app in Chromium (Playwright): send, empty-prompt message, Stop, desktop and phone screenshots,
the message box and the controls while answers stream (typed text kept, Send disabled, Clear stops and
clears, Stop of a queued message), answer captions, the Calibrate tab (a tiny sweep; a clicked cell sets
the chat's layer and α)."""

from __future__ import annotations

import json
import os
import time

import pytest
from app_harness import running_app
from browser_helpers import (
    ARTIFACTS,
    PANES,
    bot_texts,
    browser_or_skip,
    captions,
    chromium,
    set_alpha,
    start_sweep,
    subtracted_caption,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
def app_url(embedded_engine):
    browser_or_skip()
    # one request at a time (the app's default batches up to 4): the queued-Stop test needs a message to wait
    with running_app(embedded_engine, app_overrides={"concurrency_per_model": 1}, max_new_tokens=16) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(app_url)
        page.wait_for_selector("#prompt textarea")
        yield page
        browser.close()


def user_messages(page) -> int:
    return page.locator("#pane-added [data-testid='user']").count()


def set_max_tokens(page, value: int) -> None:
    tokens = page.locator("#max-new-tokens input[type=number]")
    if not tokens.is_visible():
        page.get_by_text("Advanced").click()
    tokens.fill(str(value))
    tokens.press("Tab")


def clear_and_wait(page, engine) -> None:
    page.locator("#clear").click()
    wait_for(lambda: user_messages(page) == 0, 10, "Clear")
    wait_for(lambda: not engine.lm.lock.locked(), 15, "the model to stop")


def error_badges(page) -> int:
    """Gradio's red "Error" status badges over the panes and the message box."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('#panes *, #prompt *'))
        .filter(el => el.children.length === 0 && el.textContent.trim() === 'Error').length""")


def test_empty_prompt_shows_message_and_leaves_panes(page):
    """The module's first event: on a loaded machine the page's load events (the link fill, the behavior list) can
    finish after the click and redraw the box, taking the message with them (seen twice in one session's CI runs,
    never alone), so Send is pressed again -- at most three times -- as a user would."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        page.locator("#prompt textarea").fill("   ")
        page.locator("#send").click()
        try:
            page.locator("#prompt").get_by_text("Type a message first.").wait_for(timeout=15_000)  # at the box
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    assert bot_texts(page) == ["", "", ""]


def test_each_answer_keeps_the_alpha_that_made_it(page, embedded_engine):
    """Moving α relabelled the panes at once: "+α = +0" stood over text made at α = 2 (issue 10, item 10)."""
    layer = embedded_engine.defaults.layer
    page.get_by_text(f"Vector size at layer {layer}:").wait_for(timeout=60_000)
    set_alpha(page, 2)
    page.locator("#prompt textarea").fill("Hi!")
    page.locator("#send").click()
    wait_for(
        lambda: (
            captions(page) == [f"+α = +2 · layer {layer} · refusal"]
            or captions(page) == [f"+α = +2 · layer {layer} · refusal · cut at the limit of 16 new tokens"]
        ),
        120,
        "the first answer's caption",
    )
    set_alpha(page, 0)
    time.sleep(0.5)
    assert page.get_by_text("Refuses more (+α)", exact=True).count() == 1  # the title carries no number
    assert captions(page)[0].startswith(f"+α = +2 · layer {layer} · refusal")  # still says what made it
    assert captions(page, "#pane-unsteered")[0].startswith("α = 0 (unsteered)")
    set_alpha(page, 5)
    page.locator("#prompt textarea").fill("And now?")
    page.locator("#send").click()
    wait_for(lambda: len(captions(page)) == 2 and "writing" not in captions(page)[1], 120, "the second answer")
    first, second = captions(page)
    assert first.startswith("+α = +2 ·") and second.startswith("+α = +5 ·")
    assert captions(page, "#pane-subtracted")[1].startswith(subtracted_caption(5, layer, embedded_engine))
    set_alpha(page, 3)
    clear_and_wait(page, embedded_engine)


def test_send_fills_all_three_panes(page, embedded_engine):
    page.locator("#prompt textarea").fill("What's your favorite planet?")
    start = time.monotonic()
    page.locator("#send").click()
    wait_for(lambda: any(bot_texts(page)), 120, "the first token")
    first_token = time.monotonic() - start
    wait_for(lambda: all(bot_texts(page)), 120, "all three panes")
    wait_for(lambda: not embedded_engine.lm.lock.locked(), 120, "the generation to finish")
    time.sleep(0.5)
    texts = bot_texts(page)
    print(f"\nSend -> first token in the browser: {first_token:.2f}s; replies: {texts}")
    assert all(texts)
    assert page.get_by_text("Type a message first.").count() == 0  # the old validation message is gone

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        time.sleep(0.5)
        boxes = [page.locator(pane).bounding_box() for pane in PANES]
        assert boxes[0]["y"] < boxes[1]["y"] < boxes[2]["y"], "the panes stack on a phone"
        assert max(box["width"] for box in boxes) <= 390
        page.screenshot(path=str(ARTIFACTS / "app-phone.png"), full_page=True)
    finally:
        page.set_viewport_size({"width": 1400, "height": 900})


def test_failed_generation_shows_message_and_app_keeps_serving(page, embedded_engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(embedded_engine, "compare", broken)
    page.locator("#prompt textarea").fill("Hello again")
    page.locator("#send").click()
    wait_for(lambda: all("Generation failed" in t for t in bot_texts(page)), 60, "the error message in the panes")
    assert all("RuntimeError: out of memory (simulated)" in t for t in bot_texts(page))
    # the earlier turn is still there: the panes were not blanked
    assert page.locator("#pane-added [data-testid='bot']").count() == 2


def test_stop_halts_the_model(page, embedded_engine):
    clear_and_wait(page, embedded_engine)
    set_max_tokens(page, 1024)
    page.locator("#prompt textarea").fill("Write a very long story about a dragon who learns to bake bread.")
    page.locator("#send").click()
    wait_for(lambda: min(len(t) for t in bot_texts(page)) > 20, 120, "text to start streaming")
    assert embedded_engine.lm.lock.locked(), "the generation should still be running"
    page.locator("#stop").click()
    # the model itself stops: the engine's lock is released long before 1024 tokens
    wait_for(lambda: not embedded_engine.lm.lock.locked(), 10, "the model to stop")
    time.sleep(1.0)
    stopped = bot_texts(page)
    time.sleep(2.0)
    assert bot_texts(page) == stopped, "text kept growing after Stop"
    assert max(len(t.split()) for t in stopped) < 500
    assert all(c.endswith("· stopped") for c in captions(page))  # the answer says it was cut by Stop


def test_typing_during_streaming_is_kept_send_waits_and_clear_stops(page, embedded_engine):
    """While answers streamed, typed text was erased by every update, Send was silently dropped and Clear did
    nothing (issue 10, item 10)."""
    clear_and_wait(page, embedded_engine)
    set_max_tokens(page, 1024)
    box = page.locator("#prompt textarea")
    box.fill("Write a very long story about a dragon who learns to bake bread.")
    page.locator("#send").click()
    wait_for(lambda: min(len(t) for t in bot_texts(page)) > 10, 120, "text to start streaming")
    box.fill("my next question")
    grown = bot_texts(page)[0]
    wait_for(lambda: len(bot_texts(page)[0]) > len(grown) + 20, 60, "more streamed text")
    assert box.input_value() == "my next question", "a streamed update erased the typed text"
    send = page.locator("#send")
    assert send.is_disabled()  # visibly not taking a message now
    box.press("Enter")  # not sent now, not lost
    time.sleep(1.0)
    assert user_messages(page) == 1 and box.input_value() == "my next question"
    page.locator("#clear").click()
    wait_for(lambda: user_messages(page) == 0, 10, "Clear to empty the panes")
    wait_for(lambda: not embedded_engine.lm.lock.locked(), 10, "Clear to stop the model")
    time.sleep(1.0)
    assert user_messages(page) == 0 and bot_texts(page) == ["", "", ""], "a late update came back after Clear"
    assert not send.is_disabled() and box.input_value() == "my next question"
    set_max_tokens(page, 16)
    box.fill("")


def test_stop_while_waiting_in_the_queue_cancels_the_message(page, app_url, embedded_engine, monkeypatch):
    """Stop pressed while a message still waited in the queue was ignored; it ran in full later (issue 10,
    item 10)."""
    import threading

    import httpx

    clear_and_wait(page, embedded_engine)
    page.get_by_text("Vector size at layer").wait_for(timeout=60_000)  # the page's own use of the model is over
    # another caller holds the model for a while (about 150 tokens)
    body = json.dumps({"data": ["Write a long story about a dragon.", 2.0, 9, "refusal", 150, 0.0, 1.0, 0, ""]})
    event = httpx.post(
        app_url + "gradio_api/call/compare", content=body, headers={"content-type": "application/json"}
    ).json()["event_id"]
    other = threading.Thread(
        target=httpx.get, args=(app_url + f"gradio_api/call/compare/{event}",), kwargs={"timeout": 300}, daemon=True
    )
    other.start()
    wait_for(embedded_engine.lm.lock.locked, 60, "another caller's request to hold the model")
    calls = []
    real = embedded_engine.compare
    monkeypatch.setattr(embedded_engine, "compare", lambda *a, **k: calls.append(1) or real(*a, **k))
    box = page.locator("#prompt textarea")
    box.fill("Hello?")
    page.locator("#send").click()
    time.sleep(1.0)  # queued behind the other caller
    assert not calls and embedded_engine.lm.lock.locked(), "the other request ended too soon for this test"
    # the box was emptied at the click and Send is disabled while the message waits; typing now is kept
    assert box.input_value() == "" and page.locator("#send").is_disabled()
    box.fill("typed while it waited")
    page.locator("#stop").click()
    other.join(timeout=120)
    wait_for(lambda: not embedded_engine.lm.lock.locked(), 15, "the other request to end")
    time.sleep(3.0)  # the model is free: a message that was not really cancelled would run now
    assert not calls, "the message ran although Stop was pressed while it waited"
    assert user_messages(page) == 0 and not page.locator("#send").is_disabled()
    assert box.input_value() == "typed while it waited"
    assert error_badges(page) == 0, "Stop of a queued message left error badges"
    box.fill("")


def test_uploads_leave_gradios_cache_and_go_with_the_session(page, app_url, embedded_engine, tmp_path):
    """Uploaded vector files stayed in Gradio's temp folder forever, downloadable by URL (issue 10, item 10)."""
    import glob
    import tempfile
    import uuid

    import torch

    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet

    name = f"probe-{uuid.uuid4().hex[:8]}.safetensors"
    hidden = embedded_engine.lm.hidden_size
    save_safetensors(VectorSet({9: torch.full((hidden,), 0.01)}), tmp_path / name)
    gradio_cache = os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    own = page.context.browser.new_page()  # a session of its own, closed below
    try:
        own.goto(app_url)
        own.get_by_text("Advanced").click()
        own.locator("#upload input[type=file]").set_input_files(str(tmp_path / name))
        own.get_by_text(f"Loaded {name}: layers 9").wait_for(timeout=60_000)
        assert not glob.glob(os.path.join(gradio_cache, "**", name), recursive=True), "still in Gradio's cache"
        kept = glob.glob(os.path.join(tempfile.gettempdir(), "llama-steering-uploads-*", "*", name))
        assert len(kept) == 1 and (os.stat(os.path.dirname(kept[0])).st_mode & 0o077) == 0
    finally:
        own.close()
    wait_for(lambda: not os.path.exists(kept[0]), 30, "the closed session's upload to be deleted")


def test_calibrate_sweep_cell_sets_chat_layer_and_alpha(page):
    start_sweep(page, "7, 11", "-4, 0, 1", 4)
    page.get_by_text("Swept 2 layers × 3 multipliers on 4 questions").wait_for(timeout=120_000)
    page.locator("#cal-heatmap img, #cal-heatmap svg, #cal-heatmap canvas").first.wait_for(timeout=30_000)
    assert page.get_by_text("answers A/B near chance").count() == 1
    page.locator("#cmp-run").click()  # refusal vs itself: the cosine plot appears
    page.locator("#cmp-plot img, #cmp-plot svg, #cmp-plot canvas").first.wait_for(timeout=30_000)
    time.sleep(1.0)  # the plot settles: the page is taller with it
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-calibrate.png"), full_page=True)
    page.locator("#cal-table [data-testid=cell-1-1]").click()  # layer 11, multiplier -4
    page.get_by_text("Chat set to layer 11, α = 4").wait_for(timeout=15_000)
    page.get_by_role("tab", name="Chat").click()
    page.get_by_text("Vector size at layer 11:").wait_for(timeout=60_000)
    layer = page.get_by_label("number input for Layer")
    if not layer.is_visible():
        page.get_by_text("Advanced").click()  # still closed when this test runs alone
    assert layer.input_value() == "11"
    assert page.get_by_label("number input for Steering strength α").input_value() == "4"
