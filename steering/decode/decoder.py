"""The decoder protocol: a KV-cached model that prefills a prompt batch and then decodes one token per
row per step. The backend is chosen once, by whoever builds the decoder:

* EagerDecoder: a transformers DynamicCache and the model's own forward (the default; CPU or GPU). It
  computes the rows' shared prefix once and copies its cache to every row.
* StaticDecoder: a static cache from a factory (fixed shapes: the attention mask is padded to the full
  cache length) and a `step` forward for the one-token steps: the plain forward (static cache only), a
  torch.compile'd forward or CUDA-graph replays (steering/decode/fast_path.py builds these).

In the shape of gpt-fast: prefill and decode-one-token are separate calls, only the step is compiled or
graphed, and the loop (steering/decode/generation.py) and the token choice (sampling.py) live apart.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from steering.decode.batch import PromptBatch


class Decoder(Protocol):
    """What generate() runs: reset(batch, max_new_tokens), then prefill(), then step(ids) per token."""

    shares_prefix: bool  # may compute the rows' common prefix once (PromptBatch.build(share_prefix=...))

    def reset(self, batch: PromptBatch, max_new_tokens: int) -> None:
        """A cache for `batch` and `max_new_tokens` more tokens; the shared prefix computed (unsteered)."""
        ...

    def prefill(self) -> torch.Tensor:
        """The prompts' remaining tokens; returns the last position's logits, (rows, vocab) float32."""
        ...

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """One token per row, (rows, 1) long; returns its logits, (rows, vocab) float32."""
        ...


class CachedDecoder:
    """A decoder over a KV cache (see the module docstring); EagerDecoder and StaticDecoder pick the cache.

    Args:
        model: a transformers causal LM.
        cache_factory: `(rows, tokens) -> cache`; None: a DynamicCache (and the shared prefix computed once).
        step: the forward used for the one-token steps (default: the model); the prefill always runs the model.

    Attributes (after reset / each call): cache; mask (rows, mask length) long, 1 at real tokens, filled in
    place; length, the tokens in the cache; positions (rows, 1), the next token's absolute positions.
    """

    def __init__(
        self, model: Any, cache_factory: Callable[[int, int], Any] | None = None, step: Callable[..., Any] | None = None
    ) -> None:
        self.model = model
        self.cache_factory = cache_factory
        self.forward = step if step is not None else model
        self.shares_prefix = cache_factory is None  # a static cache has a fixed batch
        self.cache: Any = None
        self.static = False
        self.mask = torch.zeros(0, 0, dtype=torch.long)
        self.length = 0
        self._ids = torch.zeros(0, 0, dtype=torch.long)
        self.positions = torch.zeros(0, 0, dtype=torch.long)

    def reset(self, batch: PromptBatch, max_new_tokens: int) -> None:
        """See Decoder.reset. Raises ValueError when a static cache is shorter than prompt + new tokens."""
        rows, width, shared = batch.rows, batch.width, batch.shared
        total = width + max_new_tokens
        if self.cache_factory is not None:
            self.cache = self.cache_factory(rows, total)
        else:
            from transformers import DynamicCache  # loaded with a model, not by importing the decoder

            self.cache = DynamicCache(config=self.model.config)
            if shared:
                self._run(
                    self.model, batch.input_ids[:1, :shared], batch.attention[:1, :shared], batch.positions[:1, :shared]
                )
                self.cache.batch_repeat_interleave(rows)
        # One mask for the whole generation, filled in place: a static cache sees all of it (the columns
        # not yet written are 0), a dynamic one the prefix that matches what it holds.
        self.static = bool(getattr(self.cache, "is_compileable", False))
        mask_len = int(self.cache.get_max_length()) if self.static else total
        if mask_len < total:
            raise ValueError(f"the cache holds {mask_len} tokens, the generation needs {total}")
        self.mask = torch.zeros((rows, mask_len), dtype=torch.long, device=batch.input_ids.device)
        self.mask[:, :width] = batch.attention
        self.length = width
        self._ids, self.positions = batch.input_ids[:, shared:], batch.positions[:, shared:]

    def _run(self, forward: Callable[..., Any], ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> Any:
        return forward(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )

    def _mask_now(self) -> torch.Tensor:
        return self.mask if self.static else self.mask[:, : self.length]

    def prefill(self) -> torch.Tensor:
        """See Decoder.prefill (the model's own forward: the prompt's length changes with every prompt)."""
        out = self._run(self.model, self._ids, self._mask_now(), self.positions)
        self.positions = self.positions[:, -1:] + 1
        return out.logits[:, -1, :].float()

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """See Decoder.step (the `step` forward: eager, compiled or a CUDA-graph replay)."""
        self.mask[:, self.length] = 1  # the token fed now sits at cache index `length`
        self.length += 1
        out = self._run(self.forward, ids, self._mask_now(), self.positions)
        self.positions = self.positions + 1
        return out.logits[:, -1, :].float()


class EagerDecoder(CachedDecoder):
    """The default backend: a DynamicCache, the model's forward for every step, the shared prefix once
    (`step`: another forward for the one-token steps, e.g. one that records the logits)."""

    def __init__(self, model: Any, step: Callable[..., Any] | None = None) -> None:
        super().__init__(model, step=step)


class StaticDecoder(CachedDecoder):
    """A static-cache backend: `cache_factory(rows, tokens)` gives a fixed-size cache (e.g. a transformers
    StaticCache) and `step` runs the one-token steps (plain, compiled or CUDA-graphed forward)."""

    def __init__(self, model: Any, cache_factory: Callable[[int, int], Any], step: Callable[..., Any]) -> None:
        super().__init__(model, cache_factory, step)
