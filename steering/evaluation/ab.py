"""The paper's A/B measure (Rimsky et al. 2023, section 4), batched and prefix-cached.

The prompt is the chat template with the question and its choices as the user turn, the generation prompt,
then "(" as the start of the reply. The score of a question is p(matching letter) / sum of p(letter) over its
choices, read from the next-token distribution at "(" with steering applied from the assistant part on (the
engine's position rule).

Cost: everything before the steered positions (system prompt and user turn) is the same in every cell of a
sweep, so it is run once per question with a KV cache; each cell then runs only the few steered tokens
("<|im_start|>assistant\\n(" for SmolLM2), batched over questions x multipliers (one multiplier per row), and
the LM head is computed at the last position only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from steering.config import ExtractionSettings
from steering.core.datasets import ABItem
from steering.core.hooks import steering
from steering.core.layers import check_layer, decoder_layers
from steering.core.limits import model_context_length
from steering.core.operators import apply_steering, unit_vector
from steering.core.prompts import pad_token_id
from steering.errors import SteeringError
from steering.evaluation.ab_prompt import ABPrompt, ab_prompts  # noqa: F401  (ab_prompts: re-exported)
from steering.io.vector_set import VectorSet

if TYPE_CHECKING:
    from steering.engine import Engine


# ============================================================================ A/B: batched, prefix-cached
@dataclass
class ABResult:
    """p[s, j, i]: normalised p(matching letter) for steering spec s, multiplier j, question i;
    mass[s, j, i]: p(all choice letters), how much of the next-token distribution the measure covers."""

    p: np.ndarray
    mass: np.ndarray


def _as_specs(vector: Any, layers: Sequence[int]) -> list[tuple[int, torch.Tensor]]:
    if isinstance(vector, VectorSet):
        return [(layer, vector.vector(layer)) for layer in layers]
    if isinstance(vector, Mapping):
        missing = [layer for layer in layers if layer not in vector]
        if missing:
            raise SteeringError(f"no vector for layer(s) {', '.join(map(str, missing))}")
        return [(layer, vector[layer]) for layer in layers]
    if isinstance(vector, torch.Tensor):
        return [(layer, vector) for layer in layers]
    raise TypeError(f"expected a VectorSet, a {{layer: tensor}} mapping or a tensor, got {type(vector).__name__}")


def _letter_scores(logits: torch.Tensor, prompts: Sequence[ABPrompt]) -> tuple[np.ndarray, np.ndarray]:
    probs = torch.softmax(logits.float(), dim=-1)
    p, mass = np.empty(len(prompts)), np.empty(len(prompts))
    for row, prompt in enumerate(prompts):
        letters = {letter: float(probs[row, token]) for letter, token in prompt.letter_ids.items()}
        total = sum(letters.values())
        p[row] = letters[prompt.matching] / total if total > 0 else float("nan")
        mass[row] = total
    return p, mass


@contextmanager
def _layers_from(model: Any, start: int) -> Iterator[bool]:
    """Run only the decoder blocks from `start` on (the input is then block start-1's output, passed as
    inputs_embeds). Yields False, changing nothing, for a model whose blocks are not `model.model.layers`."""
    base = getattr(model, "model", None)
    blocks = getattr(base, "layers", None)
    if not isinstance(blocks, nn.ModuleList) or blocks is not decoder_layers(model):
        yield False
        return
    base.layers = nn.ModuleList(list(blocks)[start:])
    try:
        yield True
    finally:
        base.layers = blocks


@torch.inference_mode()
def _next_logits(
    model: Any, cache: Any, mask: torch.Tensor, positions: torch.Tensor, **inputs: torch.Tensor
) -> torch.Tensor:
    """The next-token logits (rows, vocab) after the suffix rows `inputs` (input_ids or inputs_embeds), run on
    top of the prefixes already in `cache` (which grows by the suffix); `mask` covers prefix and suffix."""
    out = model(**inputs, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1, :]


def ab_probabilities(
    model: Any,
    prompts: Sequence[ABPrompt],
    specs: Sequence[tuple[int, torch.Tensor]],
    multipliers: Sequence[float],
    batch_size: int = ExtractionSettings.batch_size,
    pad_id: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    skip_layers: bool = True,
) -> ABResult:
    """The A/B measure for every (layer, vector) spec x multiplier x question.

    Per chunk of questions: the unsteered prefixes run once into a KV cache; the unsteered suffix runs
    once (the multiplier-0 cells, the same for every spec), keeping each block's output; then the cache
    is repeated once per non-zero multiplier and, for each spec, only the steered suffix tokens run
    (rows = questions x multipliers, one multiplier per row), after which the cache is cropped back.

    With skip_layers (default), a spec at layer L starts from block L's recorded unsteered output plus
    multiplier x vector and runs blocks L+1.. only (blocks 0..L see no steering, so they would repeat
    the unsteered computation); otherwise the whole model runs with the steering hook on block L.
    Both give the same numbers (tests/test_evaluation.py checks both against a plain computation).
    """
    from transformers import DynamicCache  # lazy: transformers is slow to import; only this path needs it

    if not prompts:
        raise SteeringError("no A/B questions to evaluate")
    if not multipliers:
        raise SteeringError("no multipliers to evaluate")
    device = next(model.parameters()).device
    base = getattr(model, "model", model)
    blocks = decoder_layers(model)
    n_specs, n_mult, n_items = len(specs), len(multipliers), len(prompts)
    p = np.full((n_specs, n_mult, n_items), np.nan)
    mass = np.full((n_specs, n_mult, n_items), np.nan)
    zero = [j for j, m in enumerate(multipliers) if m == 0]
    nonzero = [j for j, m in enumerate(multipliers) if m != 0]
    order = sorted(range(n_items), key=lambda i: len(prompts[i].prefix))
    done = 0
    for start in range(0, n_items, batch_size):
        chunk = order[start : start + batch_size]
        rows = [prompts[i] for i in chunk]
        q = len(rows)
        width = max(len(r.prefix) for r in rows)
        span = max(len(r.suffix) for r in rows)
        prefix_ids = torch.full((q, width), pad_id, dtype=torch.long)
        prefix_mask = torch.zeros((q, width), dtype=torch.long)
        suffix_ids = torch.full((q, span), pad_id, dtype=torch.long)
        suffix_mask = torch.zeros((q, span), dtype=torch.long)
        suffix_pos = torch.zeros((q, span), dtype=torch.long)
        for row, prompt in enumerate(rows):
            # left padding in both parts: every row's last token ("(") is the last column
            prefix_ids[row, width - len(prompt.prefix) :] = torch.tensor(prompt.prefix)
            prefix_mask[row, width - len(prompt.prefix) :] = 1
            suffix_ids[row, span - len(prompt.suffix) :] = torch.tensor(prompt.suffix)
            suffix_mask[row, span - len(prompt.suffix) :] = 1
            suffix_pos[row] = len(prompt.prefix)  # pads (masked out) sit at the first steered position
            suffix_pos[row, span - len(prompt.suffix) :] = len(prompt.prefix) + torch.arange(len(prompt.suffix))
        steer_from = torch.tensor([len(r.prefix) for r in rows])
        mask = torch.cat([prefix_mask, suffix_mask], dim=-1).to(device)
        cache = DynamicCache(config=model.config)
        base(
            input_ids=prefix_ids.to(device),
            attention_mask=prefix_mask.to(device),
            position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0).to(device),
            cache=cache,
            use_cache=True,
        )

        # the unsteered suffix: the multiplier-0 cells, and each needed block's output for skip_layers
        outputs: dict[int, torch.Tensor] = {}

        def keeper(layer: int):
            def keep(module: Any, args: Any, output: Any) -> None:
                outputs[layer] = (output[0] if isinstance(output, tuple) else output).detach()  # noqa: B023 (the closure runs within this iteration)

            return keep

        handles = (
            [blocks[layer].register_forward_hook(keeper(layer)) for layer in sorted({layer for layer, _ in specs})]
            if skip_layers and nonzero
            else []
        )
        try:
            unsteered = _next_logits(model, cache, mask, suffix_pos.to(device), input_ids=suffix_ids.to(device))
        finally:
            for handle in handles:
                handle.remove()
        cache.crop(-span)  # back to the shared prefix
        if zero:
            zp, zm = _letter_scores(unsteered, rows)
            for j in zero:
                p[:, j, chunk], mass[:, j, chunk] = zp, zm
        if nonzero:
            k = len(nonzero)
            cache.batch_repeat_interleave(k)
            row_multipliers = torch.tensor([float(multipliers[j]) for j in nonzero]).repeat(q)  # row = i * k + j
            row_prompts = [prompt for prompt in rows for _ in range(k)]
            row_mask = mask.repeat_interleave(k, 0)
            row_pos = suffix_pos.repeat_interleave(k, 0).to(device)
            for s, (layer, vector) in enumerate(specs):
                logits = None
                if skip_layers:
                    with _layers_from(model, layer + 1) as skipping:
                        if skipping:
                            hidden = outputs[layer].repeat_interleave(k, 0)
                            v = vector.to(hidden.device, hidden.dtype)
                            add = row_multipliers.to(hidden.device, hidden.dtype)
                            none = torch.zeros_like(add)
                            # the suffix is all steered positions: active = 1 everywhere
                            embeds = apply_steering(
                                hidden,
                                v,
                                unit_vector(v),
                                add,
                                none,
                                none,
                                torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device),
                            )
                            logits = _next_logits(model, cache, row_mask, row_pos, inputs_embeds=embeds)
                            for later in range(layer + 1, len(blocks)):
                                cache.layers[later].crop(-span)
                if logits is None:
                    with steering(model, layer, vector.to(device), row_multipliers, steer_from.repeat_interleave(k)):
                        logits = _next_logits(
                            model, cache, row_mask, row_pos, input_ids=suffix_ids.repeat_interleave(k, 0).to(device)
                        )
                    cache.crop(-span)
                sp, sm = _letter_scores(logits, row_prompts)
                p[s][np.ix_(nonzero, chunk)] = sp.reshape(q, k).T
                mass[s][np.ix_(nonzero, chunk)] = sm.reshape(q, k).T
        done += q
        if on_progress is not None:
            on_progress(done, n_items)
    return ABResult(p, mass)


def ab_sweep(
    engine: Engine,
    vector: Any,
    layers: Sequence[int],
    multipliers: Sequence[float],
    items: Sequence[ABItem],
    system_prompt: str | None = None,
    batch_size: int = ExtractionSettings.batch_size,
    per_item: bool = False,
) -> np.ndarray:
    """Mean normalised p(matching letter) over `items`, shape (len(layers), len(multipliers)).

    `vector` is a VectorSet (each layer steered with its own vector), a {layer: tensor} mapping or one
    tensor used at every layer. For the app: values near 0.5 mean no preference; > 0.5 more behavior.
    per_item=True: the values of every question instead of their mean, shape (len(layers),
    len(multipliers), len(items)) (the Calibrate tab's reliability view). Takes the model's lock; the
    prompts are cut to the model's context and config limits.max_prompt_tokens.
    """
    for layer in layers:
        check_layer(layer, engine.lm.num_layers)
    lm = engine.lm
    prompts = ab_prompts(
        lm.tokenizer,
        items,
        system_prompt,
        context_length=model_context_length(lm.model),
        max_tokens=engine.config.limits.max_prompt_tokens,
    )
    with lm.lock:
        result = ab_probabilities(
            lm.model, prompts, _as_specs(vector, layers), multipliers, batch_size, pad_token_id(lm.tokenizer)
        )
    values = np.asarray(result.p, dtype=float)
    return values if per_item else values.mean(axis=-1)
