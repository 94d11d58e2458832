"""Issue 13 items 3, 4, 6, 7, 9 in Chromium (Playwright) on the embedded model: the behavior meter shades
each answer's tokens, a copied link opened in a fresh browser context reproduces the three answers exactly
(greedy), the copied command names the exported GGUF, the Calibrate tab's reliability view, and the phone
layout keeps the three answers and the message box on one screen. Screenshots go to test-artifacts/."""

from __future__ import annotations

import math
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from app_harness import running_app
from browser_helpers import (  # noqa: F401 (browser_fixture: the `browser` fixture)
    ARTIFACTS,
    PANES,
    bot_texts,
    browser_fixture,
    browser_or_skip,
    start_sweep,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

MESSAGE = "What's your favorite planet?"
PHONE = {"width": 390, "height": 844}
NEAR_PX = 40  # the message box sits at most this far below the last answer pane on a phone


@pytest.fixture(scope="module")
def app_url(embedded_engine):
    browser_or_skip()
    with running_app(embedded_engine, max_new_tokens=12) as url:
        yield url


def open_page(browser, url, **context):
    """A page in a fresh browser context (its own cookies, storage and Gradio session)."""
    page = browser.new_context(**({"viewport": {"width": 1400, "height": 900}} | context)).new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    return page


def wait_answers(page, engine) -> list[str]:
    """The three answers once the turn has ended (Send enabled again, the model idle, no 'writing…')."""
    wait_for(lambda: all(bot_texts(page)), 180, "all three panes")
    wait_for(lambda: not engine.lm.lock.locked(), 180, "the generation to finish")
    wait_for(
        lambda: page.locator("#send").is_enabled() and page.locator("#panes").get_by_text("writing…").count() == 0,
        60,
        "the turn to end",
    )
    return bot_texts(page)


def send(page, text: str) -> None:
    page.locator("#prompt textarea").fill(text)
    page.locator("#send").click()


@pytest.fixture(scope="module")
def answered(browser, app_url, embedded_engine):
    """A desktop page after one greedy turn: (page, the three answers)."""
    page = open_page(browser, app_url)
    send(page, MESSAGE)
    texts = wait_answers(page, embedded_engine)
    yield page, texts
    page.context.close()


def test_meter_shades_each_answers_tokens(answered, embedded_engine):
    page, texts = answered
    if embedded_engine.fast_path is not None:  # STEERING_TEST_FAST_PATH=1: the meter is not read, and says so
        assert page.locator("#meter-on input").is_disabled()
        assert page.get_by_text("the meter needs the eager path").count() == 1
        assert page.locator("#meter .meter-token").count() == 0
        return
    page.locator("#meter .meter-token").first.wait_for(timeout=30_000)
    panes = page.evaluate("""() => Array.from(document.querySelectorAll('#meter .meter-pane')).map(pane => ({
        text: pane.querySelector('.meter-text').textContent,
        values: Array.from(pane.querySelectorAll('.meter-token')).map(t => parseFloat(t.dataset.value)),
        shaded: Array.from(pane.querySelectorAll('.meter-token'))
            .filter(t => getComputedStyle(t).backgroundColor !== 'rgba(0, 0, 0, 0)').length,
        lines: pane.querySelectorAll('svg.meter-line polyline').length}))""")
    assert len(panes) == 3
    for pane, text in zip(panes, texts):
        assert pane["text"].strip() == text  # the shaded tokens are the pane's answer, token by token
        assert pane["values"] and all(math.isfinite(v) for v in pane["values"])
        assert pane["shaded"] >= len(pane["values"]) // 2 and pane["lines"] == 1
    assert panes[0]["values"] != panes[2]["values"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-meter-desktop.png"), full_page=True)


def test_copied_link_reproduces_the_three_answers(answered, browser, embedded_engine):
    page, texts = answered
    page.get_by_text("Share this view").click()
    page.locator("#copy-link").click()
    wait_for(lambda: page.locator("#link textarea").input_value().startswith("http"), 30, "the link")
    link = page.locator("#link textarea").input_value()
    query = parse_qs(urlsplit(link).query)
    assert query["message"] == [MESSAGE] and query["run"] == ["1"] and query["temperature"] == ["0"]
    assert {"behavior", "alpha", "layer", "seed", "max_tokens"} <= set(query)
    assert "greedy" in page.locator("#share-note").inner_text()

    fresh = open_page(browser, link)  # a new context: another person opening the link
    try:
        assert wait_answers(fresh, embedded_engine) == texts
        assert fresh.locator("#prompt textarea").input_value() == ""  # sent, not left in the box
    finally:
        fresh.context.close()


def test_copy_as_command_names_the_exported_file(answered, embedded_engine):
    page, _ = answered
    if not page.locator("#copy-command").is_visible():
        page.get_by_text("Share this view").click()
    page.locator("#copy-command").click()
    wait_for(lambda: "llama-cli" in page.locator("#command").inner_text(), 30, "the command")
    text = page.locator("#command").inner_text()
    layer = embedded_engine.defaults.layer
    gguf = f"refusal-smollm2-135m-instruct-layer{layer}.gguf"
    assert f"export-gguf vectors/refusal/smollm2-135m-instruct.safetensors {gguf} --layers {layer}" in text
    assert f"--control-vector-scaled {gguf} " in text and f"--control-vector-layer-range {layer} {layer}" in text
    assert "python -m steering chat" in text and "--behavior refusal" in text
    page.locator("#share").screenshot(path=str(ARTIFACTS / "app-share-desktop.png"))


def test_calibrate_shows_the_reliability_view(answered):
    page, _ = answered
    start_sweep(page, "11, 13", "-2, 0, 2", 6)
    page.locator("#rel-note").get_by_text("questions move the wrong way").wait_for(timeout=180_000)
    page.locator("#rel-plot img, #rel-plot svg, #rel-plot canvas").first.wait_for(timeout=30_000)
    assert "Layer 13:" in page.locator("#rel-note").inner_text()  # the chat's layer, swept
    time.sleep(1.0)
    page.locator("#rel-plot").screenshot(path=str(ARTIFACTS / "app-reliability.png"))
    page.get_by_role("tab", name="Chat").click()


def test_phone_keeps_the_answers_and_the_message_box_on_one_screen(browser, app_url, embedded_engine):
    page = open_page(browser, app_url, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        send(page, "Tell me about the moon.")
        wait_answers(page, embedded_engine)
        page.locator(PANES[0]).scroll_into_view_if_needed()
        page.evaluate("id => document.querySelector(id).scrollIntoView({block: 'start'})", PANES[0])
        time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app-phone-compare.png"))
        boxes = [page.locator(pane).bounding_box() for pane in PANES]
        box = page.locator("#prompt textarea").bounding_box()
        assert boxes[0]["y"] < boxes[1]["y"] < boxes[2]["y"] and max(b["width"] for b in boxes) <= 390
        # the three latest answers and the message box are on one 844 px screen, the box right below them
        latest = [page.locator(f"{pane} [data-testid='bot']").last.bounding_box() for pane in PANES]
        assert all(b is not None and 0 <= b["y"] < PHONE["height"] for b in latest), latest
        assert box["y"] + box["height"] <= PHONE["height"], box
        gap = box["y"] - (boxes[2]["y"] + boxes[2]["height"])
        assert gap <= NEAR_PX, f"the message box is {gap:.0f} px below the last pane"
        # scrolled back to the top of the page, the message box stays on screen (it sticks to the bottom)
        page.evaluate("() => window.scrollTo(0, 0)")
        time.sleep(0.5)
        box = page.locator("#prompt textarea").bounding_box()
        assert 0 <= box["y"] and box["y"] + box["height"] <= PHONE["height"], box
        page.screenshot(path=str(ARTIFACTS / "app-phone-top.png"))
        if embedded_engine.fast_path is None:  # the meter is shown on the eager path only
            page.locator("#meter").scroll_into_view_if_needed()  # the meter on a phone (a full-page capture
            time.sleep(0.5)  # would draw the sticky message row mid-page)
            page.screenshot(path=str(ARTIFACTS / "app-phone-meter.png"))
    finally:
        page.context.close()


def test_an_uploaded_vector_gives_no_link_but_says_why(browser, app_url, embedded_engine, tmp_path):
    import shutil

    page = open_page(browser, app_url)
    try:
        upload = tmp_path / "my-vector.safetensors"
        shutil.copy(embedded_engine.vectors_dir / "refusal" / "smollm2-135m-instruct.safetensors", upload)
        page.get_by_text("Advanced").click()
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        page.get_by_text("it is now selected").wait_for(timeout=60_000)
        page.locator("#prompt textarea").fill(MESSAGE)
        page.get_by_text("Share this view").click()
        page.locator("#copy-link").click()
        page.locator("#share-note").get_by_text("cannot travel in a link").wait_for(timeout=30_000)
        assert page.locator("#link textarea").input_value() == ""
        page.locator("#copy-command").click()  # a command still works: the file is named, not a server path
        wait_for(lambda: "llama-cli" in page.locator("#command").inner_text(), 30, "the command")
        text = page.locator("#command").inner_text()
        assert "--vector my-vector.safetensors" in text and str(tmp_path) not in text
    finally:
        page.context.close()


# ------------------------------------------------------------------ the tester's findings (browser-only parts)
CONTRAST_JS = """sel => {
    const el = document.querySelector(sel);
    if (!el) return null;
    const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
    const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    let bg = null;
    for (let node = el; node && !bg; node = node.parentElement) {
        const c = rgb(getComputedStyle(node).backgroundColor);
        if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) bg = c;
    }
    const fg = rgb(getComputedStyle(el).color), back = bg || [255, 255, 255];
    const opacity = Number(getComputedStyle(el).opacity);
    const mixed = fg.slice(0, 3).map((v, i) => v * opacity + back[i] * (1 - opacity));
    const [a, b] = [lum(mixed), lum(back)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""


def test_a_bad_link_says_what_it_could_not_use(browser, app_url):
    """Tester's item 1 and 2: the warning of a bad link (and of a message over the limit) reached only the
    server log (demo.load with queue=False); it now shows on the page."""
    page = open_page(browser, app_url + "?alpha=1e9&layer=-1&seed=abc&max_tokens=0&behavior=nosuch")
    try:
        note = page.get_by_text("This link had settings the app cannot use").first
        note.wait_for(timeout=30_000)
        text = note.inner_text()
        for key in ("behavior:", "alpha:", "layer:", "seed:", "max_tokens:"):
            assert key in text, text
    finally:
        page.context.close()
    page = open_page(browser, app_url + "?run=1&message=" + "x" * 2001)
    try:
        page.get_by_text("message: 2001 characters long; the limit is 2000").first.wait_for(timeout=30_000)
    finally:
        page.context.close()


def test_a_users_message_shows_as_typed_and_small_print_is_readable(browser, app_url, embedded_engine):
    """Tester's item 4: '<b>bold</b>' in a message showed bold in the panes (and <img> a broken image);
    item 7: captions and tooltips were very faint grey (about 2.5:1 on white)."""
    page = open_page(browser, app_url)
    try:
        typed = "Say <b>bold</b> <img src=x> please"
        send(page, typed)
        wait_answers(page, embedded_engine)
        for pane in PANES:
            user = page.locator(f"{pane} [data-testid='user']").last
            assert typed in user.inner_text()
            assert user.locator("b, img").count() == 0
        selectors = ["#pane-added [data-testid='bot'] sub", ".demo-tip"]
        if embedded_engine.fast_path is None:  # the meter is shown on the eager path only
            selectors.append("#meter .meter-legend, #meter .meter-empty")
        for selector in selectors:
            ratio = page.evaluate(CONTRAST_JS, selector)
            assert ratio is not None and ratio >= 4.5, f"{selector}: contrast {ratio}"
    finally:
        page.context.close()


def test_a_one_layer_upload_sets_calibrates_layers_and_the_command_says_why(
    browser, app_url, embedded_engine, tmp_path
):
    """Tester's items 5 and 6: with an uploaded one-layer vector, Copy as a command gave an empty box and
    Calibrate's default layers (around the model's default) were layers the vector does not have."""
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet
    from steering.io.vector_store import load_vectors

    shipped = load_vectors(embedded_engine.vectors_dir / "refusal" / "smollm2-135m-instruct.safetensors")
    upload = save_safetensors(VectorSet({5: shipped.vector(5)}), tmp_path / "one-layer.safetensors")
    page = open_page(browser, app_url)
    try:
        page.get_by_text("Advanced").click()
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        page.get_by_text("it is now selected").wait_for(timeout=60_000)
        page.get_by_text("Share this view").click()
        page.locator("#copy-command").click()
        wait_for(lambda: "No command" in page.locator("#command").inner_text(), 30, "the reason in the command box")
        assert "has no vector for layer" in page.locator("#command").inner_text()
        page.get_by_role("tab", name="Calibrate").click()
        wait_for(lambda: page.locator("#cal-layers textarea").input_value() == "5", 30, "Calibrate's layers")
    finally:
        page.context.close()
