"""The behavior meter: how far along the steering direction each generated token's hidden state lies.

For a turn of the app's three panes, the meter records, at the steered (anchor) layer L, the projection

    m_t = (h_L[t] . u) / n_L

for every generated token t, where

* h_L[t] is the output of decoder block L at the position whose logits chose token t, in the very forward
  pass that produced the token (no extra pass: a forward hook on block L, inside the generation's
  steering context), read BEFORE block L's own steering is applied -- the same h.u that
  steering.core.operators.apply_steering computes for its projection operators ("along"). Block L's own
  steering only shifts it by a constant per pane (CAA addition: + alpha |v|; a clamp: sets it to the
  target), so the pre-steering value is what varies with the text; steering at earlier layers of a
  band, and every earlier token, do act on it.
* u = v / |v| is the unit steering vector at layer L (hooks.unit_vector).
* n_L is the typical hidden-state norm at layer L (Engine.hidden_norm: the median L2 norm of block L's
  output over the tokens of neutral prompts).

Units: a fraction of a typical hidden state's length. 0 = orthogonal to the behavior direction; +0.1 =
one tenth of a typical hidden state's length along the direction (toward the behavior); negative =
away from it. Values are comparable across panes, prompts and models (same normalisation as the note
under the app's alpha slider).

Method: a linear readout of the residual stream along the CAA direction (Rimsky et al. 2023, arXiv
2312.06681), the same h.u the projection operators of steering/core/operators.py act on.
"""

from __future__ import annotations

import html
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, Sequence

import torch

from steering.core.layers import check_layer, decoder_layers
from steering.core.operators import unit_vector


