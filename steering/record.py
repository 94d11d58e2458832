"""Recording decoder-block outputs at chosen token positions, stopping after the last layer needed."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from steering.layers import decoder_layers


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
        self.rows, self.cols, self.records = rows, cols, {}

    def hook(self, layer: int, last: bool):
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            self.records[layer] = hidden[self.rows.to(hidden.device), self.cols.to(hidden.device)].float().cpu()
            if last:
                raise _StopForward

        return record


@contextmanager
def recording(model: nn.Module, layers: Sequence[int]) -> Iterator[ActivationRecorder]:
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
