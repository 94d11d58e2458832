"""Plain helpers for the app's Calibrate tab (no Gradio import): the layer x multiplier grid of a small
A/B sweep, the sweep as a table, a clicked cell as chat settings, and the two vector sets to compare.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steering.config import Config
from steering.core.datasets import load_ab_dataset
from steering.core.limits import Limits, check_multiplier
from steering.errors import SteeringError
from steering.evaluation.ab import ab_sweep
from steering.ui.checks import VectorChoice

MAX_LAYERS, MAX_MULTIPLIERS, MAX_ITEMS = 12, 9, 66
SMALL_MODEL_NOTE = (
    "On small models like the embedded SmolLM2-135M the A/B letter probability barely moves (the model answers "
    "A/B near chance), so judge by the chat panes and the open-ended results too (`results/eval/summary.md`)."
)


def default_layers(default: int, num_layers: int, count: int = 5) -> list[int]:
    """`count` layers spaced around the default layer (step ~ num_layers / 15), kept inside 0..num_layers-1."""
    count = max(1, min(count, num_layers))
    step = max(1, round(num_layers / 15))
    while step > 1 and (count - 1) * step > num_layers - 1:
        step -= 1
    start = default - (count // 2) * step
    start = min(max(start, 0), num_layers - 1 - (count - 1) * step)
    return [start + i * step for i in range(count)]


def layers_for_vector(
    available: Sequence[int], current: str | None, default: int, num_layers: int, count: int = 5
) -> list[int] | None:
    """The Calibrate tab's layers for the chosen vector set, or None to keep `current` (the text in the box).

    A set with `count` layers or fewer (e.g. an uploaded one-layer vector) gets its own layers; otherwise
    the layers around the default (default_layers), unless every layer in `current` is in the set.

    Args:
        available: the set's layers; current: the Layers box as typed; default: the model's default layer.
    """
    own = sorted({int(x) for x in available if 0 <= int(x) < num_layers})
    try:
        typed = parse_layers(current, num_layers)
    except SteeringError:
        typed = []
    if typed and set(typed) <= set(own):
        return None  # what is typed fits this set
    if own and len(own) <= count:
        return own
    return [x for x in default_layers(default, num_layers, count) if not own or x in own] or own


def default_multipliers(m: float) -> list[float]:
    """The Calibrate tab's default multipliers around alpha = m: [-2m, -m, 0, m, 2m] with m = |m| (1 when m is 0).

    Args:
        m: the model's default multiplier (unitless factor on the vector).
    """
    m = abs(float(m)) or 1.0
    return [-2 * m, -m, 0.0, m, 2 * m]


def format_list(values: Sequence[float]) -> str:
    """Numbers as the app's boxes show them: comma-separated, shortest form (`1, 2.5, -3`)."""
    return ", ".join(f"{v:g}" for v in values)


def _items(text: str | None, what: str) -> list[str]:
    parts = [p for p in re.split(r"[,\s;]+", (text or "").strip()) if p]
    if not parts:
        raise SteeringError(f"{what}: enter at least one value, e.g. 5, 7, 9")
    return parts


def parse_layers(text: str | None, num_layers: int) -> list[int]:
    """'5, 7, 9' -> [5, 7, 9] (sorted, no repeats); a one-line SteeringError for anything else."""
    layers = set()
    for part in _items(text, "Layers"):
        try:
            layer = int(part)
        except ValueError:
            raise SteeringError(f"Layers: '{part}' is not a whole number") from None
        if not 0 <= layer < num_layers:
            raise SteeringError(f"Layers: {layer} is out of range: the model has layers 0..{num_layers - 1}")
        layers.add(layer)
    if len(layers) > MAX_LAYERS:
        raise SteeringError(f"Layers: at most {MAX_LAYERS} at once (got {len(layers)})")
    return sorted(layers)


def parse_multipliers(text: str | None, limits: Limits | None = None) -> list[float]:
    """'2, -2 0' -> [-2.0, 0.0, 2.0] (sorted, no repeats); each finite and within limits.max_abs_multiplier.

    Raises SteeringError (one line) naming the value that does not fit.
    """
    limits = limits or Limits()
    values = set()
    for part in _items(text, "Multipliers"):
        try:
            value = float(part.replace("−", "-"))
        except ValueError:
            raise SteeringError(f"Multipliers: '{part}' is not a number") from None
        if not math.isfinite(value):
            raise SteeringError(f"Multipliers: '{part}' is not a finite number")
        values.add(check_multiplier(value, limits, name="Multipliers:"))
    if len(values) > MAX_MULTIPLIERS:
        raise SteeringError(f"Multipliers: at most {MAX_MULTIPLIERS} at once (got {len(values)})")
    return sorted(values)


def datasets_dir(config: Config) -> Path:
    """The config's datasets folder (absolute; see steering.config for where it is)."""

    return config.datasets_dir


def ab_behaviors(datasets_dir: str | Path) -> list[str]:
    """Behaviors with A/B test questions (datasets/<behavior>/test_ab.json)."""
    return sorted(p.parent.name for p in Path(datasets_dir).glob("*/test_ab.json"))


def ab_items(datasets_dir: str | Path, behavior: str | None, count: int) -> list[Any]:
    """The first `count` (at least 1) A/B questions of a behavior: <datasets_dir>/<behavior>/test_ab.json.

    Args:
        datasets_dir: the datasets folder (config `datasets_dir`, resolved).
        behavior: the behavior's folder name.
        count: how many questions the sweep uses.

    Returns:
        A list of steering.core.datasets.ABItem.

    Raises:
        SteeringError: no behavior chosen, no test_ab.json for it, or a malformed file (load_ab_dataset).
    """

    if not behavior:
        raise SteeringError("choose which behavior's A/B questions to use")
    path = Path(datasets_dir) / behavior / "test_ab.json"
    if not path.exists():
        raise SteeringError(f"no A/B questions for '{behavior}' ({behavior}/test_ab.json missing)")
    return load_ab_dataset(path)[: max(1, int(count))]


