"""A steering recipe: which vector, at which layer(s), with which operator on each side, how strong.

Engine.compare / compare_batch, the open-ended evaluation and `steering test` take a Recipe; by default
the model's own, from its per-behavior defaults file `vectors/<behavior>/<model-slug>.defaults.json`
(written by `python -m steering tune`), else from config.yaml's `models:` entry (CAA addition at one
layer, the paper's reference).

Strength and units (the `amount` of steering at a layer L, in hidden-state units):
  unit "multiplier"  the raw CAA multiplier alpha: addition adds alpha x v_L (the paper's reference);
                     amount = alpha x |v_L|
  unit "relative"    alpha is a fraction of the typical hidden-state norm at the layer
                     (Engine.hidden_norm): amount = alpha x norm_L, so one value means the same on
                     every model and layer; addition adds amount x v_L / |v_L|

Operators (hooks.apply_steering), for a row of signed strength s (s > 0 uses `plus`, s < 0 `minus`,
s = 0 leaves the row unsteered):
  add     h + sign(s) x amount / n x u_L at each of the n layers of the band (the strength is split)
  clamp   the component along u_L is set to sign(s) x amount at every layer of the band (a target,
          not split: each layer sets it again)
  ablate  the component along u_L is removed at every layer of the band (Arditi et al. 2024);
          the strength only switches it on
  add_norm  norm-preserving addition: as `add`, then each steered position is rescaled to the norm it had
          before (h' = (h + a v) x |h| / |h + a v|, at each layer of the band): the direction moves as
          with addition, the hidden-state scale is kept, as rotation-based steering keeps it (Angular
          Steering, Vu & Nguyen 2025, arXiv 2510.26243; Householder pseudo-rotation, Pham & Nguyen 2024,
          arXiv 2409.10053)
Separate strengths per side: `strength_minus` (None = `strength`) is the subtracted side's strength. A row of
signed strength s < 0 is applied at |s| x strength_minus / strength, so the two sides keep their ratio when a
caller (the app's slider, `layer`/`multiplier` overrides) scales the strength.
The band: `band` consecutive layers centred on `layer` (clipped to the model), one vector at all of
them (the anchor layer's, `shared_vector`) or each layer's own.
Where the subtracted side steers: `minus_window` None steers every position from the end of the user's
instruction on, as CAA does (Rimsky et al. 2023, section 3); an integer N steers only the first N of those
positions (the assistant header and the first answer tokens), then lets the answer run unsteered. A
refusal is decided in the first few answer tokens (Qi et al. 2024, "Safety Alignment Should Be Made More
Than Just a Few Tokens Deep", arXiv 2406.05946), and steering a few positions only, with attention carrying
the change on, is how Activation Addition applies its vectors (Turner et al. 2023, arXiv 2308.10248); a
push that lasts the whole answer is what makes the subtracted answers loop (issue 9). The added side
always steers every position.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Mapping, Sequence

import torch

from steering.core.hooks import OPERATORS, LayerSteering, SteeringPlan, layer_vectors
from steering.errors import SteeringError

UNITS = ("multiplier", "relative")


@dataclass(frozen=True)
class Recipe:
    """How to steer. See the module docstring for the units and operators.

    layer: anchor (centre) layer of the band; band: number of layers (>= 1); strength: magnitude in
    `unit`; plus / minus: operator of the added (+) and subtracted (-) side; vector: a vector file
    (path, relative to the project root or absolute) or None for the behavior's
    vectors/<behavior>/<model-slug>.safetensors; method: how that vector was made (a label, e.g.
    "mean-diff", "pca"); shared_vector: True = the anchor layer's vector at every layer of the band;
    strength_minus: the subtracted side's strength in `unit` (None = `strength`; see minus_strength);
    minus_window: the subtracted side steers only this many positions from the end of the instruction
    (None = every position, CAA; see the module docstring).
    """

    layer: int
    strength: float
    unit: str = "multiplier"
    band: int = 1
    plus: str = "add"
    minus: str = "add"
    vector: str | None = None
    method: str | None = None
    shared_vector: bool = True
    strength_minus: float | None = None
    minus_window: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 0:
            problems.append(f"layer: expected an integer >= 0, found {self.layer!r}")
        if not isinstance(self.band, int) or isinstance(self.band, bool) or self.band < 1:
            problems.append(f"band: expected an integer >= 1, found {self.band!r}")
        if (
            not isinstance(self.strength, (int, float))
            or isinstance(self.strength, bool)
            or not math.isfinite(self.strength)
        ):
            problems.append(f"strength: expected a finite number, found {self.strength!r}")
        if self.strength_minus is not None and (
            not isinstance(self.strength_minus, (int, float))
            or isinstance(self.strength_minus, bool)
            or not math.isfinite(self.strength_minus)
            or self.strength_minus < 0
        ):
            problems.append(f"strength_minus: expected a finite number >= 0 or null, found {self.strength_minus!r}")
        if self.minus_window is not None and (
            not isinstance(self.minus_window, int) or isinstance(self.minus_window, bool) or self.minus_window < 1
        ):
            problems.append(f"minus_window: expected an integer >= 1 or null, found {self.minus_window!r}")
        if self.unit not in UNITS:
            problems.append(f"unit: expected one of {', '.join(UNITS)}, found {self.unit!r}")
        for side in ("plus", "minus"):
            if getattr(self, side) not in OPERATORS:
                problems.append(f"{side}: expected one of {', '.join(OPERATORS)}, found {getattr(self, side)!r}")
        if self.vector is not None and not isinstance(self.vector, str):
            problems.append(f"vector: expected a file path or null, found {self.vector!r}")
        if problems:
            raise SteeringError(f"steering recipe: {problems[0]}")

    @property
    def minus_strength(self) -> float:
        """The subtracted side's strength (in `unit`): `strength_minus`, or `strength` when that is None."""
        return float(abs(self.strength) if self.strength_minus is None else self.strength_minus)

    def minus_ratio(self) -> float:
        """Factor on the rows of negative strength: minus_strength / |strength| (1 when strength is 0)."""
        return self.minus_strength / abs(self.strength) if self.strength else 1.0

    # ------------------------------------------------------------------ layers
    def layers(self, num_layers: int) -> list[int]:
        """The band: `band` consecutive layers centred on `layer` (the extra one above for an even band),
        clipped to 0..num_layers-1. Raises SteeringError when the anchor layer is out of range."""
        if not 0 <= self.layer < num_layers:
            raise SteeringError(f"layer {self.layer} is out of range: the model has layers 0..{num_layers - 1}")
        start = self.layer - (self.band - 1) // 2
        return [layer for layer in range(start, start + self.band) if 0 <= layer < num_layers]

    def describe(self) -> str:
        """One line, e.g. 'layers 8-10, +add / -ablate, 0.15 x hidden norm'."""
        span = f"layer {self.layer}" if self.band == 1 else f"band of {self.band} around layer {self.layer}"
        unit = "x hidden norm" if self.unit == "relative" else "(CAA multiplier)"
        strength = (
            f"{self.strength:g}"
            if self.minus_strength == self.strength
            else f"{self.strength:g} (+) / {self.minus_strength:g} (-)"
        )
        window = "" if self.minus_window is None else f" (first {self.minus_window} positions)"
        return f"{span}, +{self.plus} / -{self.minus}{window}, strength {strength} {unit}"

    # ------------------------------------------------------------------ the plan
    def plan(
        self,
        vectors: Any,
        strengths: Sequence[float],
        num_layers: int,
        hidden_norm: Callable[[int], float] | None = None,
    ) -> SteeringPlan:
        """The hooks.SteeringPlan for rows of signed strengths (in this recipe's unit).

        Args:
            vectors: a VectorSet, a {layer: tensor} mapping, or one tensor (hidden,) used at every layer.
            strengths: one signed strength per row, in this recipe's unit (the Engine passes +strength,
                0, -strength for its three panes): > 0 the `plus` operator, < 0 `minus` at
                |s| x minus_ratio() (so -strength applies strength_minus), 0 unsteered.
            num_layers: the model's layer count (for the band).
            hidden_norm: typical hidden-state norm at a layer (Engine.hidden_norm); needed for unit "relative".
        Returns: a SteeringPlan with one LayerSteering per band layer (rows of negative strength steer only
            `minus_window` positions when it is set).
        Raises: SteeringError for a layer out of range, a missing vector, or "relative" without norms.
        """
        layers = self.layers(num_layers)
        if self.unit == "relative" and hidden_norm is None:
            raise SteeringError("steering recipe: unit 'relative' needs the hidden-state norms (Engine.hidden_norm)")
        if isinstance(vectors, torch.Tensor):
            per_layer = {layer: vectors for layer in layers}
        else:
            wanted = [self.layer] if self.shared_vector else layers
            try:
                found = layer_vectors(vectors, wanted)
            except (KeyError, SteeringError):
                raise SteeringError(f"steering recipe: no vector for layer(s) {', '.join(map(str, wanted))}") from None
            per_layer = {layer: found[self.layer if self.shared_vector else layer] for layer in layers}
        n = len(layers)
        minus_ratio = self.minus_ratio()
        out = {}
        for layer in layers:
            v = per_layer[layer].detach().float()
            norm = float(v.norm())
            # amount per unit strength (hidden_norm is checked above for the relative unit)
            scale = float(hidden_norm(layer)) if self.unit == "relative" and hidden_norm else norm
            add, project, target, renorm, window = [], [], [], [], []
            for s in strengths:
                s = float(s)
                if s < 0:
                    s *= minus_ratio  # the subtracted side's own strength (strength_minus)
                op = self.plus if s > 0 else self.minus
                sign = 1.0 if s > 0 else -1.0
                amount = abs(s) * scale
                if s == 0:
                    row = (0.0, 0.0, 0.0, 0.0)
                elif op in ("add", "add_norm"):
                    # multiples of v, split over the band; the multiplier unit uses alpha itself (exact CAA)
                    coef = abs(s) if self.unit == "multiplier" else (amount / norm if norm > 0 else 0.0)
                    row = (sign * coef / n, 0.0, 0.0, 1.0 if op == "add_norm" else 0.0)
                elif op == "clamp":
                    row = (0.0, 1.0, sign * amount, 0.0)
                else:  # ablate
                    row = (0.0, 1.0, 0.0, 0.0)
                add.append(row[0])
                project.append(row[1])
                target.append(row[2])
                renorm.append(row[3])
                limited = s < 0 and self.minus_window is not None
                window.append(float(self.minus_window) if limited and self.minus_window else math.inf)
            out[layer] = LayerSteering.build(v, add, project, target, renorm, window)
        return SteeringPlan(out)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The recipe as a plain dict of its fields (JSON-ready), for defaults files and result settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "steering recipe") -> Recipe:
        """A Recipe from a mapping (e.g. JSON); unknown or missing keys are a one-line SteeringError."""
        if not isinstance(data, Mapping):
            raise SteeringError(f"{where}: expected a mapping, found {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SteeringError(f"{where}: unknown key '{unknown[0]}' (expected {', '.join(sorted(known))})")
        for key in ("layer", "strength"):
            if key not in data:
                raise SteeringError(f"{where}: missing key '{key}'")
        values = dict(data)
        for key in ("strength", "strength_minus"):
            if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
                values[key] = float(values[key])
        try:
            return cls(**values)
        except SteeringError as exc:
            raise SteeringError(f"{where}: {str(exc).removeprefix('steering recipe: ')}") from None

    def with_overrides(self, layer: int | None = None, strength: float | None = None) -> Recipe:
        """This recipe with the anchor layer and / or strength replaced (None keeps them); a separate
        subtracted-side strength is scaled with the strength (their ratio is kept)."""
        changes: dict[str, Any] = {}
        if layer is not None:
            changes["layer"] = int(layer)
        if strength is not None:
            changes["strength"] = float(strength)
            if self.strength_minus is not None:
                changes["strength_minus"] = abs(float(strength)) * self.minus_ratio()
        return replace(self, **changes) if changes else self


def config_recipe(layer: int, multiplier: float) -> Recipe:
    """The recipe of config.yaml's `models:` entry: CAA addition at one layer (the paper's reference)."""
    return Recipe(layer=int(layer), strength=float(multiplier))
