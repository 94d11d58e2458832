"""The steering operators: ONE formula, `apply_steering`, used by the eager hooks (this module), the fast
path's persistent hooks (steering/decode/fast_path.py) and the evaluation (steering/evaluation/ab.py).

For a decoder block's output h (batch, seq, hidden), a vector v with unit direction u = v / |v| and
per-row tensors add, project, target (batch,):

    h' = h + active * (add * v + project * (target - h.u) * u)

where `active` (batch, seq) is 1 at the positions a row is steered (absolute position >= steer_from[row]).

* add only (project = 0): Contrastive Activation Addition, h + multiplier * v (Rimsky et al. 2023,
  arXiv 2312.06681) -- bit for bit what this hook computed before the other operators existed.
* project = 1, target = t: projection clamp, the component of h along u is set to t (the rest of h is
  kept); a "projection cap" in published steering demos.
* project = 1, target = 0: directional ablation, the component along u is removed (Arditi et al. 2024,
  "Refusal in language models is mediated by a single direction", section 3).

Everything is per row and branch-free (no data-dependent Python control flow), so the same arithmetic
compiles and is captured in CUDA graphs; a row with add = project = 0 is left exactly unchanged.

A SteeringPlan says what happens at each steered layer: one LayerSteering (vector and per-row
add / project / target) per layer, so a band of layers and different operators per row (the app's
added / subtracted panes) are one plan. steering.core.recipe builds plans from a Recipe.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from steering.core.layers import check_layer, decoder_layers
from steering.errors import SteeringError

OPERATORS = ("add", "clamp", "ablate")


# ============================================================================ the formula
def unit_vector(vector: torch.Tensor) -> torch.Tensor:
    """u = v / |v| (computed in float32, returned in v's dtype); a zero vector gives a zero u (no projection).

    Args: vector (..., hidden). Returns: tensor of the same shape and dtype.
    """
    v = vector.detach().float()
    norm = v.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, v / norm.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(v)).to(
        vector.dtype
    )


def steering_active(positions: torch.Tensor, steer_from: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The (batch, seq) mask of steered positions: 1 where positions >= steer_from[row], else 0.

    Args: positions (batch or 1, seq) absolute token positions (the model's position_ids); steer_from
    (batch,) first steered position of each row. Returns: (batch, seq) tensor of `dtype`.
    """
    return (positions.to(steer_from.device) >= steer_from[:, None]).to(dtype)


def apply_steering(
    hidden: torch.Tensor,
    vector: torch.Tensor,
    unit: torch.Tensor,
    add: torch.Tensor,
    project: torch.Tensor,
    target: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """h' = h + active * (add * v + project * (target - h.u) * u), per row; see the module docstring.

    Args:
        hidden: (batch, seq, hidden) a block's output.
        vector: (hidden,) the steering vector v, in hidden's dtype and device.
        unit: (hidden,) u = v / |v| (unit_vector(v)), same dtype and device.
        add: (batch,) multiple of v added (CAA multiplier), hidden's dtype.
        project: (batch,) 0 or 1 (or in between: a partial move toward the target), any float dtype.
        target: (batch,) the value the component along u is moved to, in hidden-state units.
        active: (batch, seq) 1 at steered positions, 0 elsewhere (steering_active).
    Returns: the steered (batch, seq, hidden) tensor, hidden's dtype. Rows with add = project = 0
    (and positions with active = 0) are returned exactly unchanged. The projection h.u is computed in
    float32, so a clamp is exact to float32 rounding even for a 16-bit model.
    """
    dtype = hidden.dtype  # the output keeps hidden's dtype whatever the per-row tensors are (no-op casts in the hooks)
    scale = (add.to(dtype)[:, None] * active.to(dtype)).unsqueeze(-1)  # (batch, seq, 1); the CAA term first, as before
    steered = hidden + scale * vector.to(dtype)
    along = torch.matmul(hidden.float(), unit.float())  # (batch, seq): h.u
    coef = project.float()[:, None] * (target.float()[:, None] - along) * active.float()
    return steered + coef.to(dtype).unsqueeze(-1) * unit.to(dtype)


# ============================================================================ plans
@dataclass
class LayerSteering:
    """What one layer does to each row: h' = h + active * (add * v + project * (target - h.u) * u).

    vector (hidden,); add, project, target (batch,) float tensors.
    """

    vector: torch.Tensor
    add: torch.Tensor
    project: torch.Tensor
    target: torch.Tensor

    @classmethod
    def build(
        cls,
        vector: torch.Tensor,
        add: Sequence[float] | torch.Tensor,
        project: Sequence[float] | torch.Tensor | None = None,
        target: Sequence[float] | torch.Tensor | None = None,
    ) -> LayerSteering:
        """A LayerSteering from a vector and per-row values, copied to float32 tensors.

        Args:
            vector: (hidden,) the steering vector v, residual-stream units.
            add: (batch,) multiple of v added per row (the CAA multiplier, Rimsky et al. 2023, arXiv 2312.06681).
            project: (batch,) 0..1 projection weight per row (None: all 0, no projection).
            target: (batch,) value the component along v / |v| is moved to, residual-stream units (None: all 0,
                i.e. directional ablation when project = 1, Arditi et al. 2024, arXiv 2406.11717, section 2.4).

        Raises:
            ValueError: vector is not 1-D, or add, project and target differ in length.
        """
        add_t = torch.as_tensor(add, dtype=torch.float32).detach().clone().reshape(-1)
        zeros = torch.zeros_like(add_t)
        project_t = zeros.clone() if project is None else torch.as_tensor(project, dtype=torch.float32).detach().clone()
        target_t = zeros.clone() if target is None else torch.as_tensor(target, dtype=torch.float32).detach().clone()
        if vector.ndim != 1:
            raise ValueError(f"steering vector must be 1-D, got shape {tuple(vector.shape)}")
        if project_t.shape != add_t.shape or target_t.shape != add_t.shape:
            raise ValueError(
                f"add, project and target need one value per row: shapes {tuple(add_t.shape)}, "
                f"{tuple(project_t.shape)}, {tuple(target_t.shape)}"
            )
        return cls(vector.detach(), add_t, project_t.reshape(-1), target_t.reshape(-1))


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
            parts: dict[str, list[torch.Tensor]] = {"add": [], "project": [], "target": []}
            for plan, size in zip(plans, sizes):
                row_spec = plan.layers.get(layer) if plan is not None else None
                for name in parts:
                    parts[name].append(getattr(row_spec, name) if row_spec is not None else torch.zeros(size))
            out[layer] = LayerSteering(vector, *(torch.cat(parts[name]) for name in ("add", "project", "target")))
        return cls(out)

    def check(self, num_layers: int, rows: int | None = None, hidden_size: int | None = None) -> SteeringPlan:
        """Raise SteeringError (layer out of range) or ValueError (shapes) when the plan does not fit."""
        if not self.layers:
            raise ValueError("a steering plan needs at least one layer")
        for layer, spec in self.layers.items():
            check_layer(layer, num_layers)
            if rows is not None and spec.add.shape[0] != rows:
                raise ValueError(f"layer {layer}: {spec.add.shape[0]} rows of steering for a batch of {rows}")
            if hidden_size is not None and spec.vector.shape[-1] != hidden_size:
                raise SteeringError(
                    f"layer {layer}: a steering vector of size {spec.vector.shape[-1]}, "
                    f"the model's hidden size is {hidden_size}"
                )
        return self


# ============================================================================ eager hooks
class SteeringHook:
    """Forward hook of one block: apply_steering with per-row add (= `multipliers`), project and target,
    at positions >= steer_from[row].

    Positions are absolute (the `position_ids` the model receives), so the rule holds in the prefill
    pass and in every KV-cached decoding step. The per-row tensors are updated in place
    (set_multipliers), so a compiled graph never has to be rebuilt when the user moves the slider.
    """

    def __init__(
        self,
        vector: torch.Tensor,
        multipliers: Sequence[float] | torch.Tensor,
        steer_from: Sequence[int] | torch.Tensor,
        project: Sequence[float] | torch.Tensor | None = None,
        target: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        spec = LayerSteering.build(vector, multipliers, project, target)
        self.vector = spec.vector.float()
        self.unit = unit_vector(self.vector)
        self.multipliers = spec.add  # the add term; the historical name
        self.project = spec.project
        self.target = spec.target
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
        active = steering_active(positions, self.steer_from, hidden.dtype)  # (batch, seq)
        steered = apply_steering(hidden, self.vector, self.unit, self.multipliers, self.project, self.target, active)
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
            hook = SteeringHook(spec.vector, spec.add, steer_from, spec.project, spec.target)
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