class Meter:
    """Records (h_L . u) at the last position of every forward pass of block `layer` during a generation.

    Args:
        vector: (hidden,) the steering vector at `layer` (its direction is used; any norm but 0).
        layer: the decoder block index L (0-based) that is read.
        scale: the typical hidden-state norm n_L at that layer (values are divided by it); > 0.

    Use `steering_context(inner)` as generation.generate(steering_context=...) around the steering
    hooks (inner: hooks.steer), then `values(token_counts)`.
    """

    def __init__(self, vector: torch.Tensor, layer: int, scale: float) -> None:
        if vector.ndim != 1:
            raise ValueError(f"meter: the vector must be 1-D, got shape {tuple(vector.shape)}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"meter: the hidden-state norm must be a positive number, got {scale!r}")
        self.unit = unit_vector(vector.detach().float())
        self.layer = int(layer)
        self.scale = float(scale)
        self.steps: list[torch.Tensor] = []  # one (batch,) tensor per forward pass, on the model's device

    @classmethod
    def for_engine(cls, engine: Any, vector: torch.Tensor, layer: int) -> Meter:
        """A meter at `layer` for `vector`, normalised by engine.hidden_norm(layer) (measured once, cached)."""
        check_layer(int(layer), engine.lm.num_layers)
        return cls(vector, int(layer), engine.hidden_norm(int(layer)))

    def hook(self, module: Any, args: tuple, output: Any) -> None:
        """Forward hook of block L: keeps h[:, -1] . u (float32), leaves the output unchanged."""
        hidden = output[0] if isinstance(output, tuple) else output
        if self.unit.device != hidden.device:
            self.unit = self.unit.to(hidden.device)
        self.steps.append(torch.matmul(hidden[:, -1, :].float(), self.unit))  # no host sync per step

    @contextmanager
    def attached(self, model: Any) -> Iterator[Meter]:
        """The hook on block L for the duration of the block (removed on any exit); clears old steps."""
        blocks = decoder_layers(model)
        check_layer(self.layer, len(blocks))
        self.steps = []
        handle = blocks[self.layer].register_forward_hook(self.hook)
        try:
            yield self
        finally:
            handle.remove()

    def steering_context(self, inner: Callable[..., ContextManager[Any]]) -> Callable[..., ContextManager[Any]]:
        """A generate(steering_context=...) that attaches the meter, then `inner` (e.g. hooks.steer).

        The meter's hook is registered first, so PyTorch runs it before the steering hook of the same
        block: it reads block L's output before block L's own steering (see the module docstring).
        """

        @contextmanager
        def context(model: Any, plan: Any, steer_from: Any) -> Iterator[Any]:
            with self.attached(model), inner(model, plan, steer_from) as hooks:
                yield hooks

        return context

    def values(self, token_counts: Sequence[int]) -> list[list[float]]:
        """Per row, the meter value of each generated token (the first token_counts[row] steps).

        Step k's forward pass chose token k of every row still generating, so row r's values are the
        first token_counts[r] steps (a finished row's later steps read padding and are dropped).
        Returns: rows x tokens, in units of the typical hidden-state norm at the layer.
        """
        if not self.steps:
            return [[] for _ in token_counts]
        table = (torch.stack(self.steps).cpu() / self.scale).T.tolist()  # (batch, steps)
        if len(table) != len(token_counts):
            raise ValueError(f"meter: {len(table)} rows recorded, {len(token_counts)} token counts given")
        return [[round(v, 5) for v in row[: int(n)]] for row, n in zip(table, token_counts)]


# ---------------------------------------------------------------------------------------- display
def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded answer (piece i = decode(ids[:i+1]) minus decode(ids[:i])).

    Joined, the pieces are the decoded text; a token that completes a multi-byte character gets the
    whole character and the tokens before it get ''. Cost: one decode per token (after generation).
    """
    pieces, before = [], ""
    for i in range(len(ids)):
        text = tokenizer.decode(list(ids[: i + 1]), skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            pieces.append("")
            continue
        pieces.append(text[len(before) :] if text.startswith(before) else text)
        before = text
    return pieces


@dataclass
class PaneReading:
    """One pane's meter: the title, its tokens' text pieces and values (same length)."""

    title: str
    pieces: list[str]
    values: list[float]


def meter_scale(readings: Sequence[PaneReading]) -> float:
    """The shading scale shared by the panes: the largest |value| of any token (1.0 when there is none)."""
    peak = max((abs(v) for r in readings for v in r.values if math.isfinite(v)), default=0.0)
    return peak if peak > 0 else 1.0


def shade(value: float, scale: float) -> str:
    """A CSS background for a value: orange toward the behavior (> 0), blue away (< 0), opacity |value|/scale."""
    strength = min(1.0, abs(value) / scale) if math.isfinite(value) else 0.0
    rgb = "234, 88, 12" if value > 0 else "37, 99, 235"
    return f"rgba({rgb}, {0.08 + 0.6 * strength:.2f})" if strength > 0 else "transparent"


def sparkline(values: Sequence[float], scale: float, width: int = 240, height: int = 28) -> str:
    """An inline SVG line of the values over the tokens (the zero line dashed), scaled to +-scale."""
    if not values:
        return ""
    mid = height / 2
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{mid - (v / scale) * (mid - 2):.1f}" for i, v in enumerate(values))
    return (
        f'<svg class="meter-line" viewBox="0 0 {width} {height}" width="100%" height="{height}" '
        f'preserveAspectRatio="none" role="img" aria-label="meter over the answer">'
        f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" stroke="#9ca3af" stroke-dasharray="3 3" '
        f'stroke-width="1"/><polyline fill="none" stroke="#ea580c" stroke-width="1.5" '
        f'points="{points}"/></svg>'
    )


def meter_html(readings: Sequence[PaneReading], layer: int) -> str:
    """The meter of a turn's panes as HTML: per pane a title, a line over the answer and the answer's
    tokens shaded by their value (hover: the value), on one scale shared by the panes."""
    scale = meter_scale(readings)
    blocks = []
    for reading in readings:
        tokens = "".join(
            f'<span class="meter-token" data-value="{v:.4f}" title="{v:+.3f}" '
            f'style="background:{shade(v, scale)}">{html.escape(piece)}</span>'
            for piece, v in zip(reading.pieces, reading.values)
        )
        mean = sum(reading.values) / len(reading.values) if reading.values else float("nan")
        summary = f"mean {mean:+.3f}" if reading.values else "no tokens"
        blocks.append(
            f'<div class="meter-pane"><div class="meter-title">{html.escape(reading.title)} '
            f"<small>({summary})</small></div>{sparkline(reading.values, scale)}"
            f'<div class="meter-text">{tokens}</div></div>'
        )
    legend = (
        f'<div class="meter-legend">Behavior meter at layer {int(layer)}: each token shaded by how far '
        f"its hidden state points along the steering vector (orange: toward the behavior, blue: away; "
        f"units: a fraction of a typical hidden state's length; darkest = ±{scale:.3f}).</div>"
    )
    return f'<div class="meter">{legend}<div class="meter-panes">{"".join(blocks)}</div></div>'


def turn_readings(
    tokenizer: Any, meter: Meter, token_ids: Sequence[Sequence[int]], titles: Sequence[str]
) -> list[PaneReading]:
    """The readings of a finished generation: one per row that has a title (rows beyond `titles` left out).

    Args:
        tokenizer: decodes the token pieces; meter: the Meter the generation filled;
        token_ids: each row's generated token ids (GenerationResult.token_ids); titles: one per pane.
    """
    values = meter.values([len(ids) for ids in token_ids])
    return [
        PaneReading(title, token_pieces(tokenizer, ids), vals) for title, ids, vals in zip(titles, token_ids, values)
    ]
