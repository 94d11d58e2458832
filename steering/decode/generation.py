"""Batched generation: several conversations in one batch, each row with its own steering multiplier.

One forward pass per token serves all rows (the app's added / unsteered / subtracted panes), rows may
differ in length (left padding, absolute positions per row), and text can be streamed and stopped.

The pieces, each in its own module of steering/decode: batch.py (the prompt batch), decoder.py (the
decoder protocol and its backends: prefill, then one token per step), sampling.py (the token choice and
end-of-sequence state), tokens.py (the token reader, synchronous or lookahead, and the replies); this
module holds the loop that joins them.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence

import torch

from steering.core.hooks import SteeringPlan, plan_from
from steering.core.hooks import steer as apply_plan
from steering.core.limits import Limits
from steering.core.prompts import Message
from steering.decode.batch import PromptBatch, check_prompt_budget
from steering.decode.decoder import Decoder, EagerDecoder
from steering.decode.sampling import SamplingSettings, TokenChoice, eos_token_ids, sample
from steering.decode.tokens import Replies, StreamingText, TokenReader, decode_texts

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "GenerationResult",
    "SamplingSettings",
    "SteeringSpec",
    "check_prompt_budget",
    "eos_token_ids",
    "generate",
    "sample",
    "stream",
]

_StreamingText = StreamingText  # the names tests and callers used before the split
_decode = decode_texts
_next_tokens = sample


@dataclass(frozen=True)
class SteeringSpec:
    """CAA addition at one decoder block, for generate()'s `steer` (with per-row `multipliers`).

    The vector, times each row's multiplier, is added to the block's output (Rimsky et al. 2023,
    arXiv 2312.06681, section 3).

    Attributes:
        layer: 0-based decoder block index.
        vector: (hidden_size,) steering vector, residual-stream units (e.g. VectorSet.vector(layer)).
    """

    layer: int
    vector: torch.Tensor


@dataclass
class GenerationResult:
    """What generate() returns, one entry per conversation (row).

    Attributes:
        texts: (rows,) the decoded replies.
        new_tokens: (rows,) ints, tokens generated per row (end-of-turn excluded).
        stopped: True when a stop request (generate's stop_event) ended generation early.
        token_ids: (rows,) lists of the generated token ids.
    """

    texts: list[str]
    new_tokens: list[int]  # tokens generated per row (end-of-turn excluded)
    stopped: bool = False  # True when a stop request ended generation early
    token_ids: list[list[int]] = field(default_factory=list)

    @classmethod
    def of(cls, replies: Replies, stopped: bool) -> GenerationResult:
        """The result of a generation's replies (tokens.Replies)."""
        return cls(replies.texts(), [len(g) for g in replies.generated], stopped, replies.generated)


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[Message]],
    multipliers: Sequence[float] | None = None,
    steer: SteeringSpec | SteeringPlan | None = None,
    settings: SamplingSettings = SamplingSettings(),
    system_prompt: str | None = None,
    on_text: Callable[[list[str]], None] | None = None,
    stop_event: threading.Event | None = None,
    decoder: Decoder | None = None,
    steering_context: Callable[..., ContextManager[Any]] | None = None,
    ignore_eos: bool = False,
    limits: Limits | None = None,
    lookahead: bool | None = None,
) -> GenerationResult:
    """Generate one reply per conversation, all rows in one batch, each row steered by its own strength.

    With a SteeringSpec, row i adds multipliers[i] x steer.vector to the output of block steer.layer at
    every position from the end of the user's last instruction on, reply included (CAA, Rimsky et al.
    2023, arXiv 2312.06681, section 3); with a hooks.SteeringPlan, any operators and layers, per row
    (then no `multipliers`).

    Args:
        model: a transformers causal LM (PreTrainedModel) with Llama-style decoder blocks.
        tokenizer: its tokenizer (PreTrainedTokenizerBase), with a chat template.
        conversations: (rows,) chat histories, each a list of {"role": "user" | "assistant", "content":
            str} messages ending with the user's turn; one reply is generated per conversation.
        multipliers: (rows,) floats, CAA multiplier units, with a SteeringSpec (None: 1.0 for every
            row). Must be None with a SteeringPlan.
        steer: a SteeringSpec (layer, (hidden_size,) vector), a SteeringPlan with `rows` rows, or None
            (no steering).
        settings: SamplingSettings: max_new_tokens per row, temperature (0: greedy), top_p, seed.
        system_prompt: system prompt for the chat template (None: the template's default).
        decoder: the backend (decoder.Decoder; default EagerDecoder(model)); the fast path passes its
            StaticDecoder (static cache, compiled or CUDA-graphed steps).
        steering_context: `(model, plan, steer_from)` context manager replacing hooks.steer (the fast
            path's persistent hooks, a meter around the hooks).
        on_text: called with every row's text after each step (streaming); stop_event ends early.
        ignore_eos: generate exactly max_new_tokens per row (equal lengths for timing).
        limits: the caps each row's templated prompt is checked against (always: the model's context).
        lookahead: queue the next step before reading this one's tokens (tokens.TokenReader); None: on
            CUDA only. The tokens are the same either way.

    Sampling (temperature > 0) gives every row the same random stream (sampling.sample): a row's text
    does not depend on the batch.

    Returns:
        GenerationResult: texts (rows,) the decoded replies, new_tokens (rows,) ints, token_ids (rows,)
        lists of ints, stopped (True when `stop_event` ended generation early).

    Raises:
        SteeringError: a prompt over the limits or the context, before any forward pass; a steering
            layer out of range for the model.
        ValueError: multipliers or a plan whose row count differs from len(conversations); multipliers
            with a SteeringPlan; no conversations.

    Example:
        >>> result = generate(lm.model, lm.tokenizer, [[{"role": "user", "content": "Hi"}]] * 2,
        ...                   multipliers=[2.0, -2.0], steer=SteeringSpec(9, vecs[9]))  # doctest: +SKIP
        >>> len(result.texts)  # doctest: +SKIP
        2
    """
    decoder = decoder if decoder is not None else EagerDecoder(model)
    batch = PromptBatch.build(
        model,
        tokenizer,
        conversations,
        system_prompt,
        settings.max_new_tokens,
        limits,
        steer is not None,
        decoder.shares_prefix,
    )
    decoder.reset(batch, settings.max_new_tokens)
    eos = set() if ignore_eos else eos_token_ids(model, tokenizer)
    choose = TokenChoice(settings, batch.rows, eos, batch.pad_id, batch.input_ids.device)
    replies = Replies(tokenizer, batch.rows, eos, on_text)
    reader = TokenReader(batch.input_ids.device, lookahead)

    def launch(step: int) -> torch.Tensor:  # queue one forward pass and the token choice
        return choose(decoder.prefill() if step == 0 else decoder.step(choose.feed))

    stop = stop_event.is_set if stop_event is not None else (lambda: False)
    with _steering(model, steer, multipliers, batch, steering_context):
        for tokens in reader.steps(launch, settings.max_new_tokens, stop):
            replies.take(tokens)
            if replies.all_finished:
                break
    return GenerationResult.of(replies, reader.stopped)


