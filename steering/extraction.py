"""Building CAA steering vectors: mean difference of activations over contrastive A/B pairs.

Batched and padding-aware. The two prompts of a pair share every token up to the answer, so the
shared prefix is run once and only the differing answer tokens are run for each side, on top of
the prefix's KV cache. The LM head and the layers past the deepest requested one are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from steering.datasets import ABItem
from steering.prompts import ContrastTokens, contrast_tokens
from steering.record import recording, run_truncated


@dataclass(frozen=True)
class PairTokens:
    positive: ContrastTokens  # the behavior-matching answer
    negative: ContrastTokens
    shared: int  # length of the common token prefix that is computed once


def tokenize_pairs(tokenizer: Any, items: Sequence[ABItem], read_mode: str,
                   system_prompt: str | None = None) -> list[PairTokens]:
    pairs = []
    for item in items:
        pos = contrast_tokens(tokenizer, item, item.matching, read_mode, system_prompt)
        neg = contrast_tokens(tokenizer, item, item.not_matching, read_mode, system_prompt)
        shared = 0
        limit = min(len(pos.input_ids), len(neg.input_ids)) - 1  # leave each side at least one own token
        while shared < limit and pos.input_ids[shared] == neg.input_ids[shared]:
            shared += 1
        pairs.append(PairTokens(pos, neg, shared))
    return pairs


def mean_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """CAA aggregation: mean over pairs of (behavior - not behavior)."""
    return (positive - negative).mean(dim=0)


def _segment_means(records: torch.Tensor, segments: torch.Tensor, count: int) -> torch.Tensor:
    sums = torch.zeros(count, records.shape[-1]).index_add_(0, segments, records)
    sizes = torch.zeros(count).index_add_(0, segments, torch.ones(len(segments)))
    return sums / sizes[:, None]


@torch.inference_mode()
def pair_activations(model: Any, pairs: Sequence[PairTokens], layers: Sequence[int], pad_id: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """For one batch of pairs: {layer: (positive means, negative means)}, each (pairs, hidden)."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    n = len(pairs)
    width = max(p.shared for p in pairs)
    sides = [side for p in pairs for side in (p.positive, p.negative)]  # row 2i: positive, 2i+1: negative
    suffix_width = max(len(s.input_ids) - p.shared for p in pairs for s in (p.positive, p.negative))

    prefix_ids = torch.full((n, width), pad_id, dtype=torch.long)
    prefix_mask = torch.zeros((n, width), dtype=torch.long)
    suffix_ids = torch.full((2 * n, suffix_width), pad_id, dtype=torch.long)
    suffix_mask = torch.zeros((2 * n, suffix_width), dtype=torch.long)
    suffix_pos = torch.zeros((2 * n, suffix_width), dtype=torch.long)
    prefix_reads: list[tuple[int, int, int]] = []  # (prefix row, column, segment)
    suffix_reads: list[tuple[int, int, int]] = []
    for i, pair in enumerate(pairs):
        start = width - pair.shared  # left padding of the shared prefix
        prefix_ids[i, start:] = torch.tensor(pair.positive.input_ids[: pair.shared])
        prefix_mask[i, start:] = 1
        for j, side in enumerate((pair.positive, pair.negative)):
            row = 2 * i + j
            own = side.input_ids[pair.shared:]
            suffix_ids[row, : len(own)] = torch.tensor(own)  # right padding: pads come after every read
            suffix_mask[row, : len(own)] = 1
            suffix_pos[row] = pair.shared + torch.arange(suffix_width)
            for position in side.read_positions:
                if position < pair.shared:
                    prefix_reads.append((i, start + position, row))
                else:
                    suffix_reads.append((row, position - pair.shared, row))

    results: dict[int, torch.Tensor] = {}
    with recording(model, layers) as recorder:
        cache = DynamicCache(config=model.config)
        if width > 0:
            prefix_rows = torch.tensor([r[0] for r in prefix_reads], dtype=torch.long)
            prefix_cols = torch.tensor([r[1] for r in prefix_reads], dtype=torch.long)
            recorder.select(prefix_rows, prefix_cols)
            run_truncated(model, input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
                          position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0).to(device),
                          cache=cache, use_cache=True)
            prefix_records = recorder.records
            cache.batch_repeat_interleave(2)
        else:
            prefix_records = {}
        recorder.select(torch.tensor([r[0] for r in suffix_reads], dtype=torch.long),
                        torch.tensor([r[1] for r in suffix_reads], dtype=torch.long))
        mask = torch.cat([prefix_mask.repeat_interleave(2, dim=0), suffix_mask], dim=-1)
        run_truncated(model, input_ids=suffix_ids.to(device), attention_mask=mask.to(device),
                      position_ids=suffix_pos.to(device), cache=cache, use_cache=True)
        suffix_records = recorder.records

    segments = torch.tensor([r[2] for r in prefix_reads] + [r[2] for r in suffix_reads], dtype=torch.long)
    out = {}
    for layer in recorder.layers:
        parts = [prefix_records[layer]] if prefix_reads else []
        records = torch.cat(parts + [suffix_records[layer]], dim=0)
        means = _segment_means(records, segments, 2 * n)
        out[layer] = (means[0::2], means[1::2])
    return out


def extract_vectors(
    model: Any,
    tokenizer: Any,
    items: Sequence[ABItem],
    layers: Sequence[int],
    read_mode: str,
    batch_size: int = 16,
    system_prompt: str | None = None,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """One CAA vector per requested layer from all pairs (float32, on the CPU)."""
    pairs = tokenize_pairs(tokenizer, items, read_mode, system_prompt)
    # Sorting by length keeps padding small; the mean does not depend on the order.
    order = sorted(range(len(pairs)), key=lambda k: len(pairs[k].positive.input_ids))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    positives: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    negatives: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    with tqdm(total=len(pairs), desc="extracting", unit="pair", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = [pairs[k] for k in order[start:start + batch_size]]
            for layer, (pos, neg) in pair_activations(model, batch, layers, pad_id).items():
                positives[layer].append(pos)
                negatives[layer].append(neg)
            bar.update(len(batch))
    return {layer: mean_difference(torch.cat(positives[layer]), torch.cat(negatives[layer])) for layer in layers}
