"""Helpers shared by the scheduler tests (test_scheduler_static, test_scheduler_compiled): three different users'
requests, a request's tokens when it runs alone, and submitting several at once."""

from __future__ import annotations

import time

from steering.core.hooks import LayerSteering, SteeringPlan
from steering.decode.generation import SamplingSettings, generate
from steering.decode.scheduler import Request, Scheduler

SHORT, LONG = "x", "Hi there, tell me a long story please, with dragons, a castle and a brave knight in it."


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def user(i: int, vectors, tokens: int, text: str = LONG, **kwargs) -> Request:
    """Three different users: own vector, layer, multipliers, operator, sampling settings and seed."""
    plans = [
        SteeringPlan.addition(1, vectors[0], [2.0, 0.0, -2.0]),
        SteeringPlan.addition(2, vectors[1], [1.0, 0.0, -3.0]),
        SteeringPlan(
            {layer: LayerSteering.build(vectors[2], [0.0] * 3, [1.0, 0.0, 1.0], [3.0, 0.0, 0.0]) for layer in (1, 3)}
        ),
    ]
    settings = [
        SamplingSettings(max_new_tokens=tokens),
        SamplingSettings(max_new_tokens=tokens, temperature=0.8, top_p=0.9, seed=3),
        SamplingSettings(max_new_tokens=tokens, temperature=1.0, seed=7),
    ]
    return Request([conv(text)] * 3, plans[i], settings[i], **kwargs)


def alone(lm, req: Request) -> list[list[int]]:
    """The request's tokens from generation.generate (eager, dynamic cache), nobody else in the batch."""
    with lm.lock:
        return generate(lm.model, lm.tokenizer, req.conversations, steer=req.plan, settings=req.settings).token_ids


def submit_together(sched: Scheduler, lm, requests: list[Request]):
    """Submit while the worker waits for the model's lock: all are admitted (prefilled together) before step one."""
    with lm.lock:
        tickets = [sched.submit(r) for r in requests]
        time.sleep(0.05)
    return tickets
