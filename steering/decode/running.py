"""The scheduler's running batch: the rows of every request decoding together, in one transformers
DynamicCache merged along the batch, with each row's next input token, position and attention mask."""

from __future__ import annotations

from typing import Any

import torch

from steering.decode.batch_steering import BatchSteering, cache_layers, left_pad


class RunningBatch:
    """Rows decoding together (steering/decode/scheduler.py).

    Args:
        cache: a DynamicCache holding every row's tokens so far.
        ids: (rows, 1) long, each row's next input token.
        pos: (rows, 1) long, its absolute position.
        mask: (rows, cache length) long attention mask, 1 at real tokens (left padding is 0).
    """

    def __init__(self, cache: Any, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor) -> None:
        self.cache, self.ids, self.pos, self.mask = cache, ids, pos, mask

    @property
    def rows(self) -> int:
        """The rows in the batch."""
        return int(self.ids.shape[0])

    def merge(self, other: RunningBatch) -> None:
        """Append `other`'s rows after these (both left-padded to one cache length)."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(cache_layers(self.cache), cache_layers(other.cache)):
            mine.keys = torch.cat([left_pad(mine.keys, width, -2), left_pad(theirs.keys, width, -2)])
            mine.values = torch.cat([left_pad(mine.values, width, -2), left_pad(theirs.values, width, -2)])
        self.mask = torch.cat([left_pad(self.mask, width, 1), left_pad(other.mask, width, 1)])
        self.ids = torch.cat([self.ids, other.ids])
        self.pos = torch.cat([self.pos, other.pos])

    def steering(self, model: Any, groups: list[tuple[int, int, Any, list[int], Any]]) -> BatchSteering:
        """The hooks of one step: each request's plan (and meter) on its own rows (batch_steering.BatchSteering;
        groups: (start, stop, plan, steer_from, meter) per request, in row order)."""
        return BatchSteering(model, groups)

    def forward(self, model: Any) -> torch.Tensor:
        """One decoding step of every row (under the caller's hooks); returns the (rows, vocab) float32 logits.
        The mask gains the column of the token fed now only when the forward pass succeeds."""
        mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        out = model(
            input_ids=self.ids,
            attention_mask=mask,
            position_ids=self.pos,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.mask = mask
        return out.logits[:, -1, :].float()

    def advance(self, next_ids: torch.Tensor) -> None:
        """The next step's inputs: (rows, 1) tokens, at the next positions."""
        self.ids = next_ids
        self.pos = self.pos + 1

    def drop(self, start: int, count: int) -> None:
        """Remove rows start .. start + count - 1 (cache, inputs, mask); trim padding no row needs any more."""
        total = self.mask.shape[0]
        keep = torch.tensor([i for i in range(total) if not start <= i < start + count], device=self.mask.device)
        mask = self.mask.index_select(0, keep)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else 0  # leading columns that are padding in every row
        self.mask = mask[:, first:]
        self.ids = self.ids.index_select(0, keep)
        self.pos = self.pos.index_select(0, keep)
        for layer in cache_layers(self.cache):
            rows = keep.to(layer.keys.device)  # device_map models: each layer's cache on its own device
            layer.keys = layer.keys.index_select(0, rows)[..., first:, :]
            layer.values = layer.values.index_select(0, rows)[..., first:, :]
