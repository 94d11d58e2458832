"""The scheduler's prefill (steering/decode/scheduler.py, step 2): the prompts of the requests admitted together
run in one forward pass (each request's plan and meter on its own rows, its first token from its own token
choice), or one request alone as generate() runs it; the result is a RunningBatch of their rows."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from steering.core.hooks import steer as apply_plan
from steering.core.limits import Limits
from steering.decode.batch import PromptBatch
from steering.decode.batch_steering import BatchSteering
from steering.decode.decoder import EagerDecoder
from steering.decode.requests import ActiveRequest, Request, SchedulerStats, Ticket
from steering.decode.running import RunningBatch
from steering.decode.sampling import TokenChoice, eos_token_ids
from steering.decode.tokens import Replies


class Prefill:
    """The Scheduler's prefill of admitted requests (a mixin of scheduler.Scheduler, whose state it shares)."""

    lm: Any
    limits: Limits | None
    stats: SchedulerStats

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
