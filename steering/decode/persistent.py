"""The fast path's steering: hooks registered once on every decoder block, their state (a vector per block,
per block and row the add / project / target / renorm of hooks.apply_steering and the window of
steering_active, each row's first steered position) in
tensors updated in place, so a compiled graph or a captured CUDA graph reads new steering without being
rebuilt. The formula is hooks.apply_steering, the one every hook uses. Used by fast_path.FastPath.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

from steering.core.hooks import SteeringPlan, apply_steering, steering_active, unit_vector
from steering.core.layers import check_layer, decoder_layers


def _compute_dtype(model: Any) -> torch.dtype:
    for param in model.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32


class PersistentSteering:
    """Steering hooks registered once on every block; all state in tensors updated in place.

    Block i applies hooks.apply_steering (the one steering formula, also used by hooks.SteeringHook) with
    its own vector and per-row add / project / target, at positions >= steer_from[row]; blocks outside
    the plan have all three at 0 (an exact no-op). The tensors keep their identity while the batch fits
    them: a compiled graph reads them and is never rebuilt when they change.

    The hooks belong to the fast path's own generation: they act only inside `context(...)` and only
    on forwards with that generation's batch size. Every other forward of the model (extraction, the
    A/B evaluation, hidden-state norms, the eager path's generation) passes through untouched, whatever
    its batch size. A batch larger than the tensors grows them (to the next power of two); `version`
    counts the growths, so captured CUDA graphs that read the old tensors are dropped.
    """

    def __init__(self, model: Any, max_batch: int = 4, skip_inactive: bool = False) -> None:
        self.model = model
        # skip_inactive: blocks other than the steered one return at once (eager and CUDA-graph steps);
        # a compiled graph keeps the gate arithmetic instead, so changing the layer never recompiles.
        self.skip_inactive = skip_inactive
        self.layer = 0
        self.active = False  # True only inside context(): the fast path's own generation
        self.rows = 0  # that generation's batch size
        self.signature: Any = None  # what set_rows loaded last (the static batch reloads only when it changes)
        self.version = 0  # bumped when the per-row tensors are reallocated for a larger batch
        self.blocks = decoder_layers(model)
        param = next(model.parameters())
        self.device, self.dtype = param.device, _compute_dtype(model)
        self.hidden = int(model.config.hidden_size)
        self.layers: tuple[int, ...] = (0,)  # the steered layers of the current plan
        self._allocate_rows(max(1, int(max_batch)))
        self.handles = [
            block.register_forward_hook(self._hook(i), with_kwargs=True) for i, block in enumerate(self.blocks)
        ]
        self.cleanups: list[Callable[[], None]] = []  # run by remove() (the fast path's compiled pieces)

    def _mark_static(self, *tensors: torch.Tensor) -> None:
        if self.device.type == "cuda":  # CUDA graphs read these in place instead of copying them
            for tensor in tensors:
                torch._dynamo.mark_static_address(tensor)

    @torch.inference_mode(False)  # grown inside generate(): still normal tensors, updatable outside it
    def _allocate_rows(self, capacity: int) -> None:
        self.max_batch = capacity
        # per block and row: the vector and its unit direction (zero where a block is not steered); rows of
        # several users in one batch (the static-cache scheduler) may carry different vectors at one block
        self.vectors = torch.zeros(len(self.blocks), capacity, self.hidden, device=self.device, dtype=self.dtype)
        self.units = torch.zeros_like(self.vectors)
        # per block and row: hooks.apply_steering's add (compute dtype), project and target (float32)
        self.add = torch.zeros(len(self.blocks), capacity, device=self.device, dtype=self.dtype)
        self.project = torch.zeros(len(self.blocks), capacity, device=self.device, dtype=torch.float32)
        self.target = torch.zeros_like(self.project)
        self.renorm = torch.zeros_like(self.project)  # 1: norm-preserving rows (apply_steering's renorm)
        self.window = torch.full_like(self.project, math.inf)  # positions steered from steer_from (steering_active)
        self.steer_from = torch.zeros(capacity, device=self.device, dtype=torch.long)
        self._mark_static(
            self.vectors, self.units, self.add, self.project, self.target, self.renorm, self.window, self.steer_from
        )

    @property
    def multipliers(self) -> torch.Tensor:
        """The add term of every block and row, (layers, max_batch) (CAA multipliers)."""
        return self.add

    @property
    def vector(self) -> torch.Tensor:
        """The vector of the first row at the first steered layer, (hidden,)."""
        return self.vectors[self.layer, 0]

    def ensure_capacity(self, rows: int) -> None:
        """Make room for `rows` rows (next power of two); a reallocation bumps `version`."""
        if rows > self.max_batch:
            self._allocate_rows(1 << (int(rows) - 1).bit_length())
            self.version += 1

    def _hook(self, index: int) -> Callable[..., Any]:
        def hook(module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
            if not self.active or (self.skip_inactive and index not in self.layers):
                return output
            hidden = output[0] if isinstance(output, tuple) else output
            rows = hidden.shape[0]
            if rows != self.rows:  # not this generation's forward
                return output
            positions = kwargs.get("position_ids")
            if positions is None:
                positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
            state: tuple[torch.Tensor, ...] = (
                self.vectors[index, :rows],
                self.units[index, :rows],
                self.add[index, :rows],
                self.project[index, :rows],
                self.target[index, :rows],
                self.renorm[index, :rows],
                self.window[index, :rows],
                self.steer_from[:rows],
            )
            if hidden.device != self.device:  # a block on another GPU (device_map): eager only, copy its slices
                state = tuple(t.to(hidden.device) for t in state)
            vector, unit, add, project, target, renorm, window, steer_from = state
            active = steering_active(positions.to(hidden.device), steer_from, hidden.dtype, window)  # (batch, seq)
            steered = apply_steering(hidden, vector, unit, add, project, target, active, renorm)
            if isinstance(output, tuple):
                return (steered,) + tuple(output[1:])
            return steered

        return hook

    def set(self, layer: int, vector: torch.Tensor, multipliers: Sequence[float], steer_from: Sequence[int]) -> None:
        """Load one generation's steering: `multipliers[row]` x `vector` at `layer`, from `steer_from[row]`."""
        check_layer(layer, len(self.blocks))
        self.set_plan(SteeringPlan.addition(layer, vector, list(multipliers)), steer_from)

    def set_plan(self, plan: SteeringPlan, steer_from: Sequence[int]) -> None:
        """Load one generation's steering plan (hooks.SteeringPlan: per layer a vector and per-row add /
        project / target), from `steer_from[row]` on; the tensors are filled in place."""
        hidden = self.hidden
        for spec in plan.layers.values():
            if tuple(spec.vector.shape) != (hidden,):
                raise ValueError(f"steering vector of shape {tuple(spec.vector.shape)}, the model needs {(hidden,)}")
        plan.check(len(self.blocks))
        rows = plan.rows
        self.signature = None
        if len(steer_from) != rows:
            raise ValueError(f"{len(steer_from)} steering start positions for {rows} rows")
        self.ensure_capacity(rows)
        self._reset()
        for layer, spec in plan.layers.items():
            vector = spec.vector.detach().to(self.device, self.dtype)
            self.vectors[layer, :rows] = vector
            self.units[layer, :rows] = unit_vector(vector)
            self.add[layer, :rows] = spec.add.to(self.device, self.dtype)
            self.project[layer, :rows] = spec.project.to(self.device, torch.float32)
            self.target[layer, :rows] = spec.target.to(self.device, torch.float32)
            self.renorm[layer, :rows] = spec.renorms.to(self.device, torch.float32)
            self.window[layer, :rows] = spec.windows.to(self.device, torch.float32)
        self.layers = tuple(sorted(plan.layers))
        self.layer = self.layers[0]
        self.steer_from[:rows] = torch.tensor(list(steer_from), dtype=torch.long)
        self.rows = rows

    def set_rows(self, entries: Sequence[tuple[Sequence[int], SteeringPlan | None, Sequence[int]]], rows: int) -> None:
        """Load the steering of a batch whose rows belong to several requests (the static-cache scheduler's slots):
        for each entry (slots, plan, steer_from), the plan's row i acts on batch row slots[i] from position
        steer_from[i] on; rows of no entry (free slots) and entries without a plan are not steered. The forwards
        steered are those of `rows` rows (the batch's bucket); the tensors are filled in place.

        Args:
            entries: per request: its batch rows (slot indices), its hooks.SteeringPlan (checked already) or None,
                and each of its rows' first steered absolute position.
            rows: the batch size of the forwards (free slots included).
        """
        self.ensure_capacity(rows)
        self._reset()
        layers: set[int] = set()
        for slots, plan, steer_from in entries:
            index = torch.tensor(list(slots), dtype=torch.long, device=self.device)
            self.steer_from[index] = torch.tensor(list(steer_from), dtype=torch.long, device=self.device)
            for layer, spec in plan.layers.items() if plan is not None else ():
                vector = spec.vector.detach().to(self.device, self.dtype)
                self.vectors[layer, index] = vector
                self.units[layer, index] = unit_vector(vector)
                self.add[layer, index] = spec.add.to(self.device, self.dtype)
                self.project[layer, index] = spec.project.to(self.device, torch.float32)
                self.target[layer, index] = spec.target.to(self.device, torch.float32)
                self.renorm[layer, index] = spec.renorms.to(self.device, torch.float32)
                self.window[layer, index] = spec.windows.to(self.device, torch.float32)
                layers.add(layer)
        self.layers = tuple(sorted(layers))
        self.layer = self.layers[0] if self.layers else 0
        self.rows = rows

    def clear(self) -> None:
        """Back to idle: the hooks pass every forward through until the next context()."""
        self.active = False
        self.rows = 0
        self.signature = None
        self.add.zero_()
        self.project.zero_()
        self.renorm.zero_()
        self.window.fill_(math.inf)

    def _reset(self) -> None:
        """Every row unsteered: vectors, add / project / target / renorm and steer_from 0, windows inf."""
        for tensor in (self.vectors, self.units, self.add, self.project, self.target, self.renorm, self.steer_from):
            tensor.zero_()
        self.window.fill_(math.inf)

    @contextmanager
    def context(self, model: Any, plan: SteeringPlan | int, *args: Any) -> Iterator[PersistentSteering]:
        """`context(model, plan, steer_from)`, as hooks.steer, for generation.generate(steering_context=...);
        or `context(model, layer, vector, multipliers, steer_from)`, as hooks.steering (CAA at one layer)."""
        if isinstance(plan, SteeringPlan):
            (steer_from,) = args
            self.set_plan(plan, steer_from)
        else:
            self.set(plan, *args)
        self.active = True
        try:
            yield self
        finally:
            self.clear()

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The tensors the hooks read, filled in place: vectors and units (layers, max_batch, hidden), add, project,
        target, renorm and window (layers, max_batch), steer_from (max_batch,). Their identity changes only when
        ensure_capacity grows them.
        """
        return self.vectors, self.units, self.add, self.project, self.target, self.renorm, self.window, self.steer_from

    def remove(self) -> None:
        """Remove the forward hooks from every block and clear the steering; the model is hook-free again."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        for cleanup in self.cleanups:
            cleanup()
        self.cleanups = []
        self.clear()
