"""The scheduler's lookahead (issue 12: a lone user as fast as FastPath.generate): step k+1 is queued before step
k's tokens are read (steering/decode/stepping.py). On the CPU there is no asynchronous device, so the reader is
synchronous (.tolist()), but the order and the bookkeeping are the CUDA path's: these tests force `lookahead=True`
(and compare with `lookahead=False`) on the eager and the static-cache scheduler, and would fail if a token
computed after a request's end leaked into it (end-of-turn, max_new_tokens, a stop, a join right after)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import steering.decode.generation as generation_module
import steering.decode.prefill as prefill_module
from steering.core.hooks import SteeringPlan
from steering.decode.generation import SamplingSettings, generate
from steering.decode.scheduler import Request, Scheduler
from steering.decode.tokens import host_tokens

TEXT = "Hi there, tell me a long story please, with dragons, a castle and a brave knight in it."


@pytest.fixture(scope="module")
def lm(static_lm):
    return static_lm  # conftest: static cache, persistent hooks, no graphs


@pytest.fixture(scope="module")
def vector():
    return torch.randn(64, generator=torch.Generator().manual_seed(2)) * 4.0


@pytest.fixture(params=["eager", "static"])
def kind(request):
    return request.param


def scheduler(lm, kind: str, lookahead: bool = True, **kwargs) -> Scheduler:
    return Scheduler(lm, fast_path=lm.fast_path if kind == "static" else None, lookahead=lookahead, **kwargs)


def request(vector, tokens: int, sampled: bool = False, text: str = TEXT, **kwargs) -> Request:
    settings = (
        SamplingSettings(max_new_tokens=tokens, temperature=0.9, top_p=0.95, seed=5)
        if sampled
        else SamplingSettings(max_new_tokens=tokens)
    )
    plan = SteeringPlan.addition(1, vector, [2.0, 0.0, -2.0])
    return Request([[{"role": "user", "content": text}]] * 3, plan, settings, **kwargs)


def alone(lm, req: Request) -> tuple[list[list[int]], list[list[str]]]:
    """The request's tokens and streamed texts (one list per step) from generation.generate, nobody else there."""
    streamed: list[list[str]] = []
    with lm.lock:
        result = generate(
            lm.model, lm.tokenizer, req.conversations, steer=req.plan, settings=req.settings, on_text=streamed.append
        )
    return result.token_ids, streamed


def streaming(req: Request) -> list[list[str]]:
    """Record the request's streamed texts (one list per step taken)."""
    seen: list[list[str]] = []
    req.on_text = seen.append
    return seen


def submit_together(sched: Scheduler, lm, requests: list[Request]):
    """Submit while the worker waits for the model's lock: all are prefilled together before step one."""
    with lm.lock:
        tickets = [sched.submit(r) for r in requests]
        time.sleep(0.05)
    return tickets


def test_host_tokens_off_cuda_is_a_plain_read():
    chosen = torch.tensor([3, 1, 4])
    assert host_tokens(chosen)() == [3, 1, 4]


def test_the_default_is_synchronous_and_lookahead_is_opt_in(lm):
    assert Scheduler(lm).lookahead is False  # off by default on every device (the scheduler's docstring says why)
    assert Scheduler(lm, lookahead=True).lookahead is True


@pytest.mark.parametrize("lookahead", [True, False])
def test_a_lone_request_takes_no_step_past_its_budget(lm, vector, kind, lookahead):
    """max_new_tokens ends the request with the step read: no extra step is queued for it (the batch would
    otherwise run one more forward pass per request), and it streams exactly its tokens."""
    sched = scheduler(lm, kind, lookahead)
    req = request(vector, 9)
    seen = streaming(req)
    expected_tokens, expected_texts = alone(lm, req)
    result = sched.submit(req).wait(60)
    assert result.token_ids == expected_tokens
    assert all(len(row) <= 9 for row in result.token_ids)
    assert seen == expected_texts  # one callback per step, the same texts
    assert sched.stats.steps == len(expected_texts) - 1  # the first token comes from the prefill
    sched.close()


