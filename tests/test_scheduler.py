"""steering.decode.scheduler on a tiny random Llama: requests of several users in one batch (issue 12, item 1).

Every request's result is compared with the same request run alone through generation.generate (the
single-request path the scheduler's prefill mirrors), token for token, greedy and sampled.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from fixtures import PATHS, make_tiny_lm

from steering.config import ModelSettings
from steering.core.hooks import SteeringPlan
from steering.decode.generation import SamplingSettings, generate
from steering.decode.scheduler import Request, Scheduler
from steering.errors import SteeringError

QUESTIONS = ["What's your favorite planet?", "Hi there, tell me a long story please.", "x"]


@pytest.fixture(scope="module")
def lm(tiny_tokenizer):
    return make_tiny_lm(tiny_tokenizer)


@pytest.fixture(scope="module")
def vectors():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(64, generator=generator) * 4.0 for _ in range(3)]


def request(i: int, vectors, tokens: int | None = None, **kwargs) -> Request:
    """Three different users: own question, vector, layer, multipliers, sampling settings and seed."""
    plans = [
        SteeringPlan.addition(1, vectors[0], [2.0, 0.0, -2.0]),
        SteeringPlan.addition(2, vectors[1], [1.0, 0.0, -3.0]),
        SteeringPlan.addition(3, vectors[2], [5.0, 0.0, -5.0]),
    ]
    settings = [
        SamplingSettings(max_new_tokens=tokens or 16),
        SamplingSettings(max_new_tokens=tokens or 24, temperature=0.8, top_p=0.9, seed=3),
        SamplingSettings(max_new_tokens=tokens or 10, temperature=1.0, seed=7),
    ]
    conversation = [{"role": "user", "content": QUESTIONS[i]}]
    return Request([conversation] * 3, plans[i], settings[i], **kwargs)


def alone(lm, req: Request) -> list[list[int]]:
    """The request's tokens from generation.generate, with nobody else in the batch."""
    with lm.lock:  # the model's users take turns on its lock (the scheduler holds it while it decodes)
        return generate(
            lm.model,
            lm.tokenizer,
            req.conversations,
            steer=req.plan,
            settings=req.settings,
            system_prompt=req.system_prompt,
        ).token_ids


def submit_together(scheduler: Scheduler, lm, requests: list[Request]):
    """Submit while the worker waits for the model's lock, so all requests are admitted before step one."""
    with lm.lock:
        tickets = [scheduler.submit(r) for r in requests]
        time.sleep(0.05)
    return tickets


def test_three_users_in_one_batch_get_what_each_gets_alone(lm, vectors):
    scheduler = Scheduler(lm, max_requests=4)
    requests = [request(i, vectors) for i in range(3)]
    expected = [alone(lm, r) for r in requests]
    tickets = submit_together(scheduler, lm, requests)
    results = [t.wait(60) for t in tickets]
    assert [r.token_ids for r in results] == expected  # greedy (user 0) and sampled (users 1, 2) alike
    assert scheduler.stats.most_requests == 3 and scheduler.stats.most_rows == 9
    assert all(t.shared_steps > 0 for t in tickets)
    # steering really acted per row: the steered panes differ from the unsteered one
    assert all(r.token_ids[0] != r.token_ids[1] for r in results)
    assert not lm.lock.locked()  # the model is free once the last request is answered


def test_a_late_joiner_joins_the_running_batch(lm, vectors):
    scheduler = Scheduler(lm, max_requests=4)
    first, late = request(0, vectors, tokens=40), request(1, vectors, tokens=12)
    expected = [alone(lm, first), alone(lm, late)]
    started = threading.Event()
    first.on_text = lambda texts: started.set()
    running = scheduler.submit(first)
    assert started.wait(30)
    steps_before = scheduler.stats.steps
    assert lm.lock.locked()  # the busy signal while a batch decodes
    joiner = scheduler.submit(late)
    assert [running.wait(60).token_ids, joiner.wait(60).token_ids] == expected
    assert joiner.joined_running and not running.joined_running
    assert scheduler.stats.joined_running == 1
    assert joiner.shared_steps == 11  # every decoding step of the joiner ran with the first request
    rows = [rows for step, _, rows in scheduler.stats.batch_log if step > steps_before]
    assert 6 in rows and rows[-1] == 3  # the batch grew to 6 rows, then shrank back when the joiner left


