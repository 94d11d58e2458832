"""Token choice: the sampling settings, the per-step choice (greedy or Gumbel-max top-p) and the
end-of-sequence bookkeeping on the device, shared by generate() and the scheduler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from steering.config import GenerationSettings

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_DEFAULTS = GenerationSettings()  # one source of the sampling defaults: config `generation:`


@dataclass(frozen=True)
class SamplingSettings:
    """How generate() chooses tokens: greedy (temperature 0) or nucleus sampling, and for how long.

    Attributes:
        max_new_tokens: most tokens generated per row, >= 1 (defaults: config `generation:`).
        temperature: 0 = greedy; > 0 = softmax at that temperature.
        top_p: nucleus sampling: the smallest token set of probability >= top_p, in (0, 1].
        seed: makes sampling repeatable (same seed, same text); None draws a fresh one.

    Raises:
        ValueError: max_new_tokens < 1, temperature < 0 or top_p outside (0, 1] (on construction).
    """

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


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
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


def sample(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> torch.Tensor:
    """The next token of each row: argmax at temperature 0, else a temperature / top-p (nucleus) sample.

    Args:
        logits: (batch, vocab) last-position logits (float32).
        settings: temperature and top_p.
        generator: the generation's random stream; one vector of vocab uniform numbers is drawn per step.

    Returns:
        (batch,) long tensor of token ids, on logits' device.

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


class TokenChoice:
    """One generation's (or one scheduler request's) token choice, step after step, on the device.

    Each call samples the rows' next tokens with the generation's own random stream (seeded from
    `settings.seed`), and keeps `feed`, the (rows, 1) tokens the next step is given: the chosen token,
    or padding for a row that ended at an earlier step (an end-of-sequence token in `eos`).

    Args:
        settings: the sampling settings (temperature > 0 makes a generator).
        rows: the batch rows this choice covers.
        eos: the end-of-sequence token ids (empty: rows never end early).
        pad_id: the padding token fed to ended rows.
        device: where the logits live.
    """

    def __init__(self, settings: SamplingSettings, rows: int, eos: set[int], pad_id: int, device: torch.device) -> None:
        self.settings = settings
        self.generator: torch.Generator | None = None
        if settings.temperature > 0:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(settings.seed if settings.seed is not None else torch.seed())
        self.eos_ids = torch.tensor(sorted(eos), dtype=torch.long, device=device) if eos else None
        self.pad = torch.tensor(pad_id, device=device)
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)
        self.feed = torch.full((rows, 1), pad_id, dtype=torch.long, device=device)  # set by each call

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Choose the next token of each row from (rows, vocab) float logits; returns them, (rows,) long."""
        chosen = sample(logits, self.settings, self.generator)
        self.feed = torch.where(self.done, self.pad, chosen).unsqueeze(-1)  # ended rows are fed padding
        if self.eos_ids is not None:
            self.done = self.done | torch.isin(chosen, self.eos_ids)
        return chosen
