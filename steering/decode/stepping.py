"""The scheduler's decoding step (steering/decode/scheduler.py, steps 3-4): one forward pass for every row of
the running batch, each request's plan on its own rows, each request's token choice on its own logits; then
finished, stopped and failed requests leave (their rows dropped) and their tickets are answered.

Lookahead (the scheduler's `lookahead`, on by default on CUDA, as fast_path.FastPath.generate's
tokens.TokenReader): step k+1 is queued on the device (its inputs are step k's chosen tokens, still on the
device) before step k's tokens are read on the host, so the host's bookkeeping and streaming overlap the
device's work instead of stalling it once per step. Every row's step-k tokens come to the host in one copy
(pinned memory and an event of its own on CUDA). What a request gets stays exactly as without lookahead:

* a request whose token budget ends with the step in flight leaves the batch before the next step is queued
  (its rows take no extra step; its tokens are read after);
* a request stopped meanwhile leaves before the next step too, and the step in flight is discarded for it (as
  TokenReader does): its result is what it streamed, as without lookahead;
* a request found ended (every row at end-of-turn) or failed (its streaming callback raised) when step k is
  read has step k+1 in flight already: that step's tokens are discarded with its rows (its token choice, and
  so its random stream, is its own: nobody else's draws move).

Without lookahead (CPU) the same code reads each step right after queuing it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from steering.decode.generation import GenerationResult
from steering.decode.requests import ActiveRequest, SchedulerStats, Ticket
from steering.decode.running import RunningBatch
from steering.decode.static_batch import StaticBatch
from steering.decode.tokens import host_tokens


@dataclass
class Pending:
    """A queued decoding step whose tokens are not read yet: the requests it chose for, each with its
    (start, stop) in `read()`'s token list, and `read` (waits for that step only; returns every row's token)."""

    spans: list[tuple[ActiveRequest, int, int]]
    read: Callable[[], list[int]]

    def holds(self, active: ActiveRequest) -> bool:
        """Whether the step chose tokens for this request."""
        return any(a is active for a, _, _ in self.spans)


class Stepping:
    """The Scheduler's decoding steps and request endings (a mixin of scheduler.Scheduler, whose state it
    shares)."""

    lm: Any
    stats: SchedulerStats
    lookahead: bool
    _wake: threading.Condition
    _active: list[ActiveRequest]
    _batch: RunningBatch | StaticBatch | None
    _pending: Pending | None
    _holding: bool
    _waiting: Any

    @torch.inference_mode()
    def _step(self) -> None:
        """Queue one decoding step of every row of the batch, then read the step queued before it (lookahead)
        or this one; finished / stopped / failed requests leave."""
        old, self._pending = self._pending, None
        try:
            self._step_after(old)
        except BaseException as exc:
            for active, _, _ in old.spans if old is not None else []:  # those that left the batch, unread
                if not active.ticket.done.is_set() and not any(a is active for a in self._active):
                    self._finish(active, error=exc)
            raise

    def _step_after(self, old: Pending | None) -> None:
        # requests stopped since the last step leave (the step in flight is discarded for them, as
        # TokenReader does: their result is what they streamed); those whose budget ends with the step in
        # flight leave the batch too (it still counts for them: read below)
        for active in list(self._active):
            stop = active.request.stop_event
            if stop is not None and stop.is_set():
                active.stopped = True
                self._remove(active)
                self._finish(active)
            elif old is not None and old.holds(active):
                if active.replies.steps + 1 >= active.request.settings.max_new_tokens:
                    self._remove(active)
        new = self._launch() if self._active else None
        if self.lookahead:
            self._pending = new
            if old is not None:
                self._read(old)
            if self._pending is not None and not self._active:
                self._pending = None  # everybody in it left: its tokens are discarded
        else:
            for pending in (old, new):
                if pending is not None:
                    self._read(pending)

    def _launch(self) -> Pending:
        """Queue one forward pass of every row and each request's token choice; the batch advances to them."""
        model = self.lm.model
        rows = sum(a.rows for a in self._active)
        self.stats.steps += 1
        self.stats.most_requests = max(self.stats.most_requests, len(self._active))
        self.stats.most_rows = max(self.stats.most_rows, rows)
        self.stats.batch_log.append((self.stats.steps, len(self._active), rows))
        groups, start = [], 0
        for active in self._active:
            groups.append((start, start + active.rows, active.request.plan, active.steer_from, active.request.meter))
            start += active.rows
        assert self._batch is not None  # a batch is decoding
        with self._batch.steering(model, groups):
            logits = self._batch.forward(model)
        chosen: list[torch.Tensor] = []
        next_ids: list[torch.Tensor] = []
        spans: list[tuple[ActiveRequest, int, int]] = []
        for (start, stop, *_), active in zip(groups, self._active):
            chosen.append(active.choice(logits[start:stop]))  # its own stream and end-of-sequence state
            next_ids.append(active.choice.feed)
            spans.append((active, start, stop))
            if len(self._active) > 1:
                active.ticket.shared_steps += 1
            active.ticket.most_requests = max(active.ticket.most_requests, len(self._active))
        self._batch.advance(torch.cat(next_ids))
        return Pending(spans, host_tokens(torch.cat(chosen)))

    def _read(self, pending: Pending) -> None:
        """Take a queued step's tokens into each of its requests' replies (in order); the requests that are
        complete, stopped or whose streaming callback failed are answered (and leave the batch if still in it)."""
        tokens = pending.read()
        for active, start, stop in pending.spans:
            if active.ticket.done.is_set():
                continue
            error: BaseException | None = None
            try:
                active.take(tokens[start:stop])
            except BaseException as exc:  # noqa: BLE001 -- its streaming callback failed: only this request ends
                error = exc
            if error is None and not active.complete:
                continue
            if any(a is active for a in self._active):
                self._remove(active)
            self._finish(active, error=error)

    def _remove(self, active: ActiveRequest) -> None:
        """Drop a request's rows from the batch (cache, inputs, mask); trim padding nobody needs."""
        start = 0
        for other in self._active:
            if other is active:
                break
            start += other.rows
        self._active.remove(active)
        if not self._active:
            self._batch = None
        elif self._batch is not None:
            self._batch.drop(start, active.rows)

    def _finish(self, active: ActiveRequest, error: BaseException | None = None) -> None:
        ticket = active.ticket
        if error is not None:
            ticket.error = error
        else:
            ticket.result = active.result()
        self._done(ticket)

    def _finish_unstarted(self, ticket: Ticket) -> None:
        """A request stopped before it started: empty texts, stopped=True."""
        rows = len(ticket.request.conversations)
        ticket.result = GenerationResult([""] * rows, [0] * rows, True, [[] for _ in range(rows)])
        self._done(ticket)

    def _done(self, ticket: Ticket) -> None:
        ticket.finished = time.perf_counter()
        self.stats.requests += 1
        with self._wake:  # the last request out frees the model before its caller returns (the busy signal)
            if self._holding and not self._active and not self._waiting:
                self._holding = False
                self.lm.lock.release()
        ticket.done.set()