def question_set(
    choice: str | None, uploads: dict[str, str] | None, current: str | None, available: Sequence[str]
) -> str | None:
    """The A/B questions that go with the chat tab's vector: the behavior's own, else those chosen already."""
    picked = VectorChoice.parse(choice, uploads)
    return picked.behavior if picked.behavior in available else current


@dataclass(frozen=True)
class Sweep:
    """A Calibrate-tab A/B sweep: p(behavior-matching letter) at every layer x multiplier.

    The probability is normalised over the two answer letters, as the paper's A/B measure (Rimsky et al. 2023,
    arXiv 2312.06681, section 4).

    Attributes:
        layers: the swept decoder layers; multipliers: the swept alphas (unitless).
        values: (layers, multipliers) float array, mean p(matching letter) over the questions, in [0, 1].
        per_item: (layers, multipliers, questions) float array, p(matching letter) per question (None: not
            kept); the reliability view's input.
    """

    layers: list[int]
    multipliers: list[float]
    values: np.ndarray  # (layers, multipliers): mean p(matching letter)
    per_item: np.ndarray | None = None  # (layers, multipliers, questions): p(matching letter) per question

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """Headers and rows for a table: one row per layer, one column per multiplier."""
        headers = ["layer"] + [f"α = {m:g}" for m in self.multipliers]
        rows = [[layer] + [round(float(v), 3) for v in row] for layer, row in zip(self.layers, self.values)]
        return headers, rows

    def state(self) -> dict[str, list]:
        """What the page keeps of a sweep (gr.State): layers, multipliers and, when known, the per-question p."""
        state: dict[str, list] = {"layers": list(self.layers), "multipliers": list(self.multipliers)}
        if self.per_item is not None:
            state["p"] = np.round(np.asarray(self.per_item, dtype=float), 6).tolist()
        return state


def sweep_items(
    engine: Any,
    vset: Any,
    layers: Sequence[int],
    multipliers: Sequence[float],
    items: Sequence[Any],
    system_prompt: str | None = None,
) -> np.ndarray:
    """p(matching letter) of every question at every layer x multiplier: what evaluation.ab_sweep averages.

    Args: engine (model, tokenizer, lock, config), vset the VectorSet (each layer its own vector), layers,
    multipliers, items (ABItem). Returns: array (layers, multipliers, questions). Takes the model's lock.
    """

    return ab_sweep(engine, vset, layers, multipliers, items, system_prompt, per_item=True)


def run_sweep(
    engine: Any,
    choice: str | None,
    uploads: dict[str, str] | None,
    layers_text: str | None,
    multipliers_text: str | None,
    behavior: str | None,
    count: int,
) -> Sweep:
    """Check every input first (one-line SteeringError), then run the sweep (sweep_items: per question, under
    the model's lock); the Sweep keeps the per-question values for the reliability view."""
    layers = parse_layers(layers_text, engine.lm.num_layers)
    multipliers = parse_multipliers(multipliers_text, getattr(engine, "limits", None) or engine.config.limits)
    vset = VectorChoice.parse(choice, uploads).vector_set(engine)
    missing = [layer for layer in layers if layer not in vset.vectors]
    if missing:
        raise SteeringError(
            f"the vector has no layer {format_list(missing)} (it has layers {format_list(vset.layers)})"
        )
    items = ab_items(datasets_dir(engine.config), behavior, count)
    per_item = sweep_items(engine, vset, layers, multipliers, items)
    values = per_item.mean(axis=-1)
    bad = [f"layer {layers[i]} α {multipliers[j]:g}" for i, j in zip(*np.nonzero(~np.isfinite(values)))]
    if bad:
        raise SteeringError(
            f"the sweep gave no number (NaN) at {len(bad)} of {values.size} cells, e.g. {bad[0]}: "
            "the model's output overflowed at these settings; try smaller multipliers"
        )
    return Sweep(layers, multipliers, values, per_item)


def cell_setting(
    index: Sequence[int] | None, state: dict[str, list] | None, alpha_max: float
) -> tuple[int, float, str] | None:
    """A clicked table cell (row, column) -> the chat tab's (layer, α) and a confirmation line.

    The chat's α slider runs from 0: a negative multiplier is the same setting seen in the −α pane.
    None for the layer column or when no sweep has run.
    """
    if not state or index is None or len(index) < 2:
        return None
    row, col = int(index[0]), int(index[1])
    layers, multipliers = state["layers"], state["multipliers"]
    if not (0 <= row < len(layers) and 1 <= col <= len(multipliers)):
        return None
    layer, multiplier = int(layers[row]), float(multipliers[col - 1])
    alpha = min(abs(multiplier), float(alpha_max))
    where = (
        "the +α pane" if multiplier > 0 else "the −α pane" if multiplier < 0 else "all three panes (α = 0: no steering)"
    )
    clipped = f" (clipped to the slider's maximum {alpha_max:g})" if abs(multiplier) > alpha_max else ""
    message = (
        f"✓ Chat set to layer {layer}, α = {alpha:g}{clipped}: multiplier {multiplier:g} is {where}. "
        "Go to the Chat tab and send a message."
    )
    return layer, alpha, message
