"""Continuous batching: the requests of several users decode in one forward pass per token.

A `Scheduler` owns one model's generation. Each `Request` is one user's rows (the app's three panes, or
one row) with its own conversations, its own SteeringPlan (vector, layer(s), multipliers: any per-row
operator of steering.core.hooks), sampling settings, seed, token budget, stop event and streaming callback.

How a request runs (the eager path, dynamic KV cache, CPU or GPU):

1. It waits in a bounded queue (`max_waiting`; one more is refused at once with a one-line
   "busy, try again" SteeringError) until the running batch has room (`max_requests` requests).
2. Between two decoding steps of the running batch, the requests waiting then (FIFO, as many as the batch
   has room for) are *prefilled together* in one forward pass: each request's PromptBatch is built alone
   first (a bad request fails alone), their rows are left padded into one prompt batch (the prefix common
   to every row computed once, unsteered), each request's steering plan (and meter) acts on its own rows
   (batch_steering.BatchSteering), and the logits are split to each request's own token choice, which
   takes its first token with its own random stream. Should that combined pass fail, the requests are
   prefilled one by one, each as steering.decode.generation.generate does for its rows.
3. That cache is merged into the running batch's: both are left-padded to the same length (padding is
   masked out of attention) and concatenated along the batch. From the next step on its rows decode
   with everybody else's, in one forward pass; a per-row hook (batch_steering.BatchSteering) applies each request's
   own plan to its own rows (rows steered at different layers or with different vectors in one batch).
4. Finished (every row at end-of-turn or max_new_tokens), stopped (its stop event) or failed requests
   leave; their rows are removed from the cache and the batch shrinks (padding columns no longer
   needed by anyone are trimmed).

Fairness: a request's tokens depend only on its own rows. The token choice (sampling.TokenChoice, the
same as generate()'s) runs on the request's own logits with the request's own generator, seeded by its
seed, one Gumbel-noise vector per step exactly as when it runs alone; so sampled rows get the same random
draws as alone.
The forward pass itself is row-independent in exact arithmetic; in floating point a batch of another
size or padding may round the last bits differently (as any batched inference), which can flip a token
only where two logits nearly tie. The tests (tests/test_scheduler.py) and `steering bench --users`
check each request against the same request run alone.

Busy signal: while a batch is decoding the worker holds the model's lock (`LoadedModel.lock`), released
when the scheduler runs dry; so `lm.lock.locked()` still means "the model is at work", and other users of
the lock (tune, the A/B evaluation) wait for the batch to drain, as before.

The fast path (steering/decode/fast_path.py: static cache, CUDA graphs, torch.compile) has fixed shapes; its
requests are not merged: Engine runs them one at a time under the lock, as before this module.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import threading
import time
import weakref
from typing import Any

import torch

from steering.core.hooks import steer as apply_plan
from steering.core.layers import decoder_layers
from steering.core.limits import Limits, model_context_length
from steering.core.prompts import build_messages, chat_prompt
from steering.decode.batch import PromptBatch, check_prompt_budget
from steering.decode.batch_steering import BatchSteering, mergeable
from steering.decode.decoder import EagerDecoder
from steering.decode.generation import GenerationResult
from steering.decode.requests import ActiveRequest, Request, SchedulerStats, Ticket
from steering.decode.running import RunningBatch
from steering.decode.sampling import TokenChoice, eos_token_ids
from steering.decode.tokens import Replies
from steering.errors import SteeringError

__all__ = ["Request", "Scheduler", "SchedulerStats", "Ticket", "mergeable"]

log = logging.getLogger(__name__)

_OPEN: weakref.WeakSet[Scheduler] = weakref.WeakSet()  # schedulers whose worker may still be alive


@atexit.register
def _close_all() -> None:
    """At interpreter exit: stop every scheduler's worker and join it, so no worker thread is alive (idle or
    decoding) while the interpreter and torch's C++ runtime shut down (a thread still alive there can abort
    the process with "terminate called without an active exception")."""
    for scheduler in list(_OPEN):
        scheduler.close()


class Scheduler:
    """Continuous batching of generation requests on one model (see the module docstring).

    Args:
        lm: the steering.models.LoadedModel (model, tokenizer, lock).
        limits: the request caps (each request's prompts are checked against them on submit).
        max_requests: the most requests decoding in one batch (config `app.concurrency_per_model`).
        max_waiting: the most requests waiting for room; one more is refused ("busy, try again").
    """

    def __init__(self, lm: Any, limits: Limits | None = None, max_requests: int = 4, max_waiting: int = 16) -> None:
        if max_requests < 1 or max_waiting < 0:
            raise ValueError(f"max_requests must be >= 1 and max_waiting >= 0, got {max_requests}, {max_waiting}")
        self.lm = lm
        self.limits = limits
        self.max_requests = int(max_requests)
        self.max_waiting = int(max_waiting)
        self.stats = SchedulerStats()
        self._waiting: collections.deque[Ticket] = collections.deque()
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self._holding = False  # the worker holds lm.lock
        # the running batch
        self._active: list[ActiveRequest] = []
        self._batch: RunningBatch | None = None  # their rows: cache, next inputs, positions, mask
        self._closed = False
        self._can_merge: bool | None = None  # whether this model's caches merge along the batch (learned once)
        _OPEN.add(self)

    # ------------------------------------------------------------------ public
    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker and join it (also run at interpreter exit for every open scheduler).

        Requests still waiting end unstarted, requests decoding end as stopped (their tokens so far, stopped=True)
        after the step in progress; later submits are refused. Idempotent.

        Args:
            timeout: seconds to wait for the worker thread to end (the step in progress finishes first).
        """
        with self._wake:
            self._closed = True
            worker = self._worker
            self._wake.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
            if worker.is_alive():
                log.warning("the scheduler's worker did not end within %.0f s", timeout)
        _OPEN.discard(self)

    @property
    def busy(self) -> bool:
        """True while requests wait or decode."""
        with self._wake:
            return bool(self._waiting or self._active)

    def submit(self, request: Request) -> Ticket:
        """Queue a request; returns its Ticket at once (the batch it joins is decoding meanwhile).

        Raises:
            SteeringError: the queue is full ("busy, try again"), a prompt over the limits, or a plan
                whose rows do not match the conversations; nothing is queued then.
        """
        if not request.conversations:
            raise SteeringError("a request needs at least one conversation")
        if request.plan is not None:
            request.plan.check(
                len(decoder_layers(self.lm.model)),
                rows=len(request.conversations),
                hidden_size=int(self.lm.model.config.hidden_size),
            )
        tokens = [
            len(chat_prompt(self.lm.tokenizer, build_messages(c, request.system_prompt)).input_ids)
            for c in request.conversations
        ]
        check_prompt_budget(tokens, request.settings.max_new_tokens, self.limits, model_context_length(self.lm.model))
        ticket = Ticket(request)
        with self._wake:
            if self._closed:
                raise SteeringError("the model is shutting down (its scheduler is closed); try again after a restart")
            if len(self._waiting) >= self.max_waiting and (self._waiting or len(self._active) >= self.max_requests):
                self.stats.refused += 1
                raise SteeringError(
                    f"the model is busy ({len(self._active)} requests generating, "
                    f"{len(self._waiting)} waiting); try again in a moment"
                )
            self._waiting.append(ticket)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name="steering-scheduler", daemon=True)
                self._worker.start()
            self._wake.notify_all()
        return ticket

    def run(self, request: Request) -> GenerationResult:
        """submit(request) and wait for its result (what Engine.compare calls)."""
        return self.submit(request).wait()

    # ------------------------------------------------------------------ the worker
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._active and not self._closed:
                    if self._holding:
                        self._holding = False
                        self.lm.lock.release()
                    self._wake.wait(timeout=30.0)
                    if not self._waiting and not self._active:
                        break
                if self._closed or (not self._waiting and not self._active):
                    waiting, self._waiting = list(self._waiting), collections.deque()
                    self._worker = None
                    break
            try:
                self._admit()
                if self._active:
                    self._hold()
                    self._step()
            except BaseException as exc:  # noqa: BLE001 -- a batched step failed: fail its requests, go on
                log.exception("batched generation step failed")
                failed, self._active = self._active, []
                self._batch = None
                for active in failed:
                    self._finish(active, error=exc)
        # closed (or idle for 30 s): nothing may be left waiting; requests decoding end as stopped
        for ticket in waiting:
            self._finish_unstarted(ticket)
        leaving, self._active = self._active, []
        self._batch = None
        for active in leaving:
            active.stopped = True
            self._finish(active)
        with self._wake:
            if self._holding:
                self._holding = False
                self.lm.lock.release()

    def _hold(self) -> None:
        """Take the model's lock (other users of the model, tune or the evaluation, finish first)."""
        if not self._holding:
            self.lm.lock.acquire()
            with self._wake:
                self._holding = True

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
                if not self._waiting or room <= 0 or (self._batch is not None and not mergeable(self._batch.cache)):
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
            if not prepared:
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
            if self._batch is None:
                self._batch = batch
            else:
                self._batch.merge(batch)
            self._active.extend(members)

    def _prompt_batch(self, request: Request) -> PromptBatch:
        """The request's own PromptBatch (templated, checked, padded), as generate() builds it."""
        return PromptBatch.build(
            self.lm.model,
            self.lm.tokenizer,
            request.conversations,
            request.system_prompt,
            request.settings.max_new_tokens,
            self.limits,
            steered=request.plan is not None,
        )

    def _start(self, ticket: Ticket, batch: PromptBatch, device: torch.device, pad_id: int) -> ActiveRequest:
        """The request's ActiveRequest: its own TokenChoice (own settings and seeded stream) and Replies."""
        request, model, tokenizer = ticket.request, self.lm.model, self.lm.tokenizer
        eos = set() if request.ignore_eos else eos_token_ids(model, tokenizer)
        choice = TokenChoice(request.settings, batch.rows, eos, pad_id, device)
        return ActiveRequest(ticket, batch.steer_from, choice, Replies(tokenizer, batch.rows, eos, request.on_text))

    @torch.inference_mode()
    def _prefill_together(
        self, prepared: list[tuple[Ticket, PromptBatch]]
    ) -> list[tuple[ActiveRequest, RunningBatch, list[int]]]:
        """One prefill forward pass for several requests: their rows left padded into one PromptBatch (the
        prefix common to every row computed once, unsteered), each request's plan and meter on its own rows
        (batch_steering.BatchSteering), the logits split to each request's own TokenChoice. Returns each
        request's ActiveRequest, the one RunningBatch they share (rows in order) and its first tokens."""
        model = self.lm.model
        pad_id = prepared[0][1].pad_id
        steered = any(ticket.request.plan is not None for ticket, _ in prepared)
        prompts = [prompt for _, batch in prepared for prompt in batch.prompts]
        combined = PromptBatch.from_prompts(model, prompts, pad_id, steered=steered)
        decoder = EagerDecoder(model)
        decoder.reset(combined, max(t.request.settings.max_new_tokens for t, _ in prepared))
        actives, groups, start = [], [], 0
        for ticket, batch in prepared:
            request = ticket.request
            active = self._start(ticket, batch, combined.input_ids.device, pad_id)
            groups.append((start, start + batch.rows, request.plan, batch.steer_from, request.meter))
            if request.meter is not None:
                request.meter.steps = []  # as Meter.attached does
            actives.append(active)
            start += batch.rows
        with BatchSteering(model, groups):
            logits = decoder.prefill()
        self.stats.prefills += 1
        self.stats.most_prefilled = max(self.stats.most_prefilled, len(prepared))
        tokens = [active.choice(logits[lo:hi]).tolist() for active, (lo, hi, *_) in zip(actives, groups)]
        now = time.perf_counter()
        running = RunningBatch(
            decoder.cache, torch.cat([a.choice.feed for a in actives]), decoder.positions, combined.attention
        )
        for active in actives:
            active.ticket.first_token = now
        return [(active, running, own) for active, own in zip(actives, tokens)]

    @torch.inference_mode()
    def _prefill(self, ticket: Ticket, batch: PromptBatch) -> tuple[ActiveRequest, RunningBatch, list[int]]:
        """generate()'s first step for one request, alone (the same PromptBatch, EagerDecoder and TokenChoice):
        its rows as a RunningBatch (cache, next inputs and positions, mask) and its first tokens."""
        request, model = ticket.request, self.lm.model
        decoder = EagerDecoder(model)
        decoder.reset(batch, request.settings.max_new_tokens)
        active = self._start(ticket, batch, batch.input_ids.device, batch.pad_id)
        with contextlib.ExitStack() as stack:
            if request.meter is not None:  # registered first: it reads block L before block L's own steering
                stack.enter_context(request.meter.attached(model))
            if request.plan is not None:
                stack.enter_context(apply_plan(model, request.plan, batch.steer_from))
            logits = decoder.prefill()
        self.stats.prefills += 1
        self.stats.most_prefilled = max(self.stats.most_prefilled, 1)
        tokens = active.choice(logits).tolist()
        ticket.first_token = time.perf_counter()
        return active, RunningBatch(decoder.cache, active.choice.feed, decoder.positions, batch.attention), tokens

    def _merge(self, active: ActiveRequest, batch: RunningBatch) -> None:
        """Append a prefilled request's rows to the running batch (both left-padded to one cache length)."""
        if self._batch is None:
            self._batch = batch
        else:
            self._batch.merge(batch)
        self._active.append(active)

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
        with BatchSteering(model, groups):
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