def test_stop_cancels_only_its_own_rows(lm, vectors):
    scheduler = Scheduler(lm, max_requests=4)
    stop = threading.Event()
    seen = []
    stopped = request(
        0, vectors, tokens=60, stop_event=stop, on_text=lambda texts: (seen.append(1), len(seen) >= 3 and stop.set())
    )
    other = request(1, vectors, tokens=20)
    expected = alone(lm, other)
    tickets = submit_together(scheduler, lm, [stopped, other])
    cut, full = tickets[0].wait(60), tickets[1].wait(60)
    assert cut.stopped and max(cut.new_tokens) < 60
    assert not full.stopped and full.token_ids == expected


def test_a_full_queue_is_refused_with_one_line(lm, vectors):
    scheduler = Scheduler(lm, max_requests=1, max_waiting=1)
    gate, inside = threading.Event(), threading.Event()
    first = request(0, vectors, tokens=8, on_text=lambda texts: (inside.set(), gate.wait(30)))
    running = scheduler.submit(first)
    assert inside.wait(30)
    waiting = scheduler.submit(request(1, vectors, tokens=4))
    with pytest.raises(SteeringError, match=r"busy.*try again") as info:
        scheduler.submit(request(2, vectors, tokens=4))
    assert "\n" not in str(info.value) and scheduler.stats.refused == 1
    gate.set()
    assert running.wait(60).token_ids == alone(lm, request(0, vectors, tokens=8))
    assert waiting.wait(60).new_tokens == [4, 4, 4]
    scheduler.submit(request(2, vectors, tokens=4)).wait(60)  # room again


def test_a_bad_request_never_touches_the_others(lm, vectors):
    scheduler = Scheduler(lm, max_requests=4)
    # refused before it is queued: rows that do not match, a layer out of range
    with pytest.raises(ValueError, match="rows"):
        scheduler.submit(
            Request([[{"role": "user", "content": "hi"}]], SteeringPlan.addition(1, vectors[0], [1.0, 2.0]))
        )
    with pytest.raises(SteeringError, match="layer"):
        scheduler.submit(Request([[{"role": "user", "content": "hi"}]], SteeringPlan.addition(9, vectors[0], [1.0])))

    def broken(texts):
        if len(texts[0]) > 3:
            raise RuntimeError("this user's callback broke")

    bad = request(2, vectors, tokens=30, on_text=broken)
    good = request(0, vectors)
    tickets = submit_together(scheduler, lm, [bad, good])
    with pytest.raises(RuntimeError, match="callback broke"):
        tickets[0].wait(60)
    assert tickets[1].wait(60).token_ids == alone(lm, good)
    assert tickets[1].shared_steps > 0


@pytest.mark.parametrize("path", sorted(PATHS))
def test_engine_compare_of_two_users_runs_in_one_batch(tiny_tokenizer, vectors, path):
    """Eager path: the scheduler's DynamicCache batch; fast path (static cache and persistent hooks, the compiled
    step with dynamo's eager backend here; CUDA graphs on a GPU): the static-cache batch of the same scheduler."""
    from fixtures import make_engine

    from steering.config import load_config, override

    config = override(load_config(), {"app.concurrency_per_model": 4})  # the batch limit: four requests
    engine = make_engine(tiny_tokenizer, PATHS[path], config)
    assert (engine.fast_path is None) == (path == "eager")
    assert engine.scheduler.fast_path is engine.fast_path
    settings = [SamplingSettings(max_new_tokens=10), SamplingSettings(max_new_tokens=10, temperature=0.7, seed=5)]
    calls = [
        dict(conversations=[{"role": "user", "content": q}], vector=v, layer=layer, multiplier=m, settings=s)
        for q, v, layer, m, s in zip(QUESTIONS, vectors, (1, 3), (3.0, -2.0), settings)
    ]
    expected = [engine.compare(**call).token_ids for call in calls]
    assert engine.scheduler.stats.most_requests == 1
    results: list = [None, None]
    with engine.lm.lock:  # both calls reach the scheduler before its first step
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, engine.compare(**calls[i]))) for i in range(2)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(engine.scheduler._waiting) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(60)
    assert [r.token_ids for r in results] == expected
    assert engine.scheduler.stats.most_requests == 2
    assert not engine.lm.lock.locked()


