"""Batched generation: several conversations in one batch, each row with its own steering multiplier.

One forward pass per token serves all rows (the app's added / unsteered / subtracted panes), rows may
differ in length (left padding, absolute positions per row), and text can be streamed and stopped.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from steering.hooks import steering
from steering.prompts import Message, build_messages, chat_prompt


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    seed: int | None = 0  # same seed, same text; None draws a fresh one

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class SteeringSpec:
    layer: int
    vector: torch.Tensor


@dataclass
class GenerationResult:
    texts: list[str]
    new_tokens: list[int]  # tokens generated per row (end-of-turn excluded)
    stopped: bool = False  # True when a stop request ended generation early
    token_ids: list[list[int]] = field(default_factory=list)


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def _next_tokens(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> torch.Tensor:
    if settings.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > settings.top_p  # keep the smallest nucleus
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    multipliers: Sequence[float] | None = None,
    steer: SteeringSpec | None = None,
    settings: SamplingSettings = SamplingSettings(),
    system_prompt: str | None = None,
    on_text: Callable[[list[str]], None] | None = None,
    stop_event: threading.Event | None = None,
    cache_factory: Callable[[int, int], Any] | None = None,
) -> GenerationResult:
    """Generate one reply per conversation; row i is steered with multipliers[i] x steer.vector."""
    if not conversations:
        raise ValueError("no conversations to generate for")
    prompts = [chat_prompt(tokenizer, build_messages(conv, system_prompt)) for conv in conversations]
    batch = len(prompts)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p.input_ids) for p in prompts)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for row, prompt in enumerate(prompts):  # left padding: every row's last token is at the same index
        input_ids[row, width - len(prompt.input_ids):] = torch.tensor(prompt.input_ids)
        attention[row, width - len(prompt.input_ids):] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    if cache_factory is not None:
        cache = cache_factory(batch, width + settings.max_new_tokens)
    else:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
    generator = None
    if settings.temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(settings.seed if settings.seed is not None else torch.seed())
    eos = eos_token_ids(model, tokenizer)
    generated: list[list[int]] = [[] for _ in range(batch)]
    finished = [False] * batch
    stopped = False

    def run() -> None:
        nonlocal input_ids, attention, positions, stopped
        for _ in range(settings.max_new_tokens):
            if stop_event is not None and stop_event.is_set():
                stopped = True
                return
            out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                        cache=cache, use_cache=True, logits_to_keep=1)
            tokens = _next_tokens(out.logits[:, -1, :].float(), settings, generator).tolist()
            for row, token in enumerate(tokens):
                if finished[row]:
                    tokens[row] = pad_id
                elif token in eos:
                    finished[row] = True
                else:
                    generated[row].append(token)
            if on_text is not None:
                on_text(_decode(tokenizer, generated))
            if all(finished):
                return
            input_ids = torch.tensor(tokens, device=device).unsqueeze(-1)
            attention = torch.cat([attention, attention.new_ones((batch, 1))], dim=-1)
            positions = positions[:, -1:] + 1

    if steer is not None:
        factors = list(multipliers) if multipliers is not None else [1.0] * batch
        if len(factors) != batch:
            raise ValueError(f"{len(factors)} multipliers for {batch} conversations")
        with steering(model, steer.layer, steer.vector, factors, [p.steer_from for p in prompts]):
            run()
    else:
        run()
    return GenerationResult(_decode(tokenizer, generated), [len(g) for g in generated], stopped, generated)


def _decode(tokenizer: Any, generated: list[list[int]]) -> list[str]:
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]


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
