"""The three-pane comparison the CLI and the app show: added (+alpha), unsteered (0) and subtracted
(-alpha) replies to the same conversation, generated as one batch (the paper's comparison, Rimsky et al.
2023, arXiv 2312.06681, section 4). The Engine offers these as Engine.compare and Engine.compare_batch;
the engine core (vectors, plans, generation) knows nothing of panes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import torch

from steering.core.limits import check_multiplier
from steering.core.prompts import Message
from steering.core.recipe import Recipe
from steering.decode.generation import GenerationResult, SamplingSettings

if TYPE_CHECKING:
    from steering.engine import Engine

# Row order of a comparison batch; the multiplier of each row is sign x alpha.
VARIANTS = ("added", "unsteered", "subtracted")
SIGNS = (1.0, 0.0, -1.0)


def conversation_list(
    conversations: Sequence[Sequence[Message]] | Sequence[Message], copies: int
) -> list[Sequence[Message]]:
    """One conversation (a list of messages) repeated `copies` times, or the given list of conversations."""
    if conversations and isinstance(conversations[0], dict):
        return [cast(Sequence[Message], conversations)] * copies
    return list(cast(Sequence[Sequence[Message]], conversations))


def compare(
    engine: Engine,
    conversations: Sequence[Sequence[Message]] | Sequence[Message],
    vector: torch.Tensor | None = None,
    layer: int | None = None,
    multiplier: float | None = None,
    settings: SamplingSettings | None = None,
    system_prompt: str | None = None,
    on_text: Callable[[list[str]], None] | None = None,
    stop_event: threading.Event | None = None,
    recipe: Recipe | None = None,
    behavior: str | None = None,
    extra: Sequence[Sequence[Message]] = (),
    meter: Any = None,
    mix: Any = None,
) -> GenerationResult:
    """Added (+alpha), unsteered (0) and subtracted (-alpha) replies as one batch of three rows.

    `conversations` is either one conversation (shared by all rows) or three, one per row
    (the app's panes diverge after the first turn). The steering is `recipe` (default: the
    behavior's, Engine.recipe: the tuned defaults file, else config.yaml); `layer` and `multiplier`
    replace its anchor layer and strength, `vector` its vector (see steering_plan). With a
    one-layer addition recipe this is the paper's +alpha / 0 / -alpha comparison.

    `extra`: more conversations, answered unsteered in the same batch after the three rows (the app's
    prompted panes: a conversation that starts with its own system message keeps it; `system_prompt`
    applies to the others). The result then has 3 + len(extra) rows.

    `meter`: a steering.ui.meter.Meter, filled with every generated token's projection onto the vector
    at its layer, read in the forward pass that made the token (Meter.values after the call).

    `mix`: a steering.core.mixing.Mix, a second behavior with its own multiplier alpha2: the added row gets
    alpha1 v1 + alpha2 v2 at the anchor layer, the subtracted row the negatives (steering/core/mixing.py).
    """
    settings = settings or SamplingSettings()
    plan = engine.steering_plan(SIGNS + (0.0,) * len(extra), recipe, behavior, vector, layer, multiplier, mix)
    convs = conversation_list(conversations, 3)
    if len(convs) != 3:
        raise ValueError(f"expected 1 or 3 conversations, got {len(convs)}")
    rows = [list(c) for c in convs] + [list(c) for c in extra]
    return engine._generate(
        rows,
        settings,
        system_prompt,
        steer=plan,
        on_text=on_text,
        stop_event=stop_event,
        meter=meter,
    )


def compare_batch(
    engine: Engine,
    prompts: Sequence[str],
    vector: torch.Tensor | None = None,
    layer: int | None = None,
    multiplier: float | None = None,
    settings: SamplingSettings | None = None,
    system_prompt: str | None = None,
    recipe: Recipe | None = None,
    behavior: str | None = None,
    mix: Any = None,
) -> list[dict[str, str]]:
    """compare() for many single-turn prompts at once: 3 rows per prompt in one batch (`mix`: as compare)."""
    settings = settings or SamplingSettings()
    plan = engine.steering_plan(
        [sign for _ in prompts for sign in SIGNS], recipe, behavior, vector, layer, multiplier, mix
    )
    conversations = [[{"role": "user", "content": p}] for p in prompts for _ in SIGNS]
    texts = engine._generate(conversations, settings, system_prompt, steer=plan).texts
    return [dict(zip(VARIANTS, texts[i : i + 3])) for i in range(0, len(texts), 3)]


def generate_rows(
    engine: Engine,
    conversations: Sequence[Sequence[Message]],
    strengths: Sequence[float],
    settings: SamplingSettings | None = None,
    system_prompt: str | None = None,
    stop_event: threading.Event | None = None,
    **steering: Any,
) -> GenerationResult:
    """One batch, row i steered with strengths[i] x the multiplier (the app's dose-response strip).

    Args:
        engine: the Engine.
        conversations: one conversation per row.
        strengths: per row, a signed factor of the multiplier (0: unsteered; see Engine.steering_plan).
        settings, system_prompt, stop_event: as compare().
        steering: Engine.steering_plan's keyword arguments (vector, layer, multiplier, recipe, behavior), as
            compare() takes them.

    Returns:
        The GenerationResult, one row per conversation.

    Raises:
        SteeringError: caps, layer, |strength x multiplier| over limits.max_abs_multiplier.
        ValueError: the counts differ.
    """
    if len(conversations) != len(strengths):
        raise ValueError(f"expected one strength per conversation, got {len(strengths)} for {len(conversations)}")
    multiplier = steering.get("multiplier")
    if multiplier is not None:
        for factor in strengths:
            check_multiplier(float(factor) * float(multiplier), engine.limits)
    plan = engine.steering_plan(list(strengths), **steering)
    return engine._generate(
        [list(c) for c in conversations],
        settings or SamplingSettings(),
        system_prompt,
        steer=plan,
        stop_event=stop_event,
    )