def test_on_the_fast_path_a_metered_request_runs_alone_and_compiled_requests_share_the_static_batch(
    tiny_tokenizer, vectors
):
    """A meter is a Python hook (no place in a CUDA graph): with a fast path its request runs alone, eagerly,
    outside the scheduler. Compiled (any backend, inductor too) the Engine's scheduler batches in the fast path's
    static caches, through the step compiled at start for the warmed buckets (decode/compiled_batch.py)."""
    from fixtures import make_engine

    from steering.decode.dispatch import scheduler_for
    from steering.ui.meter import Meter

    engine = make_engine(tiny_tokenizer, ModelSettings(name="tiny", compile=True, compile_backend="eager"))
    assert engine.fast_path is not None and engine.scheduler.fast_path is engine.fast_path
    call = dict(vector=vectors[0], layer=1, multiplier=2.0, settings=SamplingSettings(max_new_tokens=6))
    meter = Meter(vectors[0], 1, 2.0)
    result = engine.compare([{"role": "user", "content": QUESTIONS[0]}], meter=meter, **call)
    assert result.new_tokens == [6, 6, 6] and engine.scheduler.stats.requests == 0
    assert len(meter.values(result.new_tokens)[0]) == 6
    assert engine.compare([{"role": "user", "content": QUESTIONS[0]}], **call).token_ids == result.token_ids
    assert engine.scheduler.stats.requests == 1  # the same request without a meter: through the static batch
    assert engine.fast_path.batch_steps.compiled_steps >= 5  # bucket 4 was compiled at start (enable_fast_path)
    engine.fast_path._backend = "inductor"
    assert scheduler_for(engine, engine.fast_path).fast_path is engine.fast_path
    assert not engine.lm.lock.locked()


def test_a_metered_request_reads_its_own_rows_in_a_shared_batch(lm, vectors):
    """The behavior meter (steering/ui/meter.py) of one user in a batch reads that user's rows only, the same
    values as alone (generate with the meter's steering context)."""
    from steering.core.hooks import steer
    from steering.ui.meter import Meter

    metered = request(0, vectors, tokens=10)
    alone_meter = Meter(vectors[0], 1, 2.0)
    with lm.lock:
        expected = generate(
            lm.model,
            lm.tokenizer,
            metered.conversations,
            steer=metered.plan,
            settings=metered.settings,
            steering_context=alone_meter.steering_context(steer),
        )
    metered.meter = Meter(vectors[0], 1, 2.0)
    scheduler = Scheduler(lm)
    tickets = submit_together(scheduler, lm, [request(1, vectors, tokens=14), metered])
    result = tickets[1].wait(60)
    assert tickets[1].shared_steps > 0 and result.token_ids == expected.token_ids
    got, want = metered.meter.values(result.new_tokens), alone_meter.values(expected.new_tokens)
    assert len(got) == 3 and all(len(row) == 10 for row in got)
    assert [v for row in got for v in row] == pytest.approx([v for row in want for v in row], abs=2e-5)


