"""The evaluation's figures (matplotlib, no pyplot state): the A/B heatmap, A/B curves with controls, the
open-ended panels, cosine per layer of two vector sets; save_figure writes one atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from steering.io.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from steering.io.vector_set import VectorSet


def plot_heatmap(
    values: np.ndarray,
    layers: Sequence[int],
    multipliers: Sequence[float],
    default: tuple[int, float] | None = None,
    title: str = "A/B: p(behavior-matching answer)",
    annotate: bool = True,
) -> Figure:
    """Heatmap of a (layers x multipliers) sweep; `default` = (layer, multiplier) is outlined."""
    from matplotlib.figure import Figure  # lazy: matplotlib loads only when a plot is drawn
    from matplotlib.patches import Rectangle

    values = np.asarray(values, dtype=float)
    fig = Figure(figsize=(1.1 * len(multipliers) + 2.6, max(2.6, 0.28 * len(layers) + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu_r", vmin=0.0, vmax=1.0, aspect="auto", origin="lower")
    ax.set_xticks(range(len(multipliers)), [f"{m:g}" for m in multipliers])
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_xlabel("multiplier α")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    cell = None  # the default's (row, column), outlined and labelled inside its own cell
    if default is not None and default[0] in list(layers) and default[1] in list(multipliers):
        cell = list(layers).index(default[0]), list(multipliers).index(default[1])
    for y in range(values.shape[0]):
        for x in range(values.shape[1]):
            v = values[y, x]
            text = (f"{v:.2f}" if annotate else "") + (
                "\ndefault" if annotate and cell == (y, x) else "default" if cell == (y, x) else ""
            )
            if text:
                ax.text(
                    x,
                    y,
                    text,
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    linespacing=0.9,
                    color="white" if abs(v - 0.5) > 0.3 else "black",
                )
    if cell is not None:
        y, x = cell
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="gold", linewidth=2.5))
    fig.colorbar(image, ax=ax, label="mean p(match)\n/ (p(A) + p(B))")  # two short lines: fits beside the bar
    return fig


_STYLE = {
    "vector": dict(color="C3", marker="o"),
    "random": dict(color="0.5", marker="s", linestyle="--"),
    "negated": dict(color="C0", marker="^", linestyle=":"),
}


def plot_ab_curves(
    curves: Mapping[str, Sequence[float]], multipliers: Sequence[float], layer: int, title: str | None = None
) -> Figure:
    """p(match) against the multiplier at one layer for the vector and its controls."""
    from matplotlib.figure import Figure  # lazy: matplotlib loads only when a plot is drawn

    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(multipliers, values, label=name, **_STYLE.get(name, {}))
    ax.axhline(0.5, color="0.8", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("multiplier α")
    ax.set_ylabel("mean p(match) / (p(A) + p(B))")
    ax.set_title(title or f"A/B at layer {layer}: vector vs controls", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_open_ended(
    summary: Mapping[str, Sequence[dict]],
    layer: int,
    title: str | None = None,
    breakdown: Mapping[str, Any] | None = None,
    score_label: str = "refusal rate",
) -> Figure:
    """The judge's score (`score_label`, e.g. "refusal rate"), distinct-3 share and perplexity of the answers
    against the multiplier."""
    from matplotlib.figure import Figure  # lazy: matplotlib loads only when a plot is drawn

    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        ("refusal_rate", score_label, (0, 1)),
        ("distinct3", "distinct-3 share (coherence)", (0, 1.02)),
        ("perplexity", "unsteered-model perplexity (log)", None),
    )
    for ax, (key, label, ylim) in zip(axes, panels):
        for name, rows in summary.items():
            pts = [(r["multiplier"], r[key]) for r in rows if r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), label=name, **_STYLE.get(name, {}))
        ax.set_xlabel("multiplier α")
        ax.set_title(label, fontsize=10)
        if ylim:
            ax.set_ylim(*ylim)
        else:
            ax.set_yscale("log")
        if breakdown:
            for side in ("positive", "negative"):
                if breakdown.get(side):
                    ax.axvline(breakdown[side]["multiplier"], color="C1", linewidth=0.9, linestyle="-.")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"Open-ended answers at layer {layer}", fontsize=11)
    return fig


def cosine_plot(vset_a: VectorSet, vset_b: VectorSet, labels: tuple[str, str] | None = None) -> Figure:
    """Cosine similarity per layer between two vector sets (e.g. two read modes, or two models' sets)."""
    from matplotlib.figure import Figure  # lazy: matplotlib loads only when a plot is drawn

    from steering.io.vector_set import cosine_by_layer  # lazy: imports torch; the other plots need only numpy

    cosines = cosine_by_layer(vset_a, vset_b)
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(list(cosines), list(cosines.values()), marker="o", color="C2")
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("layer")
    ax.set_ylabel("cosine similarity")
    a, b = labels or (vset_a.source or "a", vset_b.source or "b")
    ax.set_title(f"{a} vs {b}", fontsize=9)
    return fig


def save_figure(fig: Figure, path: Any) -> None:
    """Save `fig` as an image at `path` (format from the suffix, 130 dpi), atomically (steering.io.files)."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format=path.suffix[1:] or None))
