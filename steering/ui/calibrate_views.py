"""The Calibrate tab's two views beside the sweep (no Gradio import): the per-question reliability at one
swept layer (steering.evaluation.reliability), and the cosine similarity of two vector sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steering.errors import SteeringError
from steering.evaluation import cosine_plot
from steering.evaluation.reliability import summarize
from steering.io.vector_set import cosine_by_layer
from steering.ui.calibrate import format_list
from steering.ui.checks import VectorChoice, check_upload


def reliability_layer(state: dict[str, list] | None, preferred: int | None) -> int | None:
    """The sweep layer the reliability view starts on: `preferred` (the chat's layer) if swept, else the
    middle one; None without a sweep that kept its per-question values."""
    if not state or "p" not in state or not state["layers"]:
        return None
    layers = [int(x) for x in state["layers"]]
    return int(preferred) if preferred is not None and int(preferred) in layers else layers[len(layers) // 2]


def sweep_reliability(state: dict[str, list], layer: int) -> Any:
    """Per-question steerability at one swept layer (steering.evaluation.reliability.summarize, Tan et al. 2024):
    the least-squares slope of p(matching letter) against alpha for each question, the wrong-way share
    (slope < 0) with its Wilson 95% interval. Raises SteeringError without two distinct multipliers."""

    if not state or "p" not in state:
        raise SteeringError("run a sweep first: the reliability view needs its per-question results")
    layers = [int(x) for x in state["layers"]]
    if int(layer) not in layers:
        raise SteeringError(f"layer {layer} was not swept (swept: {format_list(layers)})")
    p = np.asarray(state["p"], dtype=float)[layers.index(int(layer))]  # (multipliers, questions)
    return summarize(state["multipliers"], p.T, "p(matching letter)")


def reliability_text(rel: Any, layer: int) -> str:
    """Markdown lines under the histogram: the wrong-way share with its interval, and what it means."""
    low, high = rel.wrong_way_ci
    return (
        f"**Layer {int(layer)}: {rel.wrong_way} of {rel.n} questions move the wrong way "
        f"({rel.wrong_way_share:.0%}, 95% CI {low:.0%}–{high:.0%})**; mean slope {rel.mean_slope:+.4f}, median "
        f"{rel.median_slope:+.4f} per unit α; {rel.flat} flat. Steerability = the least-squares slope of a "
        "question's p(behavior-matching letter) against α (Tan et al. 2024, arXiv 2407.12404): a slope "
        "below 0 means the vector pushes that question away from the behavior. A mean that looks good can "
        "hide a large wrong-way share."
    )


def vector_set_for(
    engine: Any, choice: str | None, uploads: dict[str, str] | None, path: str | None, max_mb: float
) -> tuple[Any, str]:
    """The set named by a file just uploaded (checked like the chat's uploads) or else by the dropdown."""
    if path:
        check_upload(engine, path, max_mb)
        return engine.load_vector_file(path), Path(path).name
    if not choice:
        raise SteeringError("choose a vector set for both sides (or upload a file)")
    vset = VectorChoice.parse(choice, uploads).vector_set(engine)
    return vset, choice


def compare_sets(
    engine: Any,
    a: tuple[str | None, str | None],
    b: tuple[str | None, str | None],
    uploads: dict[str, str] | None,
    max_mb: float,
) -> Any:
    """cosine_plot of two sets, each given as (dropdown choice, uploaded file path); one-line errors."""

    (set_a, name_a), (set_b, name_b) = (vector_set_for(engine, c, uploads, p, max_mb) for c, p in (a, b))
    try:
        cosine_by_layer(set_a, set_b)  # no common layer: a SteeringError before any plotting
    except SteeringError as exc:
        message = str(exc)
        for vset, name in ((set_a, name_a), (set_b, name_b)):
            message = message.replace(vset.source, name) if vset.source else message
        raise SteeringError(message) from None
    return cosine_plot(set_a, set_b, labels=(name_a, name_b))
