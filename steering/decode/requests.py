"""A scheduler request and its state: what a user submits (Request), what they wait on (Ticket), the
scheduler's counters (SchedulerStats) and a decoding request's rows (ActiveRequest)."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from steering.core.hooks import SteeringPlan
from steering.core.prompts import Message
from steering.decode.generation import GenerationResult
from steering.decode.sampling import SamplingSettings, TokenChoice
from steering.decode.tokens import Replies


@dataclass
class Request:
    """One user's generation: one reply per conversation (row), all rows steered by `plan`.

    Args:
        conversations: one conversation (list of {"role", "content"} messages) per row.
        plan: a hooks.SteeringPlan with one value per row, or None (no steering).
        settings: max_new_tokens, temperature, top_p, seed (this request's own random stream).
        system_prompt: the system prompt of every row (None: the template's default).
        on_text: called with the rows' texts after every step (streaming); an exception in it fails
            this request only.
        stop_event: set it to end this request early (its result has stopped=True); others go on.
        ignore_eos: generate exactly max_new_tokens per row (the benchmark).
        meter: a steering.ui.meter.Meter reading this request's rows (one (rows,) value per step, the pass that
            chose the token, before its block's own steering), as generate(steering_context=meter...) does.
    """

    conversations: Sequence[Sequence[Message]]
    plan: SteeringPlan | None = None
    settings: SamplingSettings = SamplingSettings()
    system_prompt: str | None = None
    on_text: Callable[[list[str]], None] | None = None
    stop_event: threading.Event | None = None
    ignore_eos: bool = False
    meter: Any = None


@dataclass
class Ticket:
    """A submitted request: wait() for its GenerationResult; times (time.perf_counter seconds) and how
    many decoding steps it shared with other requests (`shared_steps`, 0 when it ran alone)."""

    request: Request
    submitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: float | None = None
    shared_steps: int = 0
    most_requests: int = 0  # the most requests in the batch during one of its steps (itself included)
    joined_running: bool = False  # admitted while another request was already decoding
    result: GenerationResult | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> GenerationResult:
        """The request's result; re-raises the request's own error. Raises TimeoutError after `timeout` s."""
        if not self.done.wait(timeout):
            raise TimeoutError("the request did not finish in time")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass
class SchedulerStats:
    """Counters for tests, the app and the benchmark (each field's comment says what it counts)."""

    steps: int = 0  # batched decoding steps run
    prefills: int = 0  # prefill forward passes run (requests admitted together share one)
    most_prefilled: int = 0  # the most requests prefilled in one forward pass
    requests: int = 0  # requests finished (any way)
    joined_running: int = 0  # requests admitted while another one was decoding (a late joiner)
    most_requests: int = 0  # the largest batch seen, in requests
    most_rows: int = 0  # ... and in rows
    refused: int = 0  # requests refused because the queue was full
    # (step, requests, rows) of the last 1000 steps
    batch_log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1000))


class ActiveRequest:
    """A request that is decoding: its rows (a contiguous slice of the batch), its token choice (sampling.
    TokenChoice: its own seeded random stream and end-of-sequence state) and its replies (tokens.Replies).

    Args:
        ticket: the submitted request.
        steer_from: each row's first steered absolute position.
        choice: the request's token choice.
        replies: the request's replies (streaming through request.on_text).
    """

    def __init__(self, ticket: Ticket, steer_from: list[int], choice: TokenChoice, replies: Replies) -> None:
        self.ticket = ticket
        self.request = ticket.request
        self.rows = len(steer_from)
        self.steer_from = steer_from
        self.choice = choice
        self.replies = replies
        self.stopped = False

    def take(self, tokens: list[int]) -> None:
        """Record one step's chosen tokens (tokens.Replies, as generate() does) and stream the texts."""
        self.replies.take(tokens)

    @property
    def complete(self) -> bool:
        """Every row ended, or max_new_tokens steps were taken."""
        return self.replies.all_finished or self.replies.steps >= self.request.settings.max_new_tokens

    def result(self) -> GenerationResult:
        """The request's GenerationResult (its tokens so far; stopped when it was stopped)."""
        return GenerationResult.of(self.replies, self.stopped)