def test_bands_and_projection_operators_of_several_users_in_one_batch(lm, vectors):
    """A clamp on a band of layers, an ablation and a plain addition, each a different user, in one batch."""
    from steering.core.hooks import LayerSteering

    conversation = [[{"role": "user", "content": QUESTIONS[1]}]]
    clamp_band = SteeringPlan(
        {
            layer: LayerSteering.build(vectors[0], [0.0, 0.0], project=[1.0, 0.0], target=[3.0, 0.0])
            for layer in (1, 2, 3)
        }
    )
    ablate = SteeringPlan({2: LayerSteering.build(vectors[1], [0.0], project=[1.0], target=[0.0])})
    add = SteeringPlan.addition(0, vectors[2], [-4.0])
    requests = [
        Request(conversation * 2, clamp_band, SamplingSettings(max_new_tokens=12)),
        Request(conversation, ablate, SamplingSettings(max_new_tokens=8, temperature=0.9, seed=11)),
        Request(conversation, add, SamplingSettings(max_new_tokens=10)),
    ]
    expected = [alone(lm, r) for r in requests]
    scheduler = Scheduler(lm)
    tickets = submit_together(scheduler, lm, requests)
    assert [t.wait(60).token_ids for t in tickets] == expected
    assert scheduler.stats.most_rows == 4 and expected[0][0] != expected[0][1]  # the clamp acted


def test_stop_of_a_request_waiting_for_room_ends_it_at_once(lm, vectors):
    scheduler = Scheduler(lm, max_requests=1)
    stop_first = threading.Event()
    running = scheduler.submit(request(0, vectors, tokens=400, stop_event=stop_first))
    stop = threading.Event()
    waiting = scheduler.submit(request(1, vectors, tokens=8, stop_event=stop))
    stop.set()
    result = waiting.wait(30)
    assert result.stopped and result.new_tokens == [0, 0, 0]
    assert not running.done.is_set()  # ended while the batch was still full
    stop_first.set()
    assert running.wait(30).stopped


def test_a_cache_that_cannot_be_merged_runs_requests_one_batch_after_another(lm, vectors, monkeypatch):
    """Sliding-window / quantized cache layers are not merged: the second request waits for the first."""
    from transformers import DynamicCache

    import steering.decode.admission as scheduler_module

    with lm.lock:
        cache = DynamicCache(config=lm.model.config)
        lm.model(input_ids=torch.tensor([[5, 6, 7]]), cache=cache, use_cache=True)
    assert scheduler_module.mergeable(cache) and not scheduler_module.mergeable(DynamicCache(config=lm.model.config))
    monkeypatch.setattr(scheduler_module, "mergeable", lambda cache: False)
    scheduler = Scheduler(lm)
    requests = [request(0, vectors, tokens=6), request(1, vectors, tokens=6)]
    tickets = submit_together(scheduler, lm, requests)
    assert [t.wait(60).token_ids for t in tickets] == [alone(lm, r) for r in requests]
    assert scheduler.stats.most_requests == 1 and tickets[1].first_token >= tickets[0].finished


def test_close_ends_the_worker_and_what_is_still_queued(lm, vectors):
    """close() (also run at interpreter exit): the decoding request ends stopped after the step in progress, a
    waiting one unstarted, the worker thread is joined, the model's lock is free, later submits get one line."""
    scheduler = Scheduler(lm, max_requests=1, max_waiting=2)
    gate, inside = threading.Event(), threading.Event()
    running = scheduler.submit(request(0, vectors, tokens=40, on_text=lambda texts: (inside.set(), gate.wait(30))))
    assert inside.wait(30)
    waiting = scheduler.submit(request(1, vectors, tokens=4))
    worker = scheduler._worker
    assert worker is not None and worker.is_alive()
    closer = threading.Thread(target=scheduler.close)
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(30)
    assert not closer.is_alive() and not worker.is_alive()
    cut, never = running.wait(5), waiting.wait(5)
    assert cut.stopped and max(cut.new_tokens) < 40
    assert never.stopped and never.new_tokens == [0, 0, 0]
    assert not lm.lock.locked()
    with pytest.raises(SteeringError, match="shutting down") as info:
        scheduler.submit(request(1, vectors, tokens=4))
    assert "\n" not in str(info.value)
    scheduler.close()  # idempotent


