"""Mixing two behaviors: the added pane gets alpha1 x v1 + alpha2 x v2 at one layer, the subtracted pane
the negatives, the unsteered pane nothing.

CAA steers one behavior by adding alpha x v at a layer (Rimsky et al. 2023, arXiv 2312.06681, section 3);
the paper's vectors of different behaviors live in the same residual stream, so two of them can be added at
once. A mix uses the paper's operator for both: CAA addition of the summed vector alpha1 v1 + alpha2 v2 at the
first behavior's anchor layer (its recipe's `layer`, or the layer asked for), each row adding its sign
(+1, 0, -1) times that sum. A tuned recipe's band or projection clamp (steering/core/recipe.py) is not used while
mixing; with alpha2 = 0 (or no second behavior) there is no mix and the first behavior's recipe applies as
usual. alpha1 is the first behavior's strength in CAA multiplier units (a recipe in `relative` units is
converted at the layer: alpha1 = strength x typical hidden-state norm / |v1|).

How alike the two directions are is shown beside the control: cosine(v1, v2) at the layer. Vectors that point
the same way (cosine near 1) add up to one stronger push; opposite ones (near -1) cancel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from steering.core.layers import check_layer
from steering.core.limits import check_multiplier
from steering.core.plan import SteeringPlan
from steering.errors import SteeringError


@dataclass(frozen=True)
class Mix:
    """A second behavior mixed into a comparison.

    multiplier: alpha2, its CAA multiplier (checked against limits.max_abs_multiplier); 0 = no mix.
    behavior: its name (the vectors of vectors/<behavior>/<model-slug>.safetensors), or None when
        `vector` is given.
    vector: (hidden,) a vector to use instead (e.g. an uploaded file's, at the layer).
    """

    multiplier: float
    behavior: str | None = None
    vector: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        """True when it changes anything: a non-zero multiplier."""
        return float(self.multiplier) != 0.0


def cosine(v1: torch.Tensor, v2: torch.Tensor) -> float:
    """Cosine similarity of two vectors (hidden,), computed in float64; 0.0 when either is zero.

    Raises:
        SteeringError: the sizes differ.
    """
    if v1.shape != v2.shape:
        raise SteeringError(f"the two vectors have different sizes ({v1.shape[-1]} and {v2.shape[-1]})")
    a, b = v1.detach().double().reshape(-1), v2.detach().double().reshape(-1)
    denominator = float(a.norm() * b.norm())
    return float(a @ b) / denominator if denominator > 0 else 0.0


def mixed_vector(v1: torch.Tensor, alpha1: float, v2: torch.Tensor, alpha2: float) -> torch.Tensor:
    """alpha1 x v1 + alpha2 x v2 as a float32 (hidden,) tensor.

    Raises:
        SteeringError: the sizes differ.
    """
    if v1.shape != v2.shape:
        raise SteeringError(f"the two vectors have different sizes ({v1.shape[-1]} and {v2.shape[-1]})")
    return (float(alpha1) * v1.detach().float() + float(alpha2) * v2.detach().float()).contiguous()


def mix_plan(
    layer: int, v1: torch.Tensor, alpha1: float, v2: torch.Tensor, alpha2: float, signs: Sequence[float]
) -> SteeringPlan:
    """The hooks.SteeringPlan of a mix: row i adds signs[i] x (alpha1 v1 + alpha2 v2) at `layer`.

    Args:
        layer: decoder block index.
        v1, v2: (hidden,) the two behaviors' vectors at that layer.
        alpha1, alpha2: their CAA multipliers.
        signs: one factor per row (compare: +1, 0, -1).
    """
    return SteeringPlan.addition(layer, mixed_vector(v1, alpha1, v2, alpha2), [float(s) for s in signs])


def engine_plan(
    engine: Any,
    signs: Sequence[float],
    mix: Mix,
    recipe: Any = None,
    behavior: str | None = None,
    vector: torch.Tensor | None = None,
    layer: int | None = None,
    multiplier: float | None = None,
) -> SteeringPlan:
    """Engine.steering_plan for a mix: the first behavior as Engine.steering_plan resolves it (recipe,
    overrides, vector), the second from `mix`, both added at the anchor layer (see the module docstring).

    Raises:
        SteeringError: a multiplier over limits.max_abs_multiplier, a layer out of range, no vectors for a
            behavior, vectors of different sizes.
    """

    alpha2 = check_multiplier(mix.multiplier, engine.limits)
    if multiplier is not None:
        multiplier = check_multiplier(multiplier, engine.limits)
    if layer is not None:
        check_layer(layer, engine.lm.num_layers)
    recipe = (recipe or engine.recipe(behavior)).with_overrides(layer, multiplier)
    anchor = check_layer(recipe.layer, engine.lm.num_layers)
    strength = check_multiplier(recipe.strength, engine.limits)
    v1 = vector if vector is not None else engine.recipe_vectors(recipe, behavior).vector(anchor)
    if mix.vector is not None:
        v2 = mix.vector
    elif mix.behavior:
        v2 = engine.vectors_for(mix.behavior).vector(anchor)
    else:
        raise SteeringError("mixing needs a second behavior or vector")
    alpha1 = strength
    if recipe.unit == "relative":  # a fraction of the hidden-state norm -> CAA multiplier units at the layer
        norm = float(v1.float().norm())
        alpha1 = strength * engine.hidden_norm(anchor) / norm if norm > 0 else 0.0
    return mix_plan(anchor, v1, alpha1, v2, alpha2, signs)


def cosine_note(v1: torch.Tensor, v2: torch.Tensor, name1: str, name2: str, layer: int) -> str:
    """The line shown beside the mixing control, e.g. 'cos(refusal, sycophancy) at layer 13 = +0.12: nearly
    independent directions'."""
    value = cosine(v1, v2)
    if value >= 0.5:
        meaning = "similar directions: they add up"
    elif value <= -0.5:
        meaning = "opposite directions: they cancel out"
    else:
        meaning = (
            "nearly independent directions"
            if abs(value) < 0.2
            else "partly shared directions"
            if value > 0
            else "partly opposite directions"
        )
    return f"cos({name1}, {name2}) at layer {layer} = {value:+.2f}: {meaning}"
