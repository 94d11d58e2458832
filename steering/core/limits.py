"""Bounds every entry point (app, API, CLI, datasets) checks before the model runs.

One place for the ranges, so the API enforces what the UI's sliders allow and the CLI refuses what the
app refuses. Every check raises :class:`SteeringError` with a one-line message naming the bad value;
none of them touches the model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from steering.errors import SteeringError

__all__ = [
    "Limits",
    "BEHAVIOR_NAME",
    "SEED_MAX",
    "check_behavior_name",
    "check_finite",
    "check_multiplier",
    "check_new_tokens",
    "check_seed",
    "check_token_budget",
    "model_context_length",
]

# Behavior names are names, never paths: lower-case letters, digits, '_' and '-' (at most 64).
BEHAVIOR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# torch.Generator.manual_seed takes a 64-bit signed value; larger ones overflow inside torch.
SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """Caps on the work one request may ask for (config section `limits:`, steering.config.Config.limits).

    Attributes:
        max_new_tokens: most tokens generated per row (the UI slider's maximum).
        max_prompt_tokens: most tokens of system prompt + history + message, after the chat template.
        max_abs_multiplier: largest |α| accepted (beyond it the text is noise on any model).
        max_dataset_item_chars: longest question / option text a dataset item may have.
    """

    max_new_tokens: int = 1024
    max_prompt_tokens: int = 4096
    max_abs_multiplier: float = 100.0
    max_dataset_item_chars: int = 20_000

    def __post_init__(self) -> None:
        """Refuse caps that would switch a check off (NaN, infinite, zero, negative, fractional)."""
        for name in ("max_new_tokens", "max_prompt_tokens", "max_dataset_item_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SteeringError(f"config: limits.{name} must be a whole number >= 1, got {value!r}")
        value = self.max_abs_multiplier
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SteeringError(f"config: limits.max_abs_multiplier must be a finite number > 0, got {value!r}")


def check_finite(value: Any, name: str) -> float:
    """`value` as a float; raises SteeringError when it is not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SteeringError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SteeringError(f"{name} must be a finite number, got {value!r}")
    return number


def check_multiplier(value: Any, limits: Limits = Limits(), name: str = "multiplier") -> float:
    """A steering multiplier α: finite and |α| <= limits.max_abs_multiplier; raises SteeringError."""
    number = check_finite(value, name)
    if abs(number) > limits.max_abs_multiplier:
        raise SteeringError(
            f"{name} {number:g} is out of range: expected between {-limits.max_abs_multiplier:g} "
            f"and {limits.max_abs_multiplier:g}"
        )
    return number


def check_new_tokens(value: int, limits: Limits = Limits(), name: str = "max_new_tokens") -> None:
    """Refuse a token count outside 1..limits.max_new_tokens (config limits.max_new_tokens), naming `name`
    (a flag such as --max-new-tokens or a config key such as generation.max_new_tokens)."""
    if not 1 <= value <= limits.max_new_tokens:
        raise SteeringError(
            f"{name} {value} is out of range: expected 1 to {limits.max_new_tokens} (config limits.max_new_tokens)"
        )


def check_whole_number(value: Any, name: str, low: int, high: int) -> int:
    """`value` (an int, a float with no fraction, or text such as " 12 ") as an int in [low, high].

    Raises:
        SteeringError: one line naming `name`: not a whole number (True/False, None, a fraction, NaN, inf,
            other text), or outside [low, high].
    """
    if isinstance(value, bool) or value is None:
        raise SteeringError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise SteeringError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    try:
        number = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise SteeringError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise SteeringError(f"{name} {number} is out of range: expected {low} to {high}")
    return number


def check_in_range(value: Any, name: str, low: float, high: float) -> float:
    """`value` as a finite float in [low, high] (True/False are not numbers here).

    Raises:
        SteeringError: one line naming `name`: not a number, or not finite, or outside [low, high].
    """
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise SteeringError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise SteeringError(f"{name} {value!r} is out of range: expected {low:g} to {high:g}")
    return number


def check_seed(value: Any, name: str = "seed") -> int:
    """A random seed: a whole number in [0, 2**63 - 1] (check_whole_number); raises SteeringError otherwise."""
    return check_whole_number(value, name, 0, SEED_MAX)


def check_behavior_name(name: Any) -> str:
    """A behavior name usable as a folder name: lower-case letters, digits, '_' and '-' only.

    Raises SteeringError for empty names, paths ('../x', '/abs', 'a/b') and anything else.
    """
    if not isinstance(name, str) or not BEHAVIOR_NAME.match(name):
        raise SteeringError(
            f"behavior name {name!r} is not valid: use lower-case letters, digits, '_' and '-' (e.g. refusal)"
        )
    return name


def check_token_budget(
    prompt_tokens: int,
    max_new_tokens: int,
    limits: Limits = Limits(),
    context_length: int | None = None,
    what: str = "the prompt",
) -> None:
    """Refuse work that exceeds the caps before the model runs.

    Args:
        prompt_tokens: tokens of the templated prompt (system prompt + history + message).
        max_new_tokens: tokens asked for per row.
        limits: the configured caps.
        context_length: the model's context window in tokens (None: unknown, not checked).
        what: how the message names the prompt (e.g. "row 2's conversation").

    Raises:
        SteeringError: max_new_tokens outside [1, limits.max_new_tokens], prompt_tokens over
            limits.max_prompt_tokens, or prompt + new tokens over the context window.
    """
    if not 1 <= max_new_tokens <= limits.max_new_tokens:
        raise SteeringError(f"max_new_tokens {max_new_tokens} is out of range: expected 1 to {limits.max_new_tokens}")
    if prompt_tokens > limits.max_prompt_tokens:
        raise SteeringError(
            f"{what} is {prompt_tokens} tokens long (system prompt + history + message); "
            f"the limit is {limits.max_prompt_tokens}"
        )
    if context_length is not None and prompt_tokens + max_new_tokens > context_length:
        raise SteeringError(
            f"{what} ({prompt_tokens} tokens) plus {max_new_tokens} new tokens exceeds the model's "
            f"context of {context_length} tokens"
        )


def model_context_length(model: Any) -> int | None:
    """The model's context window in tokens, or None when its config does not say.

    Args:
        model: a transformers model or its config (reads `max_position_embeddings`, else `n_positions`
            / `max_sequence_length`).
    """
    config = getattr(model, "config", model)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
