"""The scheduler's batch: per-request steering hooks on a merged batch (BatchSteering) and the KV-cache
helpers that merge and trim requests' caches along the batch."""

from __future__ import annotations

from typing import Any, Callable

import torch

from steering.core.hooks import SteeringPlan, apply_steering, steering_active, unit_vector
from steering.core.layers import decoder_layers


class BatchSteering:
    """Forward hooks for a batched decoding step: each request's plan on its own rows.

    For every steered layer and every request steering it, hooks.apply_steering (the one steering formula)
    runs on that request's rows with that request's vector and per-row add / project / target, so rows
    at different layers, with different vectors or operators, share one forward pass. Requests steering
    a layer with the very same vector tensor are grouped into one call.
    """

    def __init__(self, model: Any, groups: list[tuple[int, int, SteeringPlan | None, list[int], Any]]) -> None:
        self.blocks = decoder_layers(model)
        self.by_layer: dict[int, list[tuple[int, int, Any, list[int]]]] = {}
        self.meters: list[tuple[int, int, Any]] = []  # (start, stop, Meter) of metered requests
        for start, stop, plan, steer_from, meter in groups:
            if meter is not None:
                self.meters.append((start, stop, meter))
            if plan is None:
                continue
            for layer, spec in plan.layers.items():
                self.by_layer.setdefault(layer, []).append((start, stop, spec, steer_from))
        self.handles: list[Any] = []
        self._cache: dict[int, list[tuple[int, int, tuple[Any, ...]]]] = {}

    def _placed(self, layer: int, hidden: torch.Tensor) -> list[tuple[int, int, tuple[torch.Tensor, ...]]]:
        if layer not in self._cache:
            parts = []
            for start, stop, spec, steer_from in self.by_layer[layer]:
                vector = spec.vector.to(hidden.device, hidden.dtype)
                parts.append(
                    (
                        start,
                        stop,
                        (
                            vector,
                            unit_vector(vector),
                            spec.add.to(hidden.device, hidden.dtype),
                            spec.project.to(hidden.device, torch.float32),
                            spec.target.to(hidden.device, torch.float32),
                            spec.renorms.to(hidden.device, torch.float32),
                            spec.windows.to(hidden.device, torch.float32),
                            torch.as_tensor(steer_from, dtype=torch.long, device=hidden.device),
                        ),
                    )
                )
            self._cache[layer] = parts
        return self._cache[layer]

    def _hook(self, layer: int) -> Callable[..., Any]:
        def hook(module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            positions = kwargs.get("position_ids")
            if positions is None:
                raise RuntimeError("the scheduler's steering needs the position_ids of every decoder block")
            pieces, at = [], 0
            for start, stop, placed in self._placed(layer, hidden):
                vector, unit, add, project, target, renorm, window, steer_from = placed
                if start > at:
                    pieces.append(hidden[at:start])
                rows = hidden[start:stop]
                active = steering_active(positions[start:stop], steer_from, hidden.dtype, window)
                pieces.append(apply_steering(rows, vector, unit, add, project, target, active, renorm))
                at = stop
            if at < hidden.shape[0]:
                pieces.append(hidden[at:])
            steered = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
            return (steered,) + tuple(output[1:]) if isinstance(output, tuple) else steered

        return hook

    def _meter_hook(self, start: int, stop: int, meter: Any) -> Callable[..., Any]:
        def hook(module: Any, args: tuple, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            meter.hook(module, args, hidden[start:stop])  # its own rows only

        return hook

    def __enter__(self) -> BatchSteering:
        for start, stop, meter in self.meters:  # first: meters read a block before its own steering
            self.handles.append(self.blocks[meter.layer].register_forward_hook(self._meter_hook(start, stop, meter)))
        for layer in sorted(self.by_layer):
            self.handles.append(self.blocks[layer].register_forward_hook(self._hook(layer), with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def mergeable(cache: Any) -> bool:
    """Whether a KV cache can be merged with another along the batch: every layer a plain DynamicLayer
    (full keys / values). Sliding-window or quantized cache layers are not merged: such a model's requests
    run one batch after another."""
    from transformers.cache_utils import DynamicLayer  # transformers: loaded with a model, not by this module

    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(type(layer) is DynamicLayer and layer.keys is not None for layer in layers)


def cache_layers(cache: Any) -> list[Any]:
    """The per-layer keys / values of a transformers DynamicCache (RuntimeError for any other cache)."""
    layers = getattr(cache, "layers", None)
    if layers is None or any(getattr(layer, "keys", None) is None for layer in layers):
        raise RuntimeError("the scheduler needs a transformers DynamicCache with per-layer keys / values")
    return layers


def left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """`tensor` with zeros prepended along `dim` up to `width` (as is when it is that wide already)."""
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
