"""The typical hidden-state norm at a layer: what relative steering strengths and the vector-norm checks
(steering.io.vector_files) are measured against (Engine.hidden_norm caches it per layer)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from steering.core.record import recording, run_truncated

# Neutral prompts for measuring the typical hidden-state norm at a layer.
NORM_PROMPTS = [
    "Tell me about the weather today.",
    "How do I make a cup of tea?",
    "What is the capital of France?",
    "Write a short poem about the sea.",
]


@torch.inference_mode()
def measure_hidden_norms(lm: Any, layers: Sequence[int]) -> dict[int, float]:
    """The median L2 norm of each layer's block output over the tokens of 4 neutral chat prompts (NORM_PROMPTS),
    the first token (an attention sink with outsized norm) left out; one forward pass per prompt, under the
    model's lock.

    Args:
        lm: a steering.models.LoadedModel (model, tokenizer, lock, device).
        layers: decoder block indices, already checked (0..num_layers - 1).

    Returns:
        {layer: median norm, residual-stream units}.
    """

    tok = lm.tokenizer
    norms: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    with lm.lock, recording(lm.model, list(layers)) as recorder:
        for prompt in NORM_PROMPTS:
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            # skip the first token: attention-sink tokens have outsized norms
            recorder.select(torch.zeros(ids.shape[1] - 1, dtype=torch.long), torch.arange(1, ids.shape[1]))
            run_truncated(lm.model, input_ids=ids.to(lm.device))
            for layer in layers:
                norms[layer].append(recorder.records[layer].norm(dim=-1))
    return {layer: float(torch.cat(norms[layer]).median()) for layer in layers}
