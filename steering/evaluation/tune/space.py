"""The search space of `tune`: the vector sources, the settings (one recipe each) and the side jobs they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from steering.core.hooks import OPERATORS
from steering.core.recipe import UNITS, Recipe
from steering.errors import SteeringError

DEFAULT_STRENGTHS = {"multiplier": [1.0, 2.0, 4.0], "relative": [0.1, 0.2, 0.3]}


@dataclass(frozen=True)
class VectorSource:
    """One vector file of the search: `path` as the recipe records it (None = the behavior's own file)."""

    path: str | None
    label: str  # how the report names it (file name + method)
    sha256: str
    method: str | None
    vectors: Any = field(compare=False, hash=False, repr=False)  # a VectorSet


@dataclass(frozen=True)
class SideJob:
    """The rows of one side of a setting: every question, steered by one operator at one strength."""

    source: int  # index into the search's vector sources
    layer: int
    band: int
    op: str
    strength: float  # signed, in `unit`; ablation: -1 (only the sign matters)
    unit: str
    shared: bool
    window: int | None = None  # subtracted side: positions steered from the end of the instruction (None: all)

    def key(self, sources: Sequence[VectorSource]) -> str:
        """The job's cache key: vector file hash, layer, band, shared/own vectors, operator, signed strength, unit,
        and "|w<N>" for a subtracted side steering only N positions (absent for every position, so keys of
        caches written before windows existed stay valid).

        Args:
            sources: the search's vector sources (`source` indexes them).
        """
        strength = "-" if self.op == "ablate" else f"{self.strength:+g}"
        return (
            f"{sources[self.source].sha256[:16]}|L{self.layer}|b{self.band}|{'shared' if self.shared else 'own'}|"
            f"{self.op}|{strength}|{self.unit if self.op != 'ablate' else '-'}"
            + ("" if self.window is None else f"|w{self.window}")
        )

    def recipe(self) -> Any:
        """The Recipe that generates this side's rows: `op` on the side of the strength's sign, "add" on the other
        (unused) side, |strength| in `unit` (steering.core.recipe.Recipe).
        """
        return Recipe(
            layer=self.layer,
            strength=abs(self.strength),
            unit=self.unit,
            band=self.band,
            plus=self.op if self.strength > 0 else "add",
            minus=self.op if self.strength < 0 else "add",
            shared_vector=self.shared,
            minus_window=self.window if self.strength < 0 else None,
        )


@dataclass
class SearchSpace:
    """What `tune` tries: every vector x layer x band x plus operator x minus operator x strength."""

    layers: list[int]
    bands: list[int] = field(default_factory=lambda: [1])
    plus: list[str] = field(default_factory=lambda: ["add", "clamp"])
    minus: list[str] = field(default_factory=lambda: ["add", "ablate"])
    strengths: list[float] = field(default_factory=lambda: list(DEFAULT_STRENGTHS["relative"]))
    unit: str = "relative"
    shared_vector: bool = True
    minus_strengths: list[float] | None = None  # subtracted-side strengths; None = the same as `strengths`
    # subtracted-side windows (Recipe.minus_window; None in the list = every position); None = [None]
    minus_windows: list[int | None] | None = None
    # recipes scored next to the product above, each (vector source index, Recipe): the "incumbent", the recipe in
    # the defaults file a run would replace, so a rerun only replaces it with a setting that scores better on the
    # same questions
    extra: list[tuple[int, Recipe]] = field(default_factory=list)

    def check(self, num_layers: int | None = None) -> SearchSpace:
        """One-line SteeringError naming the first bad entry."""
        if not self.layers:
            raise SteeringError("tune: no layers to search")
        for name, values in (("--plus", self.plus), ("--minus", self.minus)):
            if not values:
                raise SteeringError(f"tune: {name} needs at least one operator")
            bad = [v for v in values if v not in OPERATORS]
            if bad:
                raise SteeringError(f"tune: {name}: unknown operator '{bad[0]}' (expected {', '.join(OPERATORS)})")
        if not self.strengths:
            raise SteeringError("tune: no strengths to search")
        bad_s = [s for s in self.strengths if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0)]
        if bad_s:
            raise SteeringError(f"tune: --strengths must be finite numbers > 0, found {bad_s[0]}")
        if self.minus_strengths is not None:
            bad_m = [
                s for s in self.minus_strengths if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0)
            ]
            if bad_m or not self.minus_strengths:
                raise SteeringError(
                    f"tune: --minus-strengths must be finite numbers > 0, found {bad_m[0] if bad_m else 'none'}"
                )
        if self.minus_windows is not None:
            bad_w = [w for w in self.minus_windows if w is not None and (not isinstance(w, int) or w < 1)]
            if bad_w or not self.minus_windows:
                raise SteeringError(
                    f"tune: --minus-windows must be integers >= 1 or 'all', found {bad_w[0] if bad_w else 'none'}"
                )
        bad_b = [b for b in self.bands if b < 1]
        if bad_b or not self.bands:
            raise SteeringError(f"tune: --bands must be integers >= 1, found {bad_b[0] if bad_b else 'none'}")
        if self.unit not in UNITS:
            raise SteeringError(f"tune: --unit must be one of {', '.join(UNITS)}, found '{self.unit}'")
        for layer in self.layers:
            if layer < 0 or (num_layers is not None and layer >= num_layers):
                top = f"0..{num_layers - 1}" if num_layers is not None else ">= 0"
                raise SteeringError(f"tune: layer {layer} is out of range: the model has layers {top}")
        return self


