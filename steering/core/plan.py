"""Steering plans: what happens at each steered layer, row by row.

A SteeringPlan holds one LayerSteering (vector and per-row add / project / target of the formula in
steering/core/operators.py) per layer, so a band of layers and different operators per row (the app's
added / subtracted panes) are one plan. steering.core.recipe builds plans from a Recipe; steering.core.hooks
applies them with forward hooks; generate() takes one as its `steer` argument (plan_from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from steering.core.layers import check_layer
from steering.errors import SteeringError


@dataclass
class LayerSteering:
    """What one layer does to each row: h' = h + active * (add * v + project * (target - h.u) * u), then, for
    rows with renorm = 1, h' rescaled to |h| (norm-preserving steering; operators.apply_steering), at the row's
    steered positions (the first `window` positions from steer_from; operators.steering_active).

    vector (hidden,); add, project, target, renorm, window (batch,) float tensors (renorm None: all 0; window
    None: all inf, every position from steer_from on).
    """

    vector: torch.Tensor
    add: torch.Tensor
    project: torch.Tensor
    target: torch.Tensor
    renorm: torch.Tensor | None = None
    window: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.renorm is None:
            self.renorm = torch.zeros_like(self.add, dtype=torch.float32)
        if self.window is None:
            self.window = torch.full_like(self.add, math.inf, dtype=torch.float32)

    @property
    def renorms(self) -> torch.Tensor:
        """The per-row renorm flags, (batch,) float32 (never None after construction)."""
        assert self.renorm is not None
        return self.renorm

    @property
    def windows(self) -> torch.Tensor:
        """The per-row windows (positions steered from steer_from; inf = all), (batch,) float32."""
        assert self.window is not None
        return self.window

    @classmethod
    def build(
        cls,
        vector: torch.Tensor,
        add: Sequence[float] | torch.Tensor,
        project: Sequence[float] | torch.Tensor | None = None,
        target: Sequence[float] | torch.Tensor | None = None,
        renorm: Sequence[float] | torch.Tensor | None = None,
        window: Sequence[float] | torch.Tensor | None = None,
    ) -> LayerSteering:
        """A LayerSteering from a vector and per-row values, copied to float32 tensors.

        Args:
            vector: (hidden,) the steering vector v, residual-stream units.
            add: (batch,) multiple of v added per row (the CAA multiplier, Rimsky et al. 2023, arXiv 2312.06681).
            project: (batch,) 0..1 projection weight per row (None: all 0, no projection).
            target: (batch,) value the component along v / |v| is moved to, residual-stream units (None: all 0,
                i.e. directional ablation when project = 1, Arditi et al. 2024, arXiv 2406.11717, section 2.4).
            renorm: (batch,) 1 = rescale the row's steered positions to their norm before steering (norm-preserving
                steering, see operators.apply_steering), 0 = not (None: all 0).
            window: (batch,) number of positions steered from the row's steer_from, inf = every position (None:
                all inf; operators.steering_active).

        Raises:
            ValueError: vector is not 1-D, add, project, target, renorm and window differ in length, or a
                window is not > 0.
        """
        add_t = torch.as_tensor(add, dtype=torch.float32).detach().clone().reshape(-1)
        zeros = torch.zeros_like(add_t)
        project_t = zeros.clone() if project is None else torch.as_tensor(project, dtype=torch.float32).detach().clone()
        target_t = zeros.clone() if target is None else torch.as_tensor(target, dtype=torch.float32).detach().clone()
        renorm_t = zeros.clone() if renorm is None else torch.as_tensor(renorm, dtype=torch.float32).detach().clone()
        window_t = (
            torch.full_like(add_t, math.inf)
            if window is None
            else torch.as_tensor(window, dtype=torch.float32).detach().clone()
        )
        if vector.ndim != 1:
            raise ValueError(f"steering vector must be 1-D, got shape {tuple(vector.shape)}")
        shapes = [t.shape for t in (project_t, target_t, renorm_t, window_t)]
        if any(shape != add_t.shape for shape in shapes):
            raise ValueError(
                f"add, project, target, renorm and window need one value per row: shapes {tuple(add_t.shape)}, "
                + ", ".join(str(tuple(shape)) for shape in shapes)
            )
        if bool((window_t <= 0).any()) or bool(window_t.isnan().any()):
            raise ValueError(f"a steering window is the number of positions steered (> 0), found {window_t.tolist()}")
        return cls(
            vector.detach(),
            add_t,
            project_t.reshape(-1),
            target_t.reshape(-1),
            renorm_t.reshape(-1),
            window_t.reshape(-1),
        )


@dataclass
class SteeringPlan:
    """Steering for one batch: which layers are steered, and how, row by row (any operator, any layers).

    Each layer's LayerSteering gives h' = h + active * (add * v + project * (target - h.u) * u): CAA
    addition (Rimsky et al. 2023, arXiv 2312.06681, section 3) with `add`, projection / directional
    ablation (Arditi et al. 2024, arXiv 2406.11717, section 2.4) with `project` and `target`. Pass it
    to `steer` or as generate()'s `steer`.

    Args:
        layers: {0-based decoder block index: LayerSteering}; every layer's add / project / target is
            (batch,) float32, its vector (hidden_size,).

    Example:
        >>> plan = SteeringPlan.addition(9, vecs[9], [2.0, 0.0, -2.0])  # doctest: +SKIP
        >>> plan.rows  # doctest: +SKIP
        3
    """

    layers: dict[int, LayerSteering]

    @classmethod
    def addition(cls, layer: int, vector: torch.Tensor, multipliers: Sequence[float] | torch.Tensor) -> SteeringPlan:
        """CAA: row i adds multipliers[i] x vector at `layer` (Rimsky et al. 2023, section 3).

        Args:
            layer: 0-based decoder block index.
            vector: (hidden_size,) steering vector, residual-stream units.
            multipliers: (batch,) floats, CAA multiplier units.

        Returns:
            SteeringPlan: one layer, `batch` rows.

        Raises:
            ValueError: `vector` is not 1-D.
        """
        return cls({int(layer): LayerSteering.build(vector, multipliers)})

    @property
    def rows(self) -> int:
        """The batch size the plan is for: the per-row length of its tensors (0 for an empty plan)."""
        return int(next(iter(self.layers.values())).add.shape[0]) if self.layers else 0

    @classmethod
    def stack(cls, plans: Sequence[SteeringPlan | None]) -> SteeringPlan | None:
        """One plan for the rows of several plans, in order (None: one unsteered row).

        A layer steered by some of the plans gets their rows' values and 0 (no-op) in the others'; the
        plans must agree on the vector at every layer they share (ValueError otherwise). Returns None
        when no plan steers anything (all rows unsteered).
        """
        sizes = [1 if plan is None else plan.rows for plan in plans]
        layers: dict[int, torch.Tensor] = {}
        for plan in plans:
            for layer, spec in plan.layers.items() if plan is not None else ():
                known = layers.setdefault(layer, spec.vector)
                if known is not spec.vector and not torch.equal(known, spec.vector):
                    raise ValueError(f"layer {layer}: two plans steer it with different vectors")
        if not layers:
            return None
        out = {}
        for layer, vector in layers.items():
            names = ("add", "project", "target", "renorm", "window")
            parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
            for plan, size in zip(plans, sizes):
                row_spec = plan.layers.get(layer) if plan is not None else None
                for name in parts:
                    fill = torch.full((size,), math.inf) if name == "window" else torch.zeros(size)
                    parts[name].append(getattr(row_spec, name) if row_spec is not None else fill)
            out[layer] = LayerSteering(vector, *(torch.cat(parts[name]) for name in names))
        return cls(out)

    def check(self, num_layers: int, rows: int | None = None, hidden_size: int | None = None) -> SteeringPlan:
        """Raise SteeringError (layer out of range, a NaN or infinite vector or per-row value, a vector of another
        size than `hidden_size`) or ValueError (rows) when the plan does not fit."""
        if not self.layers:
            raise ValueError("a steering plan needs at least one layer")
        for layer, spec in self.layers.items():
            check_layer(layer, num_layers)
            for name in ("vector", "add", "project", "target"):
                if not bool(torch.isfinite(getattr(spec, name)).all()):
                    raise SteeringError(f"layer {layer}: the steering {name} contains NaN or infinite values")
            if rows is not None and spec.add.shape[0] != rows:
                raise ValueError(f"layer {layer}: {spec.add.shape[0]} rows of steering for a batch of {rows}")
            if hidden_size is not None and spec.vector.shape[-1] != hidden_size:
                raise SteeringError(
                    f"layer {layer}: a steering vector of size {spec.vector.shape[-1]}, "
                    f"the model's hidden size is {hidden_size}"
                )
        return self


def plan_from(steer_spec: Any, multipliers: Sequence[float] | None, batch: int) -> SteeringPlan:
    """The SteeringPlan of generate()'s `steer` argument: a SteeringPlan as it is, or a SteeringSpec
    (layer, vector) with per-row `multipliers` (default 1) as CAA addition."""
    if isinstance(steer_spec, SteeringPlan):
        if multipliers is not None:
            raise ValueError("multipliers are part of a SteeringPlan; pass one or the other")
        if steer_spec.rows != batch:
            raise ValueError(f"a steering plan for {steer_spec.rows} rows, {batch} conversations")
        return steer_spec
    factors = list(multipliers) if multipliers is not None else [1.0] * batch
    if len(factors) != batch:
        raise ValueError(f"{len(factors)} multipliers for {batch} conversations")
    return SteeringPlan.addition(steer_spec.layer, steer_spec.vector, factors)


def layer_vectors(source: Any, layers: Sequence[int]) -> Mapping[int, torch.Tensor]:
    """{layer: vector} from a VectorSet, a {layer: tensor} mapping or one tensor used at every layer."""
    if isinstance(source, torch.Tensor):
        return {layer: source for layer in layers}
    if isinstance(source, Mapping):
        return {layer: source[layer] for layer in layers}
    return {layer: source.vector(layer) for layer in layers}
