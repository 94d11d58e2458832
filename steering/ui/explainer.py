"""The "What am I looking at?" picture (matplotlib) and sentences, the tooltips on α and layer, and the demo
pieces' style sheet (issue 13 item 5).

    python -m steering.ui.explainer docs/how-steering-works.png   # redraw the README's picture
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steering.ui.demo import UNSTEERED_TITLE

EXPLAINER = (
    "A language model passes your message up through a stack of layers, each adding to one running list of "
    "numbers (the hidden state). A steering vector is a direction in those numbers that we measured by "
    "comparing answers that show the behavior with answers that don't. At one layer we add it (α times, "
    "above) or subtract it (below), and the same model then answers three times, so you can see what the "
    "direction does — and, with a bigger α, where it breaks the text."
)

TIPS = {
    "alpha": (
        "α is how hard the vector pushes: 0 leaves the model as it is; the first pane gets +α, the last −α. "
        "Small values change little, too large ones garble the text: try the presets."
    ),
    "layer": (
        "The layer where the vector is added, counted from the input (0) up. Middle layers hold the "
        "most abstract features; the vector was measured at each layer, and the default is the one "
        "tuned for this model."
    ),
}


def tooltip_html(key: str, text: str) -> str:
    """A small "(?) text" hint whose explanation shows on hover, tap or keyboard focus (CSS only, role=tooltip)."""
    tip = html.escape(TIPS[key], quote=True)
    return (
        f'<span class="demo-tip" id="tip-{key}" tabindex="0" aria-describedby="tip-{key}-text">'
        '<span class="demo-tip-mark" aria-hidden="true">?</span> '
        f'{html.escape(text)}<span class="demo-tip-text" role="tooltip" id="tip-{key}-text">{tip}</span></span>'
    )


DEMO_CSS = """
.demo-tip { position: relative; cursor: help; font-size: var(--text-sm); color: var(--body-text-color);
            border-bottom: 1px dotted currentColor; white-space: nowrap; }
.demo-tip .demo-tip-text { display: none; position: absolute; left: 0; top: 1.6em; z-index: 20; width: min(320px, 80vw);
            padding: 8px 10px; border-radius: 6px; background: var(--background-fill-secondary);
            color: var(--body-text-color); border: 1px solid var(--border-color-primary);
            box-shadow: 0 2px 8px rgba(0,0,0,.2); }
.demo-tip-mark { display: inline-block; width: 1.3em; height: 1.3em; line-height: 1.3em; text-align: center;
                 border-radius: 50%; border: 1px solid currentColor; font-weight: 600; }
.demo-tip:hover .demo-tip-text, .demo-tip:focus .demo-tip-text,
.demo-tip:focus-within .demo-tip-text { display: block; }
#strip { flex-wrap: nowrap; overflow-x: auto; gap: 8px; }  /* one row; it scrolls sideways on a phone */
#strip > .column { min-width: 140px !important; flex: 1 0 140px; border: 1px solid var(--border-color-primary);
                   border-radius: 8px; padding: 6px; }
#prompted button[aria-label="Clear"] { display: none; }  /* one Clear for all panes */
#presets { align-items: center; }
#strip .prose { font-size: var(--text-sm); }
#busy-line p { margin: 0; }
/* small print (captions under the answers and cards) in the body text colour: the theme's subdued grey is
   too faint at this size (about 2.5:1 on white) */
