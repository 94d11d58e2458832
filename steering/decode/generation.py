"""Batched generation: several conversations in one batch, each row with its own steering multiplier.

One forward pass per token serves all rows (the app's added / unsteered / subtracted panes), rows may
differ in length (left padding, absolute positions per row), and text can be streamed and stopped.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Sequence

import torch

from steering.config import GenerationSettings
from steering.core.hooks import SteeringPlan, plan_from
from steering.core.hooks import steer as apply_plan
from steering.core.limits import Limits, check_token_budget, model_context_length
from steering.core.prompts import Message, build_messages, chat_prompt, common_prefix_length, pad_token_id

_DEFAULTS = GenerationSettings()  # one source of the sampling defaults: config `generation:`

# Queue the next decoding step before reading this one's tokens: None = on CUDA devices only.
LOOKAHEAD: bool | None = None


@dataclass(frozen=True)
class SamplingSettings:
    """How tokens are chosen: at most `max_new_tokens` per row; temperature 0 = greedy, else softmax at that
    temperature over the smallest token set of probability >= `top_p` (nucleus); `seed` makes sampling
    repeatable (None: a fresh seed). Raises ValueError for values out of range."""

    max_new_tokens: int = _DEFAULTS.max_new_tokens  # the defaults: config `generation:` (steering.config)
    temperature: float = _DEFAULTS.temperature  # 0 means greedy decoding
    top_p: float = _DEFAULTS.top_p
    seed: int | None = _DEFAULTS.seed  # same seed, same text; None draws a fresh one

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class SteeringSpec:
    """CAA addition at one decoder block: `layer` (0-based block index) and `vector` (hidden_size,), added
    times each row's multiplier to the block's output (Rimsky et al. 2023, section 3)."""

    layer: int
    vector: torch.Tensor


@dataclass
class GenerationResult:
    """What generate() returns: one reply text per conversation (row), the count and ids of the tokens
    generated per row, and whether a stop request ended generation early."""

    texts: list[str]
    new_tokens: list[int]  # tokens generated per row (end-of-turn excluded)
    stopped: bool = False  # True when a stop request ended generation early
    token_ids: list[list[int]] = field(default_factory=list)


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The token ids that end a reply: the model's generation_config eos_token_id(s) and the tokenizer's.

    Args:
        model: a transformers causal LM (its generation_config may list several end-of-turn ids).
        tokenizer: its tokenizer.

    Returns:
        A set of token ids (empty when neither defines one).
    """
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def _next_tokens(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> torch.Tensor:
    """The next token of each row: argmax at temperature 0, else a temperature / top-p (nucleus) sample.

    Args:
        logits: (batch, vocab) last-position logits (float32).
        settings: temperature and top_p.
        generator: the generation's random stream; one vector of vocab uniform numbers is drawn per step.

    Sampling is the Gumbel-max trick, argmax(logits / T + g) with g = -log(-log U) ~ Gumbel(0, 1), which
    draws from softmax(logits / T) (restricted to the top-p nucleus). Every row uses the same noise g, as if
    each row had its own generator seeded alike: a row's tokens depend only on its own logits and the
    seed, not on which other rows share the batch or where it sits. Rows that are alike (the unsteered
    pane and a plain reply, all panes at alpha 0) give the same text, and the panes differ only by
    steering. Being an argmax, the choice changes only when two perturbed scores nearly tie, so rounding
    differences between batch shapes (fp16 GPU kernels) rarely move it, unlike an inverse-CDF draw whose
    cumulative sum over the whole vocabulary collects them.
    """
    if settings.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / settings.temperature
    if settings.top_p < 1.0:
        probs = torch.softmax(scores, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > settings.top_p  # keep the smallest nucleus
        scores = scores.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), float("-inf"))
    uniform = torch.rand(scores.shape[-1], generator=generator, device=scores.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(uniform.clamp(min=torch.finfo(torch.float32).tiny)))
    return (scores + gumbel).argmax(dim=-1)


def check_prompt_budget(
    prompt_tokens: Sequence[int], max_new_tokens: int, limits: Limits | None, context: int | None
) -> None:
    """check_token_budget for each row of a batch (rows named when there are several).

    Args:
        prompt_tokens: templated prompt length of each row, in tokens.
        max_new_tokens: tokens asked for per row.
        limits: the configured caps; None checks the context window only.
        context: the model's context window in tokens (None: not checked).

    Raises:
        SteeringError: the first row over a cap, with its length and the cap.
    """
    for row, tokens in enumerate(prompt_tokens):
        what = "the prompt" if len(set(prompt_tokens)) == 1 else f"row {row}'s prompt"  # e.g. 3 panes, 1 prompt
        if limits is None:
            check_token_budget(
                tokens,
                max_new_tokens,
                Limits(max_new_tokens=max(max_new_tokens, 1), max_prompt_tokens=max(tokens, 1)),
                context,
                what,
            )
        else:
            check_token_budget(tokens, max_new_tokens, limits, context, what)