@dataclass(frozen=True)
class Setting:
    """One candidate recipe = one added-side job and one subtracted-side job."""

    source: int
    layer: int
    band: int
    plus: str
    minus: str
    strength: float
    strength_minus: float | None = None  # the subtracted side's own strength (None: `strength`)
    minus_window: int | None = None  # the subtracted side's window (None: every position)
    unit: str | None = None  # an extra setting's own unit (None: the space's)
    shared: bool | None = None  # an extra setting's own shared_vector (None: the space's)
    incumbent: bool = False  # the recipe of the defaults file a run would replace (SearchSpace.extra)


def side_jobs(space: SearchSpace, n_sources: int) -> tuple[list[Setting], dict[Setting, tuple[SideJob, SideJob]]]:
    """Every setting of the space and the two side jobs it needs (shared between settings): the product of the
    space's lists, then each of `space.extra` (marked incumbent; when the product already holds the same setting,
    that setting is marked instead of adding a second one).

    Args:
        space: the search space (its lists and its extra recipes).
        n_sources: how many vector sources the search has (the product runs over all of them).
    Returns: (settings in order, {setting: (added-side job, subtracted-side job)}).
    """
    settings: list[Setting] = []
    jobs: dict[Setting, tuple[SideJob, SideJob]] = {}
    for source in range(n_sources):
        for layer in space.layers:
            for band in space.bands:
                for strength in space.strengths:
                    for plus in space.plus:
                        for minus in space.minus:
                            # ablation does not depend on the strength: one setting, whatever --minus-strengths
                            downs = (
                                [None]
                                if minus == "ablate" or space.minus_strengths is None
                                else [float(m) for m in space.minus_strengths]
                            )
                            for down_s in downs:
                                for window in space.minus_windows or [None]:
                                    setting = Setting(source, layer, band, plus, minus, float(strength), down_s, window)
                                    up = SideJob(
                                        source, layer, band, plus, float(strength), space.unit, space.shared_vector
                                    )
                                    amount = float(strength) if down_s is None else down_s
                                    down = SideJob(
                                        source,
                                        layer,
                                        band,
                                        minus,
                                        -1.0 if minus == "ablate" else -amount,
                                        space.unit,
                                        space.shared_vector,
                                        window,
                                    )
                                    settings.append(setting)
                                    jobs[setting] = (up, down)
    for source, recipe in space.extra:
        _add_extra(settings, jobs, space, source, recipe)
    return settings, jobs


def _add_extra(
    settings: list[Setting],
    jobs: dict[Setting, tuple[SideJob, SideJob]],
    space: SearchSpace,
    source: int,
    recipe: Recipe,
) -> None:
    """Add `recipe` (an incumbent) to `settings` / `jobs`, or mark the equal product setting as the incumbent."""
    same_kind = recipe.unit == space.unit and recipe.shared_vector == space.shared_vector
    ablate = recipe.minus == "ablate"
    down_s = None if ablate or recipe.strength_minus is None else float(recipe.strength_minus)
    setting = Setting(
        source,
        recipe.layer,
        recipe.band,
        recipe.plus,
        recipe.minus,
        float(recipe.strength),
        down_s,
        recipe.minus_window,
        None if same_kind else recipe.unit,
        None if same_kind else recipe.shared_vector,
    )
    # the product writes strength_minus only with --minus-strengths: compare both spellings of "the same strength"
    twins = [setting] + (
        [Setting(**{**setting.__dict__, "strength_minus": float(recipe.strength)})]
        if down_s is None and not ablate
        else []
    )
    twins += [Setting(**{**setting.__dict__, "strength_minus": None})] if down_s == float(recipe.strength) else []
    for index, existing in enumerate(settings):
        if existing in twins:
            marked = Setting(**{**existing.__dict__, "incumbent": True})
            settings[index] = marked
            jobs[marked] = jobs.pop(existing)
            return
    unit = recipe.unit
    amount = float(recipe.strength) if down_s is None else down_s
    up = SideJob(source, recipe.layer, recipe.band, recipe.plus, float(recipe.strength), unit, recipe.shared_vector)
    down = SideJob(
        source,
        recipe.layer,
        recipe.band,
        recipe.minus,
        -1.0 if ablate else -amount,
        unit,
        recipe.shared_vector,
        recipe.minus_window,
    )
    marked = Setting(**{**setting.__dict__, "incumbent": True})
    settings.append(marked)
    jobs[marked] = (up, down)