#panes sub, #prompted sub, #strip sub { color: var(--body-text-color); opacity: 1; }
"""


def explainer_figure(
    num_layers: int,
    layer: int,
    titles: Sequence[str] = ("More of the behavior (+α)", UNSTEERED_TITLE, "Less of the behavior (−α)"),
    band: Sequence[int] = (),
):
    """The "What am I looking at?" picture: the stack of layers, the vector added at one layer, three answers.

    Args:
        num_layers: the model's decoder layer count; layer: the layer where the vector is added.
        titles: the three panes' titles (PaneText.titles()).
        band: all the layers the recipe steers (e.g. 12, 13, 14 around 13), drawn highlighted; default: `layer`.
    Returns: a matplotlib Figure (Agg; the caller closes it).
    """
    import matplotlib  # lazy: matplotlib loads only when a figure is drawn (not for DEMO_CSS)

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = Figure(figsize=(8, 4.2), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5.2)
    ax.axis("off")
    shown = min(num_layers, 9)  # a few layers drawn; the steered one among them
    band = sorted(set(band) | {layer})
    rows = sorted(set(list(range(0, 2)) + [band[0] - 1, *band, band[-1] + 1] + [num_layers - 2, num_layers - 1]))
    rows = [r for r in rows if 0 <= r < num_layers][:shown]
    gaps = sum(1 for a, b in zip(rows, rows[1:]) if b != a + 1)
    y, h = 0.55, min(0.36, (4.2 - 0.08 * (len(rows) - 1) - 0.26 * gaps) / len(rows))  # the stack fits below 4.75
    ax.text(2.2, 0.15, "your message", ha="center", fontsize=10)
    for i, r in enumerate(rows):
        steered = r in band
        ax.add_patch(
            FancyBboxPatch(
                (1.0, y),
                2.4,
                h,
                boxstyle="round,pad=0.02",
                fc="#ffd8a8" if steered else "#dbe4ff",
                ec="#e8590c" if steered else "#4c6ef5",
            )
        )
        ax.text(2.2, y + h / 2, f"layer {r}", ha="center", va="center", fontsize=9)
        if r == layer:
            ax.add_patch(
                FancyArrowPatch(
                    (5.0, y + h / 2), (3.45, y + h / 2), arrowstyle="-|>", mutation_scale=18, color="#e8590c", lw=2.2
                )
            )
            ax.text(
                3.6,
                y + h / 2 - 0.12,
                "± α × steering vector" + (f"\n(spread over layers {band[0]}–{band[-1]})" if len(band) > 1 else ""),
                va="top",
                fontsize=10,
                color="#e8590c",
            )
        gap = i + 1 < len(rows) and rows[i + 1] != r + 1
        if gap:
            ax.text(2.2, y + h + 0.17, "⋮", ha="center", va="center", fontsize=10, color="#495057")
        y += h + (0.34 if gap else 0.08)
    top = y
    ax.text(2.2, top + 0.05, f"({num_layers} layers in all)", ha="center", fontsize=8, color="#495057")
    colors = ("#ffc9c9", "#e9ecef", "#c3fae8")
    for k, (title, color) in enumerate(zip(titles, colors)):
        y = 4.3 - k * 0.75
        ax.add_patch(FancyBboxPatch((6.0, y), 3.7, 0.55, boxstyle="round,pad=0.05", fc=color, ec="#868e96"))
        ax.text(7.85, y + 0.27, title, ha="center", va="center", fontsize=9)
        ax.add_patch(
            FancyArrowPatch(
                (3.45, top - 0.2),
                (5.95, y + 0.27),
                arrowstyle="-|>",
                mutation_scale=12,
                color="#868e96",
                lw=1,
                connectionstyle="arc3,rad=-0.15",
            )
        )
    ax.text(7.85, 1.7, "the same model answers three times,\nin one batch", ha="center", fontsize=9, color="#495057")
    return fig


def explainer_image(num_layers: int, layer: int, titles: Sequence[str] | None = None, band: Sequence[int] = ()) -> Any:
    """explainer_figure rendered in memory: an (height, width, 3) uint8 numpy array for gr.Image."""

    fig = explainer_figure(num_layers, layer, *([titles] if titles else []), band=band)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: as in explainer_figure

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_explainer(
    path: str | Path,
    num_layers: int = 30,
    layer: int | None = None,
    titles: Sequence[str] = ("Refuses more (+α)", UNSTEERED_TITLE, "Refuses less (−α)"),
    band: Sequence[int] | None = None,
) -> Path:
    """Write the picture as a PNG (the README's docs/how-steering-works.png: SmolLM2-135M, 30 layers).

    Args: path: the PNG to write; num_layers: decoder layers drawn; layer / band: the anchor layer and every
    steered layer (None: the shipped refusal recipe's, read from
    vectors/refusal/smollm2-135m-instruct.defaults.json, so the picture follows `tune`); titles: the three panes.
    Returns: the path written. Raises: SteeringError when layer is None and the defaults file cannot be read.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: as in explainer_figure

    if layer is None:
        from steering.config import PROJECT_ROOT
        from steering.errors import SteeringError
        from steering.io.recipe_defaults import load_defaults

        shipped = load_defaults(PROJECT_ROOT / "vectors" / "refusal" / "smollm2-135m-instruct.defaults.json")
        if shipped is None:
            raise SteeringError("save_explainer: no shipped refusal defaults file; pass layer= and band=")
        layer = shipped.recipe.layer
        band = shipped.recipe.layers(num_layers) if band is None else band
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = explainer_figure(num_layers, layer, titles, band or ())
    FigureCanvasAgg(fig).print_png(str(path))
    return path


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    import sys

    print(save_explainer(sys.argv[1] if len(sys.argv) > 1 else "docs/how-steering-works.png"))
