"""The steering operator: a forward hook that adds multiplier[row] x vector to a decoder block's output."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from steering.layers import check_layer, decoder_layers


class SteeringHook:
    """Adds `multipliers[row] * vector` to the output of one block, at positions >= steer_from[row].

    Positions are absolute (the `position_ids` the model receives), so the rule holds in the
    prefill pass and in every KV-cached decoding step. `multipliers` is a tensor updated in place,
    so a compiled graph never has to be rebuilt when the user moves the slider.
    """

    def __init__(self, vector: torch.Tensor, multipliers: Sequence[float] | torch.Tensor,
                 steer_from: Sequence[int] | torch.Tensor) -> None:
        if vector.ndim != 1:
            raise ValueError(f"steering vector must be 1-D, got shape {tuple(vector.shape)}")
        self.vector = vector.detach().float()
        self.multipliers = torch.as_tensor(multipliers, dtype=torch.float32).clone()
        self.steer_from = torch.as_tensor(steer_from, dtype=torch.long).clone()
        self._placed: tuple[torch.device, torch.dtype] | None = None

    def _place(self, hidden: torch.Tensor) -> None:
        # The vector follows the layer's device and dtype (8-bit, 4-bit and device_map models included).
        if self._placed != (hidden.device, hidden.dtype):
            self.vector = self.vector.to(hidden.device, hidden.dtype)
            self.multipliers = self.multipliers.to(hidden.device, hidden.dtype)
            self.steer_from = self.steer_from.to(hidden.device)
            self._placed = (hidden.device, hidden.dtype)

    def set_multipliers(self, values: Sequence[float]) -> None:
        self.multipliers.copy_(torch.as_tensor(values, dtype=self.multipliers.dtype))

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        self._place(hidden)
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        active = (positions.to(hidden.device) >= self.steer_from[:, None]).to(hidden.dtype)  # (batch, seq)
        scale = (self.multipliers[:, None] * active).unsqueeze(-1)  # (batch, seq, 1)
        steered = hidden + scale * self.vector
        if isinstance(output, tuple):
            return (steered,) + tuple(output[1:])
        return steered


@contextmanager
def steering(
    model: nn.Module,
    layer: int,
    vector: torch.Tensor,
    multipliers: Sequence[float] | torch.Tensor,
    steer_from: Sequence[int] | torch.Tensor,
) -> Iterator[SteeringHook]:
    """Steer `model` at `layer` for the duration of the block; the hook is removed on any exit."""
    blocks = decoder_layers(model)
    check_layer(layer, len(blocks))
    hook = SteeringHook(vector, multipliers, steer_from)
    handle = blocks[layer].register_forward_hook(hook, with_kwargs=True)
    try:
        yield hook
    finally:
        handle.remove()