def test_a_request_ending_at_end_of_turn_discards_the_step_in_flight(lm, vector, kind, monkeypatch):
    """One request's rows all reach an end-of-turn token at its 4th token while two others go on: the token its
    rows chose in the step already queued must not reach it (tokens, streamed texts, number of callbacks)."""
    probe = request(vector, 12)
    with lm.lock:
        rows = generate(
            lm.model, lm.tokenizer, probe.conversations, steer=probe.plan, settings=probe.settings, ignore_eos=True
        ).token_ids
    ends = {row[3] for row in rows}  # every row of the greedy request ends at its 4th token (or earlier)
    monkeypatch.setattr(prefill_module, "eos_token_ids", lambda model, tokenizer: ends)
    monkeypatch.setattr(generation_module, "eos_token_ids", lambda model, tokenizer: ends)
    short, long_sampled, long_greedy = request(vector, 12), request(vector, 20, True), request(vector, 16, text="Bye")
    seen = [streaming(r) for r in (short, long_sampled, long_greedy)]
    expected = [alone(lm, r) for r in (short, long_sampled, long_greedy)]
    assert len(expected[0][1]) <= 4  # it did end early
    sched = scheduler(lm, kind)
    tickets = submit_together(sched, lm, [short, long_sampled, long_greedy])
    results = [t.wait(60) for t in tickets]
    assert [r.token_ids for r in results] == [tokens for tokens, _ in expected]
    assert seen == [texts for _, texts in expected]
    sched.close()


def test_a_join_right_after_a_request_ends(lm, vector, kind):
    """A request submitted from the last streaming callback of another (its rows leave with a step in flight)
    joins the next step and gets what it gets alone; so does the one that keeps running."""
    first, running, late = request(vector, 4), request(vector, 24, True), request(vector, 10, text="Late")
    expected = [alone(lm, r)[0] for r in (first, running, late)]
    sched = scheduler(lm, kind)
    joiner: list = []
    calls: list[list[str]] = []

    def on_first(texts):
        calls.append(texts)
        if len(calls) == 4:  # its 4th and last token: it leaves (a step of the others in flight), the late one joins
            joiner.append((sched.submit(late), sched.stats.steps))

    first.on_text = on_first
    tickets = submit_together(sched, lm, [first, running])
    results = [t.wait(60) for t in tickets]
    assert joiner, "the late request was not submitted"
    ticket, steps_then = joiner[0]
    assert [r.token_ids for r in results] + [ticket.wait(60).token_ids] == expected
    assert ticket.joined_running and len(calls) == 4
    after = [rows for step, _, rows in sched.stats.batch_log if step > steps_then]
    assert 6 in after and 9 not in after  # the late one decoded with the running one, the first had left
    sched.close()


@pytest.mark.parametrize("lookahead", [True, False])
def test_a_stop_mid_lookahead_keeps_what_was_streamed_and_only_its_rows(lm, vector, kind, lookahead):
    """Stopped from its own 3rd streaming callback (a step already queued behind it): the stopped request's
    result is exactly the 3 tokens it streamed (the step in flight discarded), the other one is untouched."""
    stop = threading.Event()
    stopped, other = request(vector, 20, stop_event=stop), request(vector, 14, True)
    expected_stopped, expected_other = alone(lm, stopped)[0], alone(lm, other)[0]
    seen: list[list[str]] = []

    def on_text(texts):
        seen.append(texts)
        if len(seen) == 3:
            stop.set()

    stopped.on_text = on_text
    sched = scheduler(lm, kind, lookahead)
    first, second = submit_together(sched, lm, [stopped, other])
    result = first.wait(60)
    assert result.stopped and len(seen) == 3
    assert result.token_ids == [row[: len(tokens)] for row, tokens in zip(expected_stopped, result.token_ids)]
    assert max(len(row) for row in result.token_ids) == 3
    assert second.wait(60).token_ids == expected_other
    sched.close()


def test_a_failing_callback_mid_lookahead_fails_only_its_request(lm, vector, kind):
    """Its 2nd streaming callback raises (a step already queued behind it): it fails with that error, is never
    called again (the step in flight is discarded for it), and the other request gets what it gets alone."""
    broken, fine = request(vector, 12), request(vector, 12, True)
    expected = alone(lm, fine)[0]
    calls: list[list[str]] = []

    def explode(texts):
        calls.append(texts)
        if len(calls) == 2:
            raise RuntimeError("callback broke")

    broken.on_text = explode
    sched = scheduler(lm, kind)
    first, second = submit_together(sched, lm, [broken, fine])
    with pytest.raises(RuntimeError, match="callback broke"):
        first.wait(60)
    assert second.wait(60).token_ids == expected
    assert len(calls) == 2
    sched.close()