@torch.inference_mode()
def generate(  # noqa: C901 (the decode loop; its split into a decoder protocol is issue 11 item 4)
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    multipliers: Sequence[float] | None = None,
    steer: SteeringSpec | SteeringPlan | None = None,
    settings: SamplingSettings = SamplingSettings(),
    system_prompt: str | None = None,
    on_text: Callable[[list[str]], None] | None = None,
    stop_event: threading.Event | None = None,
    cache_factory: Callable[[int, int], Any] | None = None,
    decode_forward: Callable[..., Any] | None = None,
    steering_context: Callable[..., ContextManager[Any]] | None = None,
    ignore_eos: bool = False,
    limits: Limits | None = None,
) -> GenerationResult:
    """Generate one reply per conversation; row i is steered with multipliers[i] x steer.vector.

    `steer` is a SteeringSpec (CAA addition at one layer, row i with multipliers[i]) or a
    hooks.SteeringPlan (any operators and layers, per row; then no `multipliers`).

    Hooks for the fast path (steering/decode/fast_path.py) and the benchmark:
    `cache_factory(batch, length)` makes the KV cache (a static cache gets an attention mask padded to
    its full length, so every decoding step has the same shapes); `decode_forward` replaces the model
    call for the one-token decoding steps (e.g. a compiled forward); `steering_context(model, plan,
    steer_from)` replaces hooks.steer (e.g. hooks registered once);
    `ignore_eos` generates exactly max_new_tokens per row (equal lengths for timing).

    Before the model runs, each row's templated prompt (system prompt + history + message) is counted
    and checked (check_token_budget): against `limits` when given (the Engine passes the config's), and
    always against the model's context (config.max_position_embeddings). Sampling (temperature > 0)
    gives every row the same random stream (see _next_tokens): a row's text does not depend on the batch.

    Raises:
        SteeringError: a prompt over the limits or the context, before any forward pass.
    """
    if not conversations:
        raise ValueError("no conversations to generate for")
    prompts = [chat_prompt(tokenizer, build_messages(conv, system_prompt)) for conv in conversations]
    check_prompt_budget(
        [len(p.input_ids) for p in prompts], settings.max_new_tokens, limits, model_context_length(model)
    )
    batch = len(prompts)
    device = next(model.parameters()).device
    pad_id = pad_token_id(tokenizer)
    # Rows that begin alike (the app's three panes, a template's system prompt) share that prefix: it
    # is computed once for all rows, before steering starts (it ends before every row's steer_from),
    # and its KV cache is copied to each row. A static cache has a fixed batch, so only dynamic ones.
    shared = 0
    if batch > 1 and cache_factory is None:
        shared = min(len(p.input_ids) for p in prompts) - 1  # each row keeps a token of its own
        if steer is not None:
            shared = min(shared, min(p.steer_from for p in prompts))
        for prompt in prompts[1:]:
            shared = common_prefix_length(prompts[0].input_ids, prompt.input_ids, shared)
    width = max(len(p.input_ids) for p in prompts)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for row, prompt in enumerate(prompts):  # the shared prefix, then the rest left padded: last tokens aligned
        own = len(prompt.input_ids) - shared
        input_ids[row, :shared] = torch.tensor(prompt.input_ids[:shared], dtype=torch.long)
        input_ids[row, width - own :] = torch.tensor(prompt.input_ids[shared:], dtype=torch.long)
        attention[row, :shared] = 1
        attention[row, width - own :] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    total = width + settings.max_new_tokens
    if cache_factory is not None:
        cache = cache_factory(batch, total)
    else:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        if shared:
            model(
                input_ids=input_ids[:1, :shared],
                attention_mask=attention[:1, :shared],
                position_ids=positions[:1, :shared],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache.batch_repeat_interleave(batch)
    # One mask for the whole generation, filled in place: a static cache sees all of it (the columns
    # not yet written are 0), a dynamic one the prefix that matches what it holds.
    static = bool(getattr(cache, "is_compileable", False))
    mask_len = int(cache.get_max_length()) if static else total
    if mask_len < total:
        raise ValueError(f"the cache holds {mask_len} tokens, the generation needs {total}")
    full_mask = torch.zeros((batch, mask_len), dtype=torch.long, device=device)
    full_mask[:, :width] = attention
    step_forward = decode_forward if decode_forward is not None else model
    generator = None
    if settings.temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(settings.seed if settings.seed is not None else torch.seed())
    eos = set() if ignore_eos else eos_token_ids(model, tokenizer)
    generated: list[list[int]] = [[] for _ in range(batch)]
    finished = [False] * batch
    stopped = False
    texts = _StreamingText(tokenizer, batch) if on_text is not None else None

    def run() -> None:
        nonlocal stopped
        ids, pos, length = input_ids[:, shared:], positions[:, shared:], width
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        pad = torch.tensor(pad_id, device=device)
        eos_ids = torch.tensor(sorted(eos), dtype=torch.long, device=device) if eos else None
        # On a GPU the next step is queued before this step's tokens are read (the one host sync per
        # step), so streaming and bookkeeping overlap the GPU's work instead of stalling it.
        lookahead = LOOKAHEAD if LOOKAHEAD is not None else device.type == "cuda"

        # Each step's tokens go to pinned host memory with an event of their own, so reading them waits
        # for that step only, not for the next one queued behind it (as a plain .tolist() would).
        pinned = device.type == "cuda" and lookahead
        buffers = [torch.empty(batch, dtype=torch.long, pin_memory=True) for _ in range(2)] if pinned else []

        def launch(step: int) -> Callable[[], list[int]]:
            """Queue one forward pass and the token choice; returns the reader of the chosen tokens."""
            nonlocal ids, pos, length, done
            if step > 0:
                full_mask[:, length] = 1  # the token fed now sits at cache index `length`
                length += 1
            forward = model if step == 0 else step_forward
            out = forward(
                input_ids=ids,
                attention_mask=full_mask if static else full_mask[:, :length],
                position_ids=pos,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            chosen = _next_tokens(out.logits[:, -1, :].float(), settings, generator)
            ids = torch.where(done, pad, chosen).unsqueeze(-1)  # finished rows are fed padding
            pos = pos[:, -1:] + 1
            if eos_ids is not None:
                done = done | torch.isin(chosen, eos_ids)
            if not pinned:
                return chosen.tolist
            host = buffers[step % 2]  # step k+1 writes the other buffer; step k+2 comes after k is read
            host.copy_(chosen, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()

            def read() -> list[int]:
                ready.synchronize()
                return host.tolist()

            return read

        pending: Callable[[], list[int]] | None = None
        for step in range(settings.max_new_tokens):
            if stop_event is not None and stop_event.is_set():
                stopped = True
                return
            read = pending if pending is not None else launch(step)
            pending = launch(step + 1) if lookahead and step + 1 < settings.max_new_tokens else None
            tokens = read()
            for row, token in enumerate(tokens):
                if finished[row]:
                    continue
                if token in eos:
                    finished[row] = True
                else:
                    generated[row].append(token)
            if texts is not None and on_text is not None:
                on_text(texts.update(generated))
            if all(finished):
                return

    if steer is not None:
        plan = plan_from(steer, multipliers, batch)  # a SteeringSpec + multipliers is CAA addition
        context = steering_context if steering_context is not None else apply_plan
        with context(model, plan, [p.steer_from for p in prompts]):
            run()
    else:
        run()
    return GenerationResult(_decode(tokenizer, generated), [len(g) for g in generated], stopped, generated)


def _decode(tokenizer: Any, generated: list[list[int]]) -> list[str]:
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]


class _StreamingText:
    """Each row's text while it grows, decoding only the new tokens (not the whole row) per step.

    The usual incremental detokenizer: decode a short window before the new tokens and after them,
    and append the difference; wait while the tail is an incomplete UTF-8 sequence (up to 4 tokens). The final texts
    of a generation come from a full decode (_decode), so streaming never changes the result.
    """

    def __init__(self, tokenizer: Any, batch: int) -> None:
        self.tokenizer = tokenizer
        self.text = [""] * batch
        self.prefix = [0] * batch  # start of the context window
        self.read = [0] * batch  # tokens already turned into text
        self.shown = [""] * batch

    def update(self, generated: list[list[int]]) -> list[str]:
        for row, ids in enumerate(generated):
            if len(ids) == self.read[row]:
                continue
            decode = self.tokenizer.decode
            before = decode(ids[self.prefix[row] : self.read[row]], skip_special_tokens=True)
            after = decode(ids[self.prefix[row] :], skip_special_tokens=True)
            # wait (a few tokens at most) while the tail is an incomplete UTF-8 character
            pending = len(ids) - self.read[row]
            if len(after) > len(before) and (not after.endswith("\ufffd") or pending >= 4):
                self.text[row] += after[len(before) :]
                self.prefix[row] = self.read[row]
                self.read[row] = len(ids)
                self.shown[row] = self.text[row].strip()
        return list(self.shown)


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
