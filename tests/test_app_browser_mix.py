"""Mixing two behaviors in the browser (issue 14 item 4): refusal mixed with a second vector file uploaded in the
test; the cosine shows beside the control, the answers are those of a1 v1 + a2 v2 at the layer, the caption says
so; and the /compare_mix API endpoint (old /compare callers unchanged)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import torch
from app_harness import running_app
from browser_helpers import bot_texts, browser_or_skip, captions, chromium, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TOKENS = 8
PROMPT = "What's your favorite planet?"


def words(text: str) -> list[str]:
    return text.split()


@pytest.fixture(scope="module")
def second(embedded_engine, tmp_path_factory):
    """A second vector set for the embedded model: a random direction per layer with the refusal vector's norm."""
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet

    refusal = embedded_engine.vectors_for("refusal")
    g = torch.Generator().manual_seed(7)
    vectors = {}
    for layer in refusal.layers:
        v = torch.randn(embedded_engine.lm.hidden_size, generator=g)
        vectors[layer] = v / v.norm() * refusal.vector(layer).norm()
    path = tmp_path_factory.mktemp("mix") / f"second-{uuid.uuid4().hex[:6]}.safetensors"
    save_safetensors(VectorSet(vectors, {"model": embedded_engine.lm.name}), path)
    return path, VectorSet(vectors)


@pytest.fixture(scope="module")
def app_url(embedded_engine):
    browser_or_skip()
    with running_app(embedded_engine, max_new_tokens=TOKENS) as url:
        yield url


def test_mixing_two_behaviors_in_the_browser(app_url, embedded_engine, second):
    from steering.core.mixing import Mix, cosine
    from steering.decode.generation import SamplingSettings

    path, vset = second
    layer, alpha = embedded_engine.defaults.layer, embedded_engine.defaults.multiplier
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        try:
            page.goto(app_url)
            page.wait_for_selector("#prompt textarea")
            page.get_by_text("Advanced").click()
            page.locator("#upload input[type=file]").set_input_files(str(path))
            page.get_by_text(f"Loaded {path.name}").wait_for(timeout=60_000)
            # the upload became the Behavior; choose refusal again, and the upload as the second behavior
            page.get_by_label("Behavior (steering vector)").click()
            page.get_by_role("option", name=re.compile(r"^Refusal")).click()  # the card's name and description
            page.get_by_text("Mix with a second behavior").click()
            page.locator("#mix-choice input").click()
            page.get_by_role("option", name=f"Uploaded: {path.name}").click()
            mix_alpha = page.get_by_label("number input for Its strength α₂")
            mix_alpha.fill("4")
            mix_alpha.press("Enter")
            expected_cos = cosine(embedded_engine.vectors_for("refusal").vector(layer), vset.vector(layer))
            page.locator("#mix-cos").get_by_text(f"at layer {layer} = {expected_cos:+.2f}").wait_for(timeout=60_000)
            assert f"cos(refusal, {path.stem}" in page.locator("#mix-cos").inner_text()  # the names are shown
            page.locator("#prompt textarea").fill(PROMPT)
            page.locator("#send").click()
            wait_for(
                lambda: captions(page) and "writing" not in captions(page)[0] and all(bot_texts(page)),
                180,
                "the mixed answers",
            )
            assert captions(page)[0].startswith(f"+α = +{alpha:g} · layer {layer} · refusal + 4×{path.name}")
            shown = bot_texts(page)
            page.screenshot(
                path=str(Path(__file__).resolve().parent.parent / "test-artifacts" / "mix-desktop.png"), full_page=True
            )
        finally:
            browser.close()
    conv = [{"role": "user", "content": PROMPT}]
    short = SamplingSettings(max_new_tokens=TOKENS)
    v1 = embedded_engine.vectors_for("refusal").vector(layer)
    mixed = embedded_engine.compare(conv, v1, layer, alpha, short, mix=Mix(4.0, vector=vset.vector(layer))).texts
    single = embedded_engine.compare(conv, v1, layer, alpha, short).texts
    assert [words(t) for t in shown] == [words(t) for t in mixed]  # the panes show a1 v1 + a2 v2
    assert mixed[0] != single[0] and mixed[1] == single[1]  # the mix changed the steered panes only


def test_compare_mix_api(app_url, embedded_engine):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from steering.core.mixing import Mix
    from steering.decode.generation import SamplingSettings

    client = Client(app_url, verbose=False)
    layer = embedded_engine.defaults.layer
    old = client.predict(PROMPT, 1.0, layer, max_new_tokens=TOKENS, api_name="/compare")
    same = client.predict(
        PROMPT, 1.0, layer, max_new_tokens=TOKENS, mix_behavior="formality", mix_multiplier=0.0, api_name="/compare_mix"
    )
    assert list(same) == list(old)  # alpha2 = 0: single-behavior steering
    none = client.predict(
        PROMPT, 1.0, layer, max_new_tokens=TOKENS, mix_behavior="(none)", mix_multiplier=2.0, api_name="/compare_mix"
    )
    assert list(none) == list(old)  # the app's own "(none)" label means no mix, as "" does
    mixed = client.predict(
        PROMPT, 1.0, layer, max_new_tokens=TOKENS, mix_behavior="formality", mix_multiplier=2.0, api_name="/compare_mix"
    )
    v = embedded_engine.vectors_for("refusal").vector(layer)
    v2 = embedded_engine.vectors_for("formality").vector(layer)
    expected = embedded_engine.compare(
        [{"role": "user", "content": PROMPT}],
        v,
        layer,
        1.0,
        SamplingSettings(max_new_tokens=TOKENS),
        mix=Mix(2.0, vector=v2),
    ).texts
    assert list(mixed) == expected
    with pytest.raises(AppError, match="mixed with itself"):  # as the app refuses it
        client.predict(PROMPT, 1.0, layer, mix_behavior="refusal", mix_multiplier=1.0, api_name="/compare_mix")
    with pytest.raises(AppError, match="the app's slider range"):  # the slider's ±10, not the multiplier cap
        client.predict(PROMPT, 1.0, layer, mix_behavior="formality", mix_multiplier=50.0, api_name="/compare_mix")
    with pytest.raises(AppError, match="not a path"):
        client.predict(PROMPT, 1.0, layer, mix_behavior="../refusal", mix_multiplier=1.0, api_name="/compare_mix")
