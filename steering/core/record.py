"""Recording decoder-block outputs at chosen token positions, stopping after the last layer needed."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from steering.core.layers import decoder_layers


class _StopForward(Exception):
    """Raised after the deepest requested layer: no later layer nor the LM head is computed."""


class ActivationRecorder:
    """Keeps hidden[rows, cols] of each requested block's output for the next forward pass."""

    def __init__(self, layers: Sequence[int]) -> None:
        self.layers = sorted(set(layers))
        self.rows = torch.empty(0, dtype=torch.long)
        self.cols = torch.empty(0, dtype=torch.long)
        self.records: dict[int, torch.Tensor] = {}

    def select(self, rows: torch.Tensor, cols: torch.Tensor) -> None:
        """Choose which (row, position) pairs the next forward records, and drop the previous records.

        Args:
            rows: (n,) long, batch indices; cols: (n,) long, token positions (same length as rows).
        """
        self.rows, self.cols, self.records = rows, cols, {}

    def hook(self, layer: int, last: bool):
        """The forward hook for block `layer`: stores hidden[rows, cols], (n, hidden_size) float32 on the CPU,
        in `records[layer]`; with `last`, it then stops the forward pass (no later block runs).
        """

        def record(module: nn.Module, args: tuple, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            self.records[layer] = hidden[self.rows.to(hidden.device), self.cols.to(hidden.device)].float().cpu()
            if last:
                raise _StopForward

        return record


@contextmanager
def recording(model: nn.Module, layers: Sequence[int]) -> Iterator[ActivationRecorder]:
    """Record the outputs of the given decoder blocks for as long as the block lasts; hooks removed on any exit.

    Use with run_truncated, which runs the model only up to the deepest requested layer.

    Args:
        model: a transformers causal LM.
        layers: block indices, 0..num_layers - 1.

    Yields:
        The ActivationRecorder: `select(rows, cols)` before each forward, then `records[layer]`, an
        (n, hidden_size) float32 tensor in residual-stream units.

    Raises:
        SteeringError: the model's decoder blocks cannot be found. IndexError: a layer beyond the model.
    """
    recorder = ActivationRecorder(layers)
    blocks = decoder_layers(model)
    handles = [
        blocks[layer].register_forward_hook(recorder.hook(layer, last=layer == recorder.layers[-1]))
        for layer in recorder.layers
    ]
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()


def run_truncated(model: nn.Module, **inputs: Any) -> None:
    """A forward pass of the base model (no LM head) that ends at the recorder's last layer."""
    base = getattr(model, "model", model)
    try:
        base(**inputs)
    except _StopForward:
        pass
