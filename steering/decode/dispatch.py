"""Which path one Engine request takes (Engine._generate): the request scheduler (continuous batching with other
users, steering/decode/scheduler.py), the fast path alone, or generate() eagerly under the model's lock; and the
checks every request passes first (Engine.check_request)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from steering.compare import conversation_list
from steering.core.hooks import SteeringPlan, steer
from steering.core.limits import check_multiplier, model_context_length
from steering.core.prompts import Message, build_messages, chat_prompt
from steering.decode.generation import GenerationResult, SamplingSettings, check_prompt_budget, generate
from steering.decode.scheduler import Request, Scheduler

if TYPE_CHECKING:
    from steering.decode.fast_path import FastPath
    from steering.engine import Engine


def scheduler_for(engine: Engine, fast_path: FastPath | None) -> Scheduler:
    """The Engine's request scheduler (config app.concurrency_per_model requests per batch, app.max_queue waiting):
    on the eager path, or in the fast path's static caches: CUDA graphs per batch bucket, or the compiled step
    for the buckets compiled at start and CUDA graphs for the others (compiled_batch.CompiledBatchSteps: no
    request waits behind a compile)."""
    app = engine.config.app
    return Scheduler(engine.lm, engine.limits, app.concurrency_per_model, app.max_queue, fast_path=fast_path)


def check_request(
    engine: Engine,
    conversations: Sequence[Sequence[Message]] | Sequence[Message],
    settings: SamplingSettings,
    system_prompt: str | None = None,
    multiplier: float | None = None,
) -> list[int]:
    """Refuse a request that exceeds the caps, without running the model (for validators; Engine.check_request).

    Args:
        engine: the Engine (its tokenizer, model context and limits).
        conversations: one conversation (a list of messages) or several (one per row).
        settings: the sampling settings (max_new_tokens is checked).
        system_prompt: the system prompt the request would use.
        multiplier: the steering multiplier alpha, when there is one (finite, within the cap).

    Returns:
        The templated prompt length of each row, in tokens (system prompt + history + message).

    Raises:
        SteeringError: a one-line message naming what is over which cap (config `limits:`,
            the model's context of config.max_position_embeddings tokens, |alpha|).
    """
    if multiplier is not None:
        check_multiplier(multiplier, engine.limits)
    convs = conversation_list(conversations, 1)
    lm = engine.lm
    tokens = [len(chat_prompt(lm.tokenizer, build_messages(conv, system_prompt)).input_ids) for conv in convs]
    check_prompt_budget(tokens, settings.max_new_tokens, engine.limits, model_context_length(lm.model))
    return tokens


def run_request(
    engine: Engine,
    conversations: Sequence[Sequence[Message]],
    settings: SamplingSettings,
    system_prompt: str | None,
    meter: Any = None,
    **kwargs: Any,
) -> GenerationResult:
    """generate() under the model's lock, through the fast path when it is on and takes the batch (Engine._generate).

    The request goes through engine.scheduler: it joins the batch other users' requests are decoding in
    (steering/decode/scheduler.py): on the eager path (no fast path; its meter reading its own rows) and on the
    CUDA-graph / static-cache / compiled fast path (the batch in a static cache, steps replayed per batch bucket;
    compiled: the buckets compiled at start, decode/compiled_batch.py).

    With a steering.ui.meter.Meter and a fast path the generation runs alone on the eager path under the lock
    (the meter is a Python forward hook around the steering hooks; CUDA graphs have no place for it).

    The token budget (config `limits:` and the model's context) is checked before the lock is taken,
    so an oversized request is refused at once instead of waiting for (and then holding) the model.
    A batch the compiled step was not built for runs on the eager path (a compile costs a minute).

    Args:
        engine: the Engine.
        conversations: one conversation per row.
        settings: the sampling settings.
        system_prompt: the system prompt of every row (None: the template's default).
        meter: a steering.ui.meter.Meter reading the rows, or None.
        kwargs: generate()'s steer, on_text, stop_event (and, off the scheduler, its other keyword arguments).

    Returns:
        The GenerationResult of the rows.

    Raises:
        SteeringError: a prompt over the caps (before any forward pass), the scheduler's "busy, try again".
    """
    check_request(engine, conversations, settings, system_prompt)
    lm, fast_path = engine.lm, engine.fast_path
    fast = fast_path if fast_path is not None and fast_path.takes(len(conversations)) else None
    batched = engine.scheduler.fast_path is not None and meter is None  # the static-cache scheduler
    if (
        (fast_path is None or batched)
        and set(kwargs) <= {"steer", "on_text", "stop_event"}
        and (kwargs.get("steer") is None or isinstance(kwargs["steer"], SteeringPlan))
    ):
        return engine.scheduler.run(  # one batch shared with other users
            Request(
                conversations,
                kwargs.get("steer"),
                settings,
                system_prompt,
                kwargs.get("on_text"),
                kwargs.get("stop_event"),
                meter=meter,
            )
        )
    if meter is not None:
        fast = None
        kwargs["steering_context"] = meter.steering_context(steer)
    with lm.lock:
        if fast is not None:
            return fast.generate(
                lm.tokenizer,
                conversations,
                settings=settings,
                system_prompt=system_prompt,
                limits=engine.limits,
                **kwargs,
            )
        return generate(
            lm.model,
            lm.tokenizer,
            conversations,
            settings=settings,
            system_prompt=system_prompt,
            limits=engine.limits,
            **kwargs,
        )
