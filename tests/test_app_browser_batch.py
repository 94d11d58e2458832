"""Two users in two browsers send at once with different α: both are answered from one batch of the
scheduler (steering/decode/scheduler.py), each with its own settings (issue 12)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from app_harness import running_app
from browser_helpers import browser_or_skip, captions, chromium, set_alpha, subtracted_caption, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PROMPT = "What's your favorite planet?"


def test_two_users_sending_at_once_share_one_batch(embedded_engine, monkeypatch):
    browser_or_skip()
    if embedded_engine.fast_path is not None and embedded_engine.scheduler.fast_path is None:
        pytest.skip("inductor's compiled step runs one request at a time (steering/decode/dispatch.py)")
    scheduler = embedded_engine.scheduler
    layer = embedded_engine.defaults.layer
    embedded_engine.vectors_for("refusal")  # validated and cached before the model is held below
    tickets = []
    real_submit = scheduler.submit
    monkeypatch.setattr(scheduler, "submit", lambda request: tickets.append(real_submit(request)) or tickets[-1])
    with running_app(embedded_engine, max_new_tokens=12) as url, chromium() as browser:
        pages = []
        for alpha in (2, 6):  # two users: two browser contexts, two Gradio sessions
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_text(f"Vector size at layer {layer}:").wait_for(timeout=60_000)
            set_alpha(page, alpha)
            page.locator("#prompt textarea").fill(PROMPT)
            pages.append(page)
        wait_for(lambda: not embedded_engine.lm.lock.locked(), 60, "the pages' own use of the model to end")
        steps_before = scheduler.stats.steps
        with embedded_engine.lm.lock:  # both messages reach the scheduler before its next step
            for page in pages:
                page.locator("#send").click()
            wait_for(lambda: len(tickets) == 2, 60, "both users' requests to reach the scheduler")
        for ticket in tickets:
            ticket.wait(180)
        for page, alpha in zip(pages, (2, 6)):
            wait_for(
                lambda: captions(page, "#pane-added") and "writing" not in captions(page, "#pane-added")[0],  # noqa: B023 (the closure runs within this iteration)
                60,
                "the answer's caption",
            )
            assert captions(page, "#pane-added")[0].startswith(f"+α = +{alpha} · layer {layer} · refusal")
            assert captions(page, "#pane-subtracted")[0].startswith(subtracted_caption(alpha, layer, embedded_engine))
        browser.close()
    # one batch: every decoding step since the sends carried both requests (6 rows) until the first left
    log = [(requests, rows) for step, requests, rows in scheduler.stats.batch_log if step > steps_before]
    assert log[0] == (2, 6) and all(t.shared_steps > 0 and t.most_requests == 2 for t in tickets)
    # each user's own settings: its multipliers on its own rows, and the text it gets alone
    from steering.compare import SIGNS

    vector = embedded_engine.vectors_for("refusal").vector(layer)

    def same_plan(plan, alpha) -> bool:
        want = embedded_engine.steering_plan(SIGNS, layer=layer, multiplier=alpha, vector=vector)
        return plan.layers.keys() == want.layers.keys() and all(
            torch.equal(getattr(plan.layers[k], name), getattr(want.layers[k], name))
            for k in want.layers
            for name in ("add", "project", "target")
        )

    assert sorted(alpha for t in tickets for alpha in (2, 6) if same_plan(t.request.plan, alpha)) == [2, 6]
    monkeypatch.undo()  # the runs alone below are not the users' requests
    for ticket in tickets:
        alone = embedded_engine.scheduler.run(replace(ticket.request, on_text=None, stop_event=None))
        assert ticket.result.token_ids == alone.token_ids
    assert tickets[0].result.texts[1] == tickets[1].result.texts[1]  # the unsteered pane, whoever shared the batch
