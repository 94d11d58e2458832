"""The scheduler's admission (steering/decode/scheduler.py, step 2): between two decoding steps, the requests
waiting (FIFO, as many as the batch has room for) are prefilled together (steering/decode/prefill.py) and their
rows join the running batch; a request whose stop event is set leaves the queue at once."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

import torch

from steering.decode.batch import PromptBatch
from steering.decode.batch_steering import mergeable
from steering.decode.requests import ActiveRequest, Request, SchedulerStats, Ticket
from steering.decode.running import RunningBatch
from steering.decode.static_batch import StaticBatch
from steering.errors import SteeringError

log = logging.getLogger(__name__)

Admitted = list[tuple[ActiveRequest, RunningBatch, list[int]]]


class Admission:
    """The Scheduler's admission of waiting requests into the running batch (a mixin of scheduler.Scheduler,
    whose state it shares)."""

    lm: Any
    fast_path: Any
    max_rows: int
    max_length: int
    max_requests: int
    stats: SchedulerStats
    _wake: threading.Condition
    _waiting: collections.deque[Ticket]
    _active: list[ActiveRequest]
    _batch: RunningBatch | StaticBatch | None
    _can_merge: bool | None
    _hold: Callable[[], None]
    _done: Callable[[Ticket], None]
    _finish: Callable[..., None]
    _finish_unstarted: Callable[[Ticket], None]
    _prompt_batch: Callable[[Request], PromptBatch]
    _prefill_together: Callable[[list[tuple[Ticket, PromptBatch]]], Admitted]
    _prefill: Callable[[Ticket, PromptBatch], tuple[ActiveRequest, RunningBatch, list[int]]]

    def _admit(self) -> None:
        """Prefill the waiting requests (FIFO) that fit in the batch TOGETHER, in one forward pass, and merge
        them into it. A waiting request whose stop event is set leaves the queue at once (stopped, no tokens),
        room or not. Each request's prompts are built alone first (a bad request fails alone, with its own
        error); if the combined prefill fails, its requests are prefilled one by one (one request's failure
        never touches another's)."""
        with self._wake:
            cancelled = [t for t in self._waiting if t.request.stop_event is not None and t.request.stop_event.is_set()]
            for ticket in cancelled:
                self._waiting.remove(ticket)
        for ticket in cancelled:
            self._finish_unstarted(ticket)
        while True:
            merges = self._merges()
            with self._wake:
                room = self.max_requests - len(self._active)
                joinable = not isinstance(self._batch, RunningBatch) or mergeable(self._batch.cache)
                if not self._waiting or room <= 0 or not joinable:
                    return
            self._hold()  # the model first: requests that arrive while it is busy elsewhere are admitted together
            with self._wake:
                if not merges:  # such caches are not merged: one request at a time, the next after it
                    room = 1
                tickets = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            joined = bool(self._active)
            prepared: list[tuple[Ticket, PromptBatch]] = []
            for ticket in tickets:
                request = ticket.request
                if request.stop_event is not None and request.stop_event.is_set():
                    self._finish_unstarted(ticket)
                    continue
                ticket.joined_running = joined
                try:
                    prepared.append((ticket, self._prompt_batch(request)))
                except BaseException as exc:  # noqa: BLE001 -- this request's own failure
                    ticket.error = exc
                    self._done(ticket)
            prepared, full = self._fitting(prepared)
            if not prepared:
                if full:  # the head of the queue waits for room in the static batch
                    return
                continue
            admitted: list[tuple[ActiveRequest, RunningBatch, list[int]]] = []
            if len(prepared) > 1:
                try:
                    admitted = self._prefill_together(prepared)
                except BaseException:  # noqa: BLE001 -- fall back: each request alone, failing alone
                    log.warning("the combined prefill of %d requests failed; prefilling them one by one", len(prepared))
                    admitted = []
            if not admitted:
                for ticket, batch in prepared:
                    try:
                        admitted.append(self._prefill(ticket, batch))
                    except BaseException as exc:  # noqa: BLE001 -- this request's own failure
                        ticket.error = exc
                        self._done(ticket)
            self._take_first(admitted)

    def _merges(self) -> bool:
        """Whether this model's KV caches can be merged along the batch (batch_steering.mergeable on an empty
        cache of the model's own layer types), learned once."""
        if self._can_merge is None:
            from transformers import DynamicCache

            try:
                probe = DynamicCache(config=self.lm.model.config)
                empty = torch.zeros(1, 1, 0, 1)
                for layer in getattr(probe, "layers", None) or []:
                    layer.lazy_initialization(empty, empty)
                self._can_merge = mergeable(probe)
            except Exception:  # noqa: BLE001 -- an unknown cache: admit one request at a time, as before
                log.warning("could not tell whether this model's KV caches merge; admitting one request at a time")
                self._can_merge = False
        return self._can_merge

    def _take_first(self, admitted: list[tuple[ActiveRequest, RunningBatch, list[int]]]) -> None:
        """Record each prefilled request's first tokens (a failing streaming callback fails only its request);
        requests already complete or stopped leave, the others' rows join the running batch."""
        stays: list[ActiveRequest] = []
        leaving: list[tuple[ActiveRequest, BaseException | None]] = []
        batches: list[RunningBatch] = []
        for active, batch, tokens in admitted:
            request, ticket = active.request, active.ticket
            if ticket.joined_running:
                self.stats.joined_running += 1
            try:
                active.take(tokens)
            except BaseException as exc:  # noqa: BLE001 -- its streaming callback failed: only this request ends
                leaving.append((active, exc))
                continue
            if active.complete or (request.stop_event is not None and request.stop_event.is_set()):
                active.stopped = not active.complete
                leaving.append((active, None))
                continue
            stays.append(active)
            if not batches or batches[-1] is not batch:
                batches.append(batch)
        # rows of requests that left are dropped from the batch they were prefilled in (last first)
        owners: dict[int, list[ActiveRequest]] = {}
        for active, batch, _ in admitted:
            owners.setdefault(id(batch), []).append(active)
        gone = {id(a) for a, _ in leaving}
        for batch in {id(b): b for _, b, _ in admitted}.values():
            members = owners[id(batch)]
            start_of, start = {}, 0
            for active in members:
                start_of[id(active)] = start
                start += active.rows
            for active in reversed(members):
                if id(active) in gone and any(id(a) not in gone for a in members):
                    batch.drop(start_of[id(active)], active.rows)
        for active, error in leaving:
            self._finish(active, error=error)
        for batch in batches:
            members = [a for a in owners[id(batch)] if id(a) not in gone]
            try:
                self._join(batch, members)
            except BaseException as exc:  # noqa: BLE001
                if self.fast_path is None:  # a half-merged DynamicCache batch: the worker fails the batch
                    raise
                for active in members:  # the static batch is untouched until the copy succeeds: only they end
                    self._finish(active, error=exc)
                continue
            self._active.extend(members)

    def _fitting(self, prepared: list[tuple[Ticket, PromptBatch]]) -> tuple[list[tuple[Ticket, PromptBatch]], bool]:
        """On the fast path, the prepared requests (FIFO) that fit in the static batch now (StaticBatch.need within
        max_rows / max_length; a request of more than max_rows rows fits only alone, in a bucket of its size);
        the first that does not and all after it go back to the front of the queue (returned flag: True), a
        request longer than max_length fails with one line. On the eager path: all of them."""
        if self.fast_path is None:
            return prepared, False
        batch = self._batch if isinstance(self._batch, StaticBatch) else StaticBatch(self.lm.model, self.fast_path)
        take: list[tuple[Ticket, PromptBatch]] = []
        back: list[Ticket] = []
        rows = width = steps = 0
        for ticket, prompts in prepared:
            tokens = ticket.request.settings.max_new_tokens
            if prompts.width + tokens > self.max_length:
                ticket.error = SteeringError(
                    f"the request needs {prompts.width + tokens} tokens of cache; the fast path's batch holds at "
                    f"most {self.max_length} tokens"
                )
                self._done(ticket)
                continue
            more = (rows + prompts.rows, max(width, prompts.width), max(steps, tokens))
            need_rows, need_length = batch.need(*more)
            alone = need_rows == prompts.rows  # more rows than max_rows (a large `steering test` batch) run alone
            if back or (need_rows > self.max_rows and not alone) or need_length > self.max_length:
                back.append(ticket)  # it and those after it wait: first in, first out
                continue
            take.append((ticket, prompts))
            rows, width, steps = more
        with self._wake:
            self._waiting.extendleft(reversed(back))
        return take, bool(back)

    def _join(self, batch: RunningBatch, members: list[ActiveRequest]) -> None:
        """Add prefilled rows to the running batch: merged into the DynamicCache batch (eager path), or copied
        into the static batch's free slots (fast path; each row may take up to its request's token budget)."""
        if self.fast_path is not None:
            if not isinstance(self._batch, StaticBatch):
                self._batch = StaticBatch(self.lm.model, self.fast_path)
            steps = [a.request.settings.max_new_tokens for a in members for _ in range(a.rows)]
            self._batch.merge(batch, steps)
        elif self._batch is None:
            self._batch = batch
        elif isinstance(self._batch, RunningBatch):
            self._batch.merge(batch)
