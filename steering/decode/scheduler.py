"""Continuous batching: the requests of several users decode in one forward pass per token.

A `Scheduler` owns one model's generation. Each `Request` is one user's rows (the app's three panes, or
one row) with its own conversations, its own SteeringPlan (vector, layer(s), multipliers: any per-row
operator of steering.core.hooks), sampling settings, seed, token budget, stop event and streaming callback.

How a request runs (steps 3 and 4 as on the eager path; the fast path below):

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
   With `lookahead=True` step k+1 is queued before step k's tokens are read, as FastPath.generate does; what
   each request gets stays the same (steering/decode/stepping.py says how ended rows discard the step in flight).
   Off by default: on an H200 (7B shape, CUDA-graph static batch, 128 tokens) it gave one user 339 tok/s against
   327 without (within the rounds' spread) and 4 / 16 users a slower aggregate with twice the p95 first-token
   time (0.64 / 0.65 s against 0.29 / 0.35 s: a joining request's first read waits for the step in flight).

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

Two paths, one scheduler (what runs merged where):

* Eager (`fast_path=None`; CPU, or a GPU without a fast path): the running batch is a RunningBatch (running.py), a
  DynamicCache merged along the batch as in step 3, steered per request by batch_steering.BatchSteering; a
  request's meter reads its own rows.
* Fast path (`fast_path=`, the Engine's on CUDA: CUDA graphs, or the static cache without graphs on a CPU): the
  running batch is a StaticBatch (static_batch.py), a transformers StaticCache of a fixed bucket of rows
  (4 / 8 / 16 / 32 / 48) and length; each request's rows occupy slots, joiners are prefilled eagerly as in
  step 2 and copied into free slots right-aligned to the shared write position, the columns shift right for a
  longer prompt and compact at the end of the cache; each slot carries its own request's steering in the fast
  path's persistent tensors (persistent.PersistentSteering.set_rows), so a CUDA graph captured for (bucket,
  cache length, steered layers) keeps replaying while requests come and go. A request is admitted only when the
  batch can hold it to its last token (`max_rows`, `max_length`; it waits otherwise, first in first out), one
  that never could fails with one line. Metered requests are refused here (the Engine runs them alone, eagerly);
  inductor's compiled step is not used here (one compile per bucket): with it the Engine runs requests one at a
  time (steering/decode/dispatch.py).
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import weakref
from typing import Any

from steering.core.layers import decoder_layers
from steering.core.limits import Limits, model_context_length
from steering.core.prompts import build_messages, chat_prompt
from steering.decode.admission import Admission
from steering.decode.batch import check_prompt_budget
from steering.decode.batch_steering import mergeable
from steering.decode.generation import GenerationResult
from steering.decode.prefill import Prefill
from steering.decode.requests import ActiveRequest, Request, SchedulerStats, Ticket
from steering.decode.running import RunningBatch
from steering.decode.static_batch import StaticBatch
from steering.decode.stepping import Pending, Stepping
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


class Scheduler(Admission, Prefill, Stepping):
    """Continuous batching of generation requests on one model (see the module docstring).

    Args:
        lm: the steering.models.LoadedModel (model, tokenizer, lock).
        limits: the request caps (each request's prompts are checked against them on submit).
        max_requests: the most requests decoding in one batch (config `app.concurrency_per_model`).
        max_waiting: the most requests waiting for room; one more is refused ("busy, try again").
        fast_path: the model's fast_path.FastPath: the batch decodes in its static caches, through its decoding
            step (CUDA graphs, one per batch bucket) and its persistent hooks (static_batch.StaticBatch); None:
            the eager path (RunningBatch, DynamicCache). Metered requests are refused there (eager only).
        max_rows: on the fast path, the most rows in the batch (free slots of the largest bucket).
        max_length: on the fast path, the most cache columns (default: the limits' prompt + new tokens, at most
            the model's context).
        lookahead: queue step k+1 before reading step k's tokens (steering/decode/stepping.py); None: off
            (measured no faster for one user and slower to a first token for several; see the module docstring).
    """

    def __init__(
        self,
        lm: Any,
        limits: Limits | None = None,
        max_requests: int = 4,
        max_waiting: int = 16,
        fast_path: Any = None,
        max_rows: int = 48,
        max_length: int | None = None,
        lookahead: bool | None = None,
    ) -> None:
        if max_requests < 1 or max_waiting < 0:
            raise ValueError(f"max_requests must be >= 1 and max_waiting >= 0, got {max_requests}, {max_waiting}")
        self.lm = lm
        self.fast_path = fast_path
        self.max_rows = int(max_rows)
        context = model_context_length(lm.model) or 1 << 20
        budget = limits.max_prompt_tokens + limits.max_new_tokens if limits is not None else context
        self.max_length = int(max_length) if max_length is not None else min(budget, context)
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
        self._batch: RunningBatch | StaticBatch | None = None  # their rows: cache, next inputs, positions, mask
        self._pending: Pending | None = None  # the step queued whose tokens are not read yet (lookahead)
        self.lookahead = bool(lookahead)  # None: off (see the module docstring)
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
        if request.meter is not None and self.fast_path is not None:
            raise ValueError("a metered request runs on the eager path (the fast path's steps have no meter hook)")
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
                self._batch, self._pending = None, None
                for active in failed:
                    self._finish(active, error=exc)
        # closed (or idle for 30 s): nothing may be left waiting; requests decoding end as stopped
        for ticket in waiting:
            self._finish_unstarted(ticket)
        leaving, self._active = self._active, []
        self._batch, self._pending = None, None
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