def test_an_idle_worker_is_joined_by_close(lm, vectors):
    scheduler = Scheduler(lm, max_requests=2)
    assert scheduler.run(request(2, vectors, tokens=3)).new_tokens == [3, 3, 3]
    worker = scheduler._worker
    assert worker is not None and worker.is_alive()  # idle-waiting for the next request
    scheduler.close(timeout=10)
    assert not worker.is_alive()


EXIT_SCRIPT = r"""
import atexit, os, sys, threading

def no_worker_left():  # registered first, so it runs after steering.decode.scheduler's own exit handler
    alive = [t.name for t in threading.enumerate() if t.name == "steering-scheduler" and t.is_alive()]
    if alive:
        sys.stderr.write(f"scheduler workers still alive at exit: {alive}\n")
        sys.stderr.flush()
        os._exit(3)

atexit.register(no_worker_left)
import torch
from steering.bench.users import run_users
from steering.bench.users_setup import synthetic_lm
from steering.decode.generation import SamplingSettings
from steering.decode.scheduler import Request, Scheduler

torch.set_num_threads(1)
lm = synthetic_lm(2, tiny_cpu=True)
vector = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
users = run_users(lm, [1, 2], 3, lambda layer: vector, base_layer=1, multiplier=2.0, repeats=1)
left_open = Scheduler(lm)  # as an Engine's: never closed by the caller, its worker idle-waiting at exit
left_open.run(Request([[{"role": "user", "content": "hi"}]], None, SamplingSettings(max_new_tokens=3)))
print("done", users["runs"][1]["most_requests_in_batch"])
"""


