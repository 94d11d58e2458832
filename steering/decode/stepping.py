"""The scheduler's decoding step (steering/decode/scheduler.py, steps 3-4): one forward pass for every row of
the running batch, each request's plan on its own rows, each request's token choice on its own logits; then
finished, stopped and failed requests leave (their rows dropped) and their tickets are answered."""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

from steering.decode.generation import GenerationResult
from steering.decode.requests import ActiveRequest, SchedulerStats, Ticket
from steering.decode.running import RunningBatch
from steering.decode.static_batch import StaticBatch


class Stepping:
    """The Scheduler's decoding steps and request endings (a mixin of scheduler.Scheduler, whose state it
    shares)."""

    lm: Any
    stats: SchedulerStats
    _wake: threading.Condition
    _active: list[ActiveRequest]
    _batch: RunningBatch | StaticBatch | None
    _holding: bool
    _waiting: Any

    @torch.inference_mode()
    def _step(self) -> None:
        """One decoding step of every row of the batch; then finished / stopped requests leave."""
        model = self.lm.model
        # requests stopped since the last step leave before it
        for active in [a for a in self._active if a.request.stop_event is not None and a.request.stop_event.is_set()]:
            active.stopped = True
            self._remove(active)
            self._finish(active)
        if not self._active:
            return
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
        next_ids: list[torch.Tensor] = []
        leaving: list[tuple[ActiveRequest, BaseException | None]] = []
        for (start, stop, *_), active in zip(groups, self._active):
            tokens = active.choice(logits[start:stop]).tolist()  # its own stream and end-of-sequence state
            next_ids.append(active.choice.feed)
            if len(self._active) > 1:
                active.ticket.shared_steps += 1
            active.ticket.most_requests = max(active.ticket.most_requests, len(self._active))
            try:
                active.take(tokens)
            except BaseException as exc:  # noqa: BLE001 -- its streaming callback failed: only this request ends
                leaving.append((active, exc))
                continue
            if active.complete:
                leaving.append((active, None))
        self._batch.advance(torch.cat(next_ids))
        for active, error in leaving:
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
