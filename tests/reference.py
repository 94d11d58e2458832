"""The paper's extraction method as a plain loop: one pair at a time, two full forward passes each.

Kept as the yardstick for tests (parity of the batched extractor) and the benchmark (speed-up: steering/bench/
extraction.py loads this file from the checkout); out of the package, as the tests' oracle.
It reads the activation at position -2 of the input ending in "(A)" (the answer letter), from
block outputs saved by a wrapper around each decoder layer during a full model call (LM head
included), as the original code's BlockOutputWrapper does.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from steering.core.datasets import ABItem
from steering.core.layers import decoder_layers
from steering.core.prompts import contrast_tokens


@torch.inference_mode()
def reference_vectors(
    model: Any,
    tokenizer: Any,
    items: Sequence[ABItem],
    layers: Sequence[int],
    read_mode: str = "letter",
    system_prompt: str | None = None,
) -> dict[int, torch.Tensor]:
    device = next(model.parameters()).device
    blocks = decoder_layers(model)
    saved: dict[int, torch.Tensor] = {}

    def saver(layer: int):
        def hook(module: Any, args: Any, output: Any) -> None:
            saved[layer] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [blocks[layer].register_forward_hook(saver(layer)) for layer in layers]
    diffs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    try:
        for item in items:
            acts = []
            for letter in (item.matching, item.not_matching):
                side = contrast_tokens(tokenizer, item, letter, read_mode, system_prompt)
                model(input_ids=torch.tensor([side.input_ids], device=device))
                acts.append({layer: saved[layer][0, side.read_positions].float().mean(0).cpu() for layer in layers})
            for layer in layers:
                diffs[layer].append(acts[0][layer] - acts[1][layer])
    finally:
        for handle in handles:
            handle.remove()
    return {layer: torch.stack(diffs[layer]).mean(0) for layer in layers}