def _steering(
    model: PreTrainedModel,
    steer: SteeringSpec | SteeringPlan | None,
    multipliers: Sequence[float] | None,
    batch: PromptBatch,
    context: Callable[..., ContextManager[Any]] | None,
) -> ContextManager[Any]:
    """The steering hooks of one generation (hooks.steer, or `context`), or nothing when `steer` is None."""
    if steer is None:
        return contextlib.nullcontext()
    plan = plan_from(steer, multipliers, batch.rows)  # a SteeringSpec + multipliers is CAA addition
    return (context if context is not None else apply_plan)(model, plan, batch.steer_from)


def stream(generate_call: Callable[..., GenerationResult], /, **kwargs: Any) -> Iterator[list[str]]:
    """Run a generate(...) call in a thread and yield each row's text as it grows.

    A small batched streamer: transformers' TextIteratorStreamer only takes batch size 1.
    The last item yielded is the final texts; an exception in the thread is re-raised here.
    Closing the iterator early (e.g. the client went away) stops the generation.
    """
    updates: queue.Queue = queue.Queue()
    done = object()
    stop_event: threading.Event = kwargs.setdefault("stop_event", threading.Event())
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["result"] = generate_call(on_text=updates.put, **kwargs)
        except BaseException as exc:  # handed to the consumer thread
            box["error"] = exc
        finally:
            updates.put(done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while (item := updates.get()) is not done:
            while not updates.empty():  # skip stale snapshots when the consumer is slower than the model
                following = updates.get()
                if following is done:
                    updates.put(done)
                    break
                item = following
            yield item
        if "error" in box:
            raise box["error"]
        yield box["result"].texts
    finally:
        stop_event.set()
        thread.join()