def test_a_process_that_ran_the_scheduler_exits_cleanly(tmp_path):
    """`bench --users 1 2 4` used to end with "terminate called without an active exception" (a C++ abort at
    interpreter exit, the scheduler's worker threads still alive): a short users bench and a scheduler left
    open, in a subprocess, exit 0 with no worker alive at exit and no abort."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert "terminate called" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["done", "2"]


def test_in_the_app_gradios_queue_is_the_limit_users_meet(tiny_tokenizer):
    """The README's "Bounded" item: the app lets at most app.concurrency_per_model model events run at once (Gradio's
    concurrency group "model"), exactly the scheduler's batch limit, so an app user's request never waits inside
    the scheduler and never gets its "the model is busy" refusal; the waiting happens in Gradio's queue of
    app.max_queue, whose refusal is Gradio's own "Queue is full" message. The scheduler's own message is what
    callers of the Engine see (Python, several threads): checked by test_a_full_queue_is_refused_with_one_line."""
    from fixtures import make_engine

    import app
    from steering.config import load_config, override

    config = override(load_config(), app={"concurrency_per_model": 2, "max_queue": 3})
    engine = make_engine(tiny_tokenizer, ModelSettings(name="tiny"), config)
    demo = app.build_app(engine, config)
    assert demo._queue.max_size == 3 == engine.scheduler.max_waiting
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == "model"]
    assert len(model_events) >= 2  # Send and Retry at least (also the API, Calibrate, the strip)
    assert {fn.concurrency_limit for fn in model_events} == {2} == {engine.scheduler.max_requests}
    turns = [fn for fn in demo.fns.values() if fn.name in ("send", "retry", "compare")]
    assert turns and all(fn.concurrency_id == "model" for fn in turns)  # every turn counts against the group


def mixed_requests(vectors) -> list[Request]:
    """Four users whose rows differ in every way a request can: layer, vector, multipliers, greedy / sampled
    (own seeds), system prompt, conversation length, rows."""
    long_chat = [
        {"role": "user", "content": "Tell me about the sea."},
        {"role": "assistant", "content": "It is large and salty."},
        {"role": "user", "content": "And the sky, in many more words than before?"},
    ]
    own = Request(
        [long_chat, [{"role": "user", "content": "hi"}]],
        SteeringPlan.addition(0, vectors[1], [-4.0, 3.0]),
        SamplingSettings(max_new_tokens=9, temperature=0.7, seed=11),
        system_prompt="You answer in one short line.",
    )
    return [request(0, vectors, tokens=12), request(1, vectors, tokens=14), request(2, vectors, tokens=8), own]


def test_requests_waiting_together_are_prefilled_in_one_forward_and_each_gets_what_it_gets_alone(lm, vectors):
    """issue 12: requests waiting at admission share ONE prefill forward pass (not one each, one after another)
    and each still gets exactly its tokens alone (greedy and sampled: its own settings and seed)."""
    requests = mixed_requests(vectors)
    expected = [alone(lm, r) for r in requests]
    scheduler = Scheduler(lm, max_requests=4)
    forwards = []
    handle = lm.model.register_forward_hook(lambda module, args, kwargs, output: forwards.append(1), with_kwargs=True)
    try:
        tickets = submit_together(scheduler, lm, requests)
        results = [t.wait(60) for t in tickets]
    finally:
        handle.remove()
    assert [r.token_ids for r in results] == expected
    assert scheduler.stats.prefills == 1 and scheduler.stats.most_prefilled == 4
    # one prefix pass (the template's system prompt shared by most rows would not be: it differs), one
    # prefill, then one forward per decoding step: nothing per request
    assert len(forwards) <= 2 + scheduler.stats.steps
    assert len({t.first_token for t in tickets}) == 1  # all four got their first token from the same pass


def test_the_batch_limit_caps_a_combined_prefill_in_fifo_order(lm, vectors):
    requests = mixed_requests(vectors)
    expected = [alone(lm, r) for r in requests]
    scheduler = Scheduler(lm, max_requests=3)
    tickets = submit_together(scheduler, lm, requests)
    assert [t.wait(60).token_ids for t in tickets] == expected
    assert scheduler.stats.most_prefilled == 3 and scheduler.stats.prefills == 2
    assert tickets[3].first_token > max(t.first_token for t in tickets[:3])  # the fourth waited for room


def test_a_bad_request_in_a_combined_prefill_fails_alone(lm, vectors, monkeypatch):
    """One request's prompts fail to build, another's callback fails on its first token: each fails with its
    own error; the others, prefilled in the same pass, get what they get alone."""
    requests = mixed_requests(vectors)
    expected = [alone(lm, r) for r in requests]
    scheduler = Scheduler(lm, max_requests=4)
    built = scheduler._prompt_batch

    def prompt_batch(req):
        if req is requests[1]:
            raise SteeringError("request 1's prompt is broken")
        return built(req)

    monkeypatch.setattr(scheduler, "_prompt_batch", prompt_batch)

    def broken(texts):
        raise RuntimeError("user 2's callback broke")

    requests[2].on_text = broken
    tickets = submit_together(scheduler, lm, requests)
    with pytest.raises(SteeringError, match="request 1's prompt is broken"):
        tickets[1].wait(60)
    with pytest.raises(RuntimeError, match="user 2's callback broke"):
        tickets[2].wait(60)
    assert [tickets[0].wait(60).token_ids, tickets[3].wait(60).token_ids] == [expected[0], expected[3]]
    assert scheduler.stats.prefills == 1 and scheduler.stats.most_prefilled == 3
    assert not lm.lock.locked()


def test_a_failing_combined_prefill_falls_back_to_one_request_at_a_time(lm, vectors, monkeypatch):
    requests = mixed_requests(vectors)[:3]
    expected = [alone(lm, r) for r in requests]
    scheduler = Scheduler(lm, max_requests=4)

    def together(prepared):
        raise RuntimeError("out of memory in the combined prefill")

    monkeypatch.setattr(scheduler, "_prefill_together", together)
    tickets = submit_together(scheduler, lm, requests)
    assert [t.wait(60).token_ids for t in tickets] == expected
    assert scheduler.stats.prefills == 3 and scheduler.stats.most_prefilled == 1
    assert scheduler.stats.most_requests == 3  # still decoding in one batch
