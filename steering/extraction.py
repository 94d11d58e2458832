"""Building CAA steering vectors: mean difference of activations over contrastive A/B pairs.

Batched and padding-aware. The prompts of a batch share the chat template's opening, and the two
prompts of a pair share every token up to the answer: shared tokens are run once and only the
differing answer tokens are run for each side, on top of the KV cache. Tokens after the last read
position, the LM head and the layers past the deepest requested one are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from steering.datasets import ABItem
from steering.prompts import ContrastTokens, common_prefix_length, contrast_tokens, pad_token_id
from steering.record import recording, run_truncated


@dataclass(frozen=True)
class PairTokens:
    positive: ContrastTokens  # the behavior-matching answer
    negative: ContrastTokens
    shared: int  # length of the common token prefix that is computed once


def _through_last_read(side: ContrastTokens) -> ContrastTokens:
    # Causal attention: tokens after the last read position cannot change what is read.
    return ContrastTokens(side.input_ids[: max(side.read_positions) + 1], side.read_positions)


def tokenize_pairs(tokenizer: Any, items: Sequence[ABItem], read_mode: str,
                   system_prompt: str | None = None) -> list[PairTokens]:
    pairs = []
    for item in items:
        pos = _through_last_read(contrast_tokens(tokenizer, item, item.matching, read_mode, system_prompt))
        neg = _through_last_read(contrast_tokens(tokenizer, item, item.not_matching, read_mode, system_prompt))
        # leave each side at least one token of its own
        limit = min(len(pos.input_ids), len(neg.input_ids)) - 1
        pairs.append(PairTokens(pos, neg, common_prefix_length(pos.input_ids, neg.input_ids, limit)))
    return pairs


def _own_length(pair: PairTokens) -> int:
    return max(len(pair.positive.input_ids), len(pair.negative.input_ids)) - pair.shared


def mean_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """CAA aggregation: mean over pairs of (behavior - not behavior)."""
    return (positive - negative).mean(dim=0)


def _segment_means(records: torch.Tensor, segments: torch.Tensor, count: int) -> torch.Tensor:
    sums = torch.zeros(count, records.shape[-1]).index_add_(0, segments, records)
    sizes = torch.zeros(count).index_add_(0, segments, torch.ones(len(segments)))
    return sums / sizes[:, None]


@torch.inference_mode()
def pair_activations(model: Any, pairs: Sequence[PairTokens], layers: Sequence[int],
                     pad_id: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """For one batch of pairs: {layer: (positive means, negative means)}, each (pairs, hidden).

    Three stages share one KV cache: (0) the prefix common to every prompt of the batch (system
    prompt, template) once; (1) each pair's own shared prefix (its question), once per pair;
    (2) each side's answer tokens. Every token is computed once, and results match running each
    prompt on its own (the attention mask hides the padding between stages).
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    n = len(pairs)
    sides = [side for p in pairs for side in (p.positive, p.negative)]  # row 2i: positive, 2i+1: negative
    first_read = min(min(side.read_positions) for side in sides)
    common = min(first_read, min(p.shared for p in pairs))
    for side in sides[1:]:
        common = common_prefix_length(sides[0].input_ids, side.input_ids, common)

    # stage 1: the rest of each pair's shared prefix, left padded (pads sit between stages 0 and 1)
    width = max(p.shared for p in pairs) - common
    prefix_ids = torch.full((n, width), pad_id, dtype=torch.long)
    prefix_mask = torch.zeros((n, width), dtype=torch.long)
    prefix_pos = torch.full((n, width), common, dtype=torch.long)
    # stage 2: each side's own tokens, right padded (pads come after every read)
    suffix_width = max(_own_length(p) for p in pairs)
    suffix_ids = torch.full((2 * n, suffix_width), pad_id, dtype=torch.long)
    suffix_mask = torch.zeros((2 * n, suffix_width), dtype=torch.long)
    suffix_pos = torch.zeros((2 * n, suffix_width), dtype=torch.long)
    prefix_reads: list[tuple[int, int, int]] = []  # (stage-1 row, column, segment)
    suffix_reads: list[tuple[int, int, int]] = []
    for i, pair in enumerate(pairs):
        own_prefix = pair.positive.input_ids[common: pair.shared]
        start = width - len(own_prefix)
        prefix_ids[i, start:] = torch.tensor(own_prefix, dtype=torch.long)
        prefix_mask[i, start:] = 1
        prefix_pos[i, start:] = torch.arange(common, pair.shared)
        for j, side in enumerate((pair.positive, pair.negative)):
            row = 2 * i + j
            own = side.input_ids[pair.shared:]
            suffix_ids[row, : len(own)] = torch.tensor(own, dtype=torch.long)
            suffix_mask[row, : len(own)] = 1
            suffix_pos[row] = pair.shared + torch.arange(suffix_width)
            for position in side.read_positions:
                if position < pair.shared:
                    prefix_reads.append((i, start + position - common, row))
                else:
                    suffix_reads.append((row, position - pair.shared, row))

    def rows_cols(reads: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor([r[0] for r in reads], dtype=torch.long),
                torch.tensor([r[1] for r in reads], dtype=torch.long))

    records: list[dict[int, torch.Tensor]] = []
    with recording(model, layers) as recorder:
        cache = DynamicCache(config=model.config)
        mask = torch.ones((1, common), dtype=torch.long)
        if common > 0:
            recorder.select(*rows_cols([]))
            run_truncated(model, input_ids=torch.tensor([sides[0].input_ids[:common]], device=device),
                          attention_mask=mask.to(device), position_ids=torch.arange(common, device=device)[None],
                          cache=cache, use_cache=True)
            cache.batch_repeat_interleave(n)
        mask = torch.cat([mask.expand(n, -1), prefix_mask], dim=-1)
        if width > 0:
            recorder.select(*rows_cols(prefix_reads))
            run_truncated(model, input_ids=prefix_ids.to(device), attention_mask=mask.to(device),
                          position_ids=prefix_pos.to(device), cache=cache, use_cache=True)
            records.append(recorder.records)
        cache.batch_repeat_interleave(2)
        mask = torch.cat([mask.repeat_interleave(2, dim=0), suffix_mask], dim=-1)
        recorder.select(*rows_cols(suffix_reads))
        run_truncated(model, input_ids=suffix_ids.to(device), attention_mask=mask.to(device),
                      position_ids=suffix_pos.to(device), cache=cache, use_cache=True)
        records.append(recorder.records)

    segments = torch.tensor([r[2] for r in prefix_reads + suffix_reads], dtype=torch.long)
    out = {}
    for layer in recorder.layers:
        stacked = torch.cat([part[layer] for part in records], dim=0)
        means = _segment_means(stacked, segments, 2 * n)
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
    # Batching pairs of similar answer length, then question length, keeps padding small (the answers
    # are most of the work in answer-mean mode); the mean does not depend on the order.
    order = sorted(range(len(pairs)), key=lambda k: (_own_length(pairs[k]), pairs[k].shared))
    pad_id = pad_token_id(tokenizer)
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
