"""α presets (issue 13 item 5): gentle, clear and too strong, from the model's tuned defaults (Engine.recipe)
and the measured breakdown point (results/eval/.../open_ended.json). Plain helpers without a Gradio import."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.core.recipe import Recipe
from steering.errors import SteeringError


@dataclass(frozen=True)
class Preset:
    """An α preset: its name, value and where the value comes from (one line)."""

    name: str
    alpha: float
    why: str

    @property
    def label(self) -> str:
        """The preset's button text: its name and alpha, e.g. "clear (α = 4)"."""
        return f"{self.name} (α = {self.alpha:g})"


def measured_breakdown(
    results_dir: str | Path, behavior: str, model_slug: str, recipe: Recipe | None = None
) -> float | None:
    """The smallest |α| at which the evaluation saw the text break down for this behavior and model.

    Read from results_dir/eval/<behavior>/open_ended.json, else results_dir/eval/open_ended.json, when the
    file's settings name this behavior and model (`python -m steering evaluate` writes them) and, when
    `recipe` is given, the recipe the file was made with (settings.recipe) is that recipe: a file made with
    an earlier recipe (another layer, band or operator) says nothing about where the current one breaks, so
    it is skipped and the next file is tried.

    Args:
        results_dir: the results folder (config results_dir).
        behavior: the behavior's name.
        model_slug: the loaded model's slug (LM.slug).
        recipe: the behavior's current recipe (Engine.recipe(behavior)); None = the recorded recipe is not checked.
    Returns: the breakdown |α|, or None when no such file exists, it says the text held up over its whole
        range, or it cannot be read (logged).
    """
    evaluations = Path(results_dir) / "eval"
    for path in (evaluations / behavior / "open_ended.json", evaluations / "open_ended.json"):
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            settings = data.get("settings") or {}
            if settings.get("behavior") != behavior or settings.get("model") != model_slug:
                continue
            if recipe is not None and not _same_recipe(settings.get("recipe"), recipe):
                logging.getLogger(__name__).info("α presets: %s was made with another recipe; skipped", path)
                continue
            found = [abs(float(side["multiplier"])) for side in (data.get("breakdown") or {}).values() if side]
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            logging.getLogger(__name__).warning("α presets: cannot read %s: %s", path.name, exc)
            continue
        return min(found) if found else None
    return None


def _same_recipe(recorded: Any, recipe: Recipe) -> bool:
    """Whether a results file's settings.recipe (a mapping; None in files older than recorded recipes) is `recipe`."""
    if recorded is None:
        return False
    try:
        return Recipe.from_dict(recorded, where="settings.recipe") == recipe
    except SteeringError:
        return False


def presets(default: float, breakdown: float | None) -> list[Preset]:
    """The three α presets: gentle (half the default), clear (the tuned default), too strong (the measured
    breakdown point, else twice the default).

    Args:
        default: the model's tuned α for the behavior (Engine.recipe(behavior).strength).
        breakdown: measured_breakdown(...) or None.
    """
    default = abs(float(default)) or 1.0
    strong = (
        Preset(
            "too strong — watch it break",
            breakdown,
            f"where the evaluation saw the text break down (α = {breakdown:g})",
        )
        if breakdown and breakdown > default
        else Preset(
            "too strong — watch it break", 2 * default, "twice the default (no measured breakdown point for this model)"
        )
    )
    return [
        Preset("gentle", default / 2, "half the tuned default"),
        Preset("clear", default, "the tuned default for this model"),
        strong,
    ]


def steered_layers(engine: Any, behavior: str | None) -> list[int]:
    """The layers the behavior's recipe steers for the loaded model (Recipe.layers), [] if it cannot be read."""
    try:
        return list(engine.recipe(behavior).layers(engine.lm.num_layers)) if behavior else []
    except SteeringError:
        return []


def behavior_presets(engine: Any, behavior: str | None, results_dir: str | Path) -> list[Preset]:
    """presets() for the loaded model and a behavior (the engine's defaults when the recipe cannot be read).

    The "too strong" preset uses the measured breakdown point only from an evaluation made with the
    behavior's current recipe (measured_breakdown's `recipe`); without a readable recipe, none is used."""
    try:
        recipe = engine.recipe(behavior) if behavior else None
    except SteeringError:
        recipe = None
    default = recipe.strength if recipe is not None else engine.defaults.multiplier
    breakdown = measured_breakdown(results_dir, behavior, engine.lm.slug, recipe) if behavior and recipe else None
    return presets(default, breakdown)
