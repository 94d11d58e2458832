"""The eager steering hooks: a forward hook per steered decoder block and the `steer` / `steering`
context managers that install them for the duration of a `with` block.

The arithmetic is steering.core.operators.apply_steering (h' = h + active * (add * v + project *
(target - h.u) * u): CAA addition, projection clamp, directional ablation); what each layer does is a
steering.core.plan.SteeringPlan. Both modules' names are re-exported here, where they were defined
before the split, so `from steering.core.hooks import SteeringPlan, apply_steering, ...` keeps working.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from steering.core.layers import check_layer, decoder_layers
from steering.core.operators import OPERATORS, apply_steering, steering_active, unit_vector
from steering.core.plan import LayerSteering, SteeringPlan, layer_vectors, plan_from

__all__ = [
    "OPERATORS",
    "LayerSteering",
    "SteeringHook",
    "SteeringPlan",
    "apply_steering",
    "layer_vectors",
    "plan_from",
    "steer",
    "steering",
    "steering_active",
    "unit_vector",
]


class SteeringHook:
    """Forward hook of one block: apply_steering with per-row add (= `multipliers`), project and target,
    at positions >= steer_from[row].

    Positions are absolute (the `position_ids` the model receives), so the rule holds in the prefill
    pass and in every KV-cached decoding step. The per-row tensors are updated in place
    (set_multipliers), so a compiled graph never has to be rebuilt when the user moves the slider.
    """

    def __init__(self, spec: LayerSteering, steer_from: Sequence[int] | torch.Tensor) -> None:
        """
        Args:
            spec: the layer's vector and per-row values (LayerSteering: add, project, target, renorm, window).
            steer_from: (batch,) each row's first steered position (absolute position index).
        """
        # a copy: set_multipliers changes the hook's per-row values in place, never the caller's plan
        spec = LayerSteering.build(spec.vector, spec.add, spec.project, spec.target, spec.renorm, spec.window)
        self.vector = spec.vector.float()
        self.unit = unit_vector(self.vector)
        self.multipliers = spec.add  # the add term; the historical name
        self.project = spec.project
        self.target = spec.target
        # None when no row is rescaled / every row steers every position: the formula is then exactly CAA's
        self.renorm: torch.Tensor | None = spec.renorms if bool(spec.renorms.any()) else None
        self.window: torch.Tensor | None = spec.windows if bool(spec.windows.isfinite().any()) else None
        self.steer_from = torch.as_tensor(steer_from, dtype=torch.long).clone()
        self._placed: tuple[torch.device, torch.dtype] | None = None

    def _place(self, hidden: torch.Tensor) -> None:
        # The vector follows the layer's device and dtype (8-bit, 4-bit and device_map models included).
        if self._placed != (hidden.device, hidden.dtype):
            self.vector = self.vector.to(hidden.device, hidden.dtype)
            self.unit = unit_vector(self.vector)  # from the placed vector, as the fast path does
            self.multipliers = self.multipliers.to(hidden.device, hidden.dtype)
            self.project = self.project.to(hidden.device, torch.float32)
            self.target = self.target.to(hidden.device, torch.float32)
            if self.renorm is not None:
                self.renorm = self.renorm.to(hidden.device, torch.float32)
            if self.window is not None:
                self.window = self.window.to(hidden.device, torch.float32)
            self.steer_from = self.steer_from.to(hidden.device)
            self._placed = (hidden.device, hidden.dtype)

    def set_multipliers(self, values: Sequence[float]) -> None:
        """Set every row's add term (the CAA multiplier) in place, so a compiled graph is not rebuilt.

        Args:
            values: one multiplier per row, (batch,) in the same order as the batch.

        Raises:
            RuntimeError: `values` has a different number of rows than the hook.
        """
        self.multipliers.copy_(torch.as_tensor(values, dtype=self.multipliers.dtype))

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        self._place(hidden)
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        active = steering_active(positions, self.steer_from, hidden.dtype, self.window)  # (batch, seq)
        steered = apply_steering(
            hidden, self.vector, self.unit, self.multipliers, self.project, self.target, active, self.renorm
        )
        if isinstance(output, tuple):
            return (steered,) + tuple(output[1:])
        return steered


@contextmanager
def steer(
    model: nn.Module, plan: SteeringPlan, steer_from: Sequence[int] | torch.Tensor
) -> Iterator[list[SteeringHook]]:
    """Apply `plan` (one forward hook per layer of the plan) for the duration of the `with` block.

    The operators (CAA addition, Rimsky et al. 2023 section 3; projection / clamp along the vector as in
    Arditi et al. 2024's directional ablation) are those of apply_steering. Hooks are removed on any exit.

    Args:
        model: a transformers causal LM (PreTrainedModel) with Llama-style decoder blocks.
        plan: SteeringPlan: {layer: LayerSteering}, every per-row tensor of shape (batch,).
        steer_from: (batch,) ints, the first steered absolute token position of each row (positions
            >= steer_from[row] are steered, in the prefill and every cached decoding step).

    Yields:
        list[SteeringHook]: the hooks, one per layer in ascending layer order (set_multipliers changes
        a row's strength in place).

    Raises:
        SteeringError: a layer of the plan out of range for the model.
        ValueError: an empty plan.
    """
    blocks = decoder_layers(model)
    plan.check(len(blocks))
    hooks, handles = [], []
    try:
        for layer, spec in sorted(plan.layers.items()):
            hook = SteeringHook(spec, steer_from)
            hooks.append(hook)
            handles.append(blocks[layer].register_forward_hook(hook, with_kwargs=True))
        yield hooks
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def steering(
    model: nn.Module,
    layer: int,
    vector: torch.Tensor,
    multipliers: Sequence[float] | torch.Tensor,
    steer_from: Sequence[int] | torch.Tensor,
) -> Iterator[SteeringHook]:
    """CAA at one layer for the duration of the `with` block: row i adds multipliers[i] x vector.

    The operator of Rimsky et al. 2023 (arXiv 2312.06681, section 3): the vector, scaled per row, is
    added to the block's output at every position from steer_from[row] on. The hook is removed on any
    exit; `steer` takes any SteeringPlan (several layers, projection).

    Args:
        model: a transformers causal LM (PreTrainedModel) with Llama-style decoder blocks.
        layer: 0-based decoder block index.
        vector: (hidden_size,) steering vector, residual-stream units.
        multipliers: (batch,) floats, CAA multiplier units (0: unsteered, negative: subtracted).
        steer_from: (batch,) ints, the first steered absolute token position of each row.

    Yields:
        SteeringHook: the layer's hook (set_multipliers changes the strengths in place).

    Raises:
        SteeringError: `layer` out of range for the model.
        ValueError: `vector` is not 1-D.

    Example:
        >>> with steering(model, 9, vecs[9], [2.0, -2.0], [0, 0]):  # doctest: +SKIP
        ...     logits = model(input_ids).logits
    """
    blocks = decoder_layers(model)
    check_layer(layer, len(blocks))
    with steer(model, SteeringPlan.addition(layer, vector, multipliers), steer_from) as hooks:
        yield hooks[0]
