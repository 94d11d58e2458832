"""Building CAA steering vectors: mean difference of activations over contrastive A/B pairs.

Batched and packed. The prompts of a batch share the chat template's opening, run once into a KV
cache; the two prompts of a pair share every token up to the answer, so each pair is one packed row
(question, positive answer, negative answer) with an attention mask that keeps the two answers apart.
Tokens after the last read position, the LM head and the layers past the deepest requested one are
skipped.

How the per-pair activations become one vector per layer (`method`: mean-diff, the paper's, or pca /
centered): steering.extract.aggregate; the refusal direction from instructions (Arditi et al. 2024):
steering.extract.instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from tqdm.auto import tqdm

from steering.config import ExtractionSettings
from steering.core.datasets import ABItem
from steering.core.limits import model_context_length
from steering.core.prompts import ContrastTokens, common_prefix_length, contrast_tokens, pad_token_id
from steering.core.record import recording, run_truncated
from steering.errors import SteeringError
from steering.extract.aggregate import PAIR_METHODS, aggregate

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class PairTokens:
    """The two tokenized sides of one A/B item, ready for extraction (see tokenize_pairs).

    Attributes:
        positive: the prompt with the behavior-matching answer, and the positions whose activations are read.
        negative: the same with the non-matching answer.
        shared: length in tokens of the common prefix of both sides, run through the model once.
    """

    positive: ContrastTokens  # the behavior-matching answer
    negative: ContrastTokens
    shared: int  # length of the common token prefix that is computed once


def _through_last_read(side: ContrastTokens) -> ContrastTokens:
    # Causal attention: tokens after the last read position cannot change what is read.
    return ContrastTokens(side.input_ids[: max(side.read_positions) + 1], side.read_positions)


def check_request_length(
    tokens: int, context_length: int | None, max_tokens: int | None, what: str, parts: str = "system prompt + request"
) -> None:
    """Refuse a dataset prompt longer than the model's context or the configured cap, before any model run.

    Args:
        tokens: the templated prompt's length in tokens.
        context_length: the model's context in tokens (None: not checked).
        max_tokens: limits.max_prompt_tokens (None: not checked).
        what: names the prompt in the message ('<file>: dataset item 3: the prompt with option (B)').
        parts: what the prompt is made of, for the message.

    Raises:
        SteeringError: one line with `what`, the length and the limit (and the option that sets it).
    """
    if context_length is not None and tokens > context_length:
        raise SteeringError(f"{what} is {tokens} tokens long; the model's context is {context_length} tokens")
    if max_tokens is not None and tokens > max_tokens:
        raise SteeringError(
            f"{what} is {tokens} tokens long ({parts}); the limit is {max_tokens} (limits.max_prompt_tokens)"
        )


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[ABItem],
    read_mode: str,
    system_prompt: str | None = None,
    context_length: int | None = None,
    max_tokens: int | None = None,
    source: str | None = None,
) -> list[PairTokens]:
    """Tokenize each A/B item's two sides for extraction, checking them before any model runs.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        items: the A/B items.
        read_mode: "letter" or "answer-mean" (steering.core.prompts.contrast_tokens).
        system_prompt: a system prompt for the template (None: the template's default).
        context_length: the model's context in tokens (steering.core.limits.model_context_length); None: not checked.
        max_tokens: the configured cap on a prompt's tokens (Limits.max_prompt_tokens); None: not checked.
        source: the dataset file, named at the start of messages (None: not named).

    Returns:
        One PairTokens per item (each side cut after its last read position).

    Raises:
        SteeringError: one line naming the item's index and option: an option with no text or one that
            tokenizes to nothing (answer-mean mode), or a side longer than the model's context or `max_tokens`.
    """
    source = f"{source}: " if source else ""
    pairs = []
    for index, item in enumerate(items):
        sides = []
        for letter in (item.matching, item.not_matching):
            try:
                side = _through_last_read(contrast_tokens(tokenizer, item, letter, read_mode, system_prompt))
            except SteeringError as exc:
                raise SteeringError(f"{source}dataset item {index}: {exc}") from None
            where = f"{source}dataset item {index}: the prompt with option ({letter})"
            check_request_length(
                len(side.input_ids), context_length, max_tokens, where, "system prompt + question + option"
            )
            sides.append(side)
        pos, neg = sides
        # leave each side at least one token of its own
        limit = min(len(pos.input_ids), len(neg.input_ids)) - 1
        pairs.append(PairTokens(pos, neg, common_prefix_length(pos.input_ids, neg.input_ids, limit)))
    return pairs


def _row_length(pair: PairTokens) -> int:
    # the packed row of a pair: its question once, then both answers
    return len(pair.positive.input_ids) + len(pair.negative.input_ids) - pair.shared


def segment_means(records: torch.Tensor, segments: torch.Tensor, count: int) -> torch.Tensor:
    """Mean of the recorded rows per segment.

    Args: records (rows, hidden); segments (rows,) long, values in 0..count-1. Returns: (count, hidden).
    """
    sums = torch.zeros(count, records.shape[-1]).index_add_(0, segments, records)
    sizes = torch.zeros(count).index_add_(0, segments, torch.ones(len(segments)))
    return sums / sizes[:, None]


@torch.inference_mode()
def pair_activations(
    model: PreTrainedModel, pairs: Sequence[PairTokens], layers: Sequence[int], pad_id: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """For one batch of pairs: {layer: (positive means, negative means)}, each (pairs, hidden).

    Two stages share one KV cache: (0) the prefix common to every prompt of the batch (system prompt,
    template), once; (1) one packed row per pair: its question, then the positive side's own tokens,
    then the negative side's, each side at its true positions. A 4D attention mask lets each side see
    the common prefix, the question and its own earlier tokens, never the other side. So every token
    is computed once, padding is only the tail of the shorter rows, and each read activation equals
    running that prompt on its own.
    """
    from transformers import DynamicCache  # lazy: this module imports torch only, not transformers

    device = next(model.parameters()).device
    n = len(pairs)
    sides = [side for p in pairs for side in (p.positive, p.negative)]  # segment 2i: positive, 2i+1: negative
    first_read = min(min(side.read_positions) for side in sides)
    common = min(first_read, min(p.shared for p in pairs))
    for side in sides[1:]:
        common = common_prefix_length(sides[0].input_ids, side.input_ids, common)

    width = max(_row_length(p) for p in pairs) - common
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    positions = torch.full((n, width), common, dtype=torch.long)
    # rows attend to the cached common prefix; padding also only to that, so no row is fully masked
    mask = torch.zeros((n, 1, width, common + width), dtype=torch.bool)
    mask[..., :common] = True
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    reads: list[tuple[int, int, int]] = []  # (row, column, segment)
    for i, pair in enumerate(pairs):
        question = pair.positive.input_ids[common : pair.shared]
        q = len(question)
        ids[i, :q] = torch.tensor(question, dtype=torch.long)
        positions[i, :q] = torch.arange(common, pair.shared)
        mask[i, 0, :q, common : common + q] = causal[:q, :q]
        start = q
        for j, side in enumerate((pair.positive, pair.negative)):
            own = side.input_ids[pair.shared :]
            span = slice(start, start + len(own))
            ids[i, span] = torch.tensor(own, dtype=torch.long)
            positions[i, span] = torch.arange(pair.shared, pair.shared + len(own))
            mask[i, 0, span, common : common + q] = True
            mask[i, 0, span, common + start : common + start + len(own)] = causal[: len(own), : len(own)]
            for position in side.read_positions:
                column = position - common if position < pair.shared else start + position - pair.shared
                reads.append((i, column, 2 * i + j))
            start += len(own)

    with recording(model, layers) as recorder:
        cache = DynamicCache(config=model.config)
        if common > 0:
            recorder.select(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
            run_truncated(
                model,
                input_ids=torch.tensor([sides[0].input_ids[:common]], device=device),
                attention_mask=torch.ones((1, common), dtype=torch.long, device=device),
                position_ids=torch.arange(common, device=device)[None],
                cache=cache,
                use_cache=True,
            )
            cache.batch_repeat_interleave(n)
        recorder.select(torch.tensor([r[0] for r in reads]), torch.tensor([r[1] for r in reads]))
        run_truncated(
            model,
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            cache=cache,
            use_cache=True,
        )

    segments = torch.tensor([r[2] for r in reads], dtype=torch.long)
    return {
        layer: (means[0::2], means[1::2])
        for layer in recorder.layers
        for means in (segment_means(recorder.records[layer], segments, 2 * n),)
    }


def extract_vectors(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[ABItem],
    layers: Sequence[int],
    read_mode: str,
    batch_size: int = ExtractionSettings.batch_size,
    system_prompt: str | None = None,
    progress: bool = True,
    method: str = "mean-diff",
    max_prompt_tokens: int | None = None,
    source: str | None = None,
) -> dict[int, torch.Tensor]:
    """One steering vector per requested layer from contrastive A/B pairs (CAA vector extraction).

    The method of Rimsky et al. 2023 (arXiv 2312.06681, section 3): for each pair, the residual-stream
    activation (a decoder block's output) at the answer with the behavior-matching option minus the
    one with the non-matching option, averaged over all pairs (`method` "mean-diff"). "pca" and
    "centered" are alternative aggregators of the same per-pair differences (steering.extract.aggregate).
    Every item is tokenized and checked (tokenize_pairs) before the model runs.

    Args:
        model: a transformers causal LM (PreTrainedModel) with Llama-style decoder blocks.
        tokenizer: its tokenizer (PreTrainedTokenizerBase), with a chat template.
        items: the A/B pairs (load_ab_dataset); "centered" needs at least 2.
        layers: 0-based decoder block indices to read (each < the model's num_layers).
        read_mode: "letter" (the paper: choices in the question, read at the answer letter token) or
            "answer-mean" (the option's text as the reply, the mean over its tokens).
        batch_size: pairs per forward pass (each pair is one packed row); >= 1.
        system_prompt: system prompt for the chat template (None: the template's default).
        progress: show a tqdm progress bar (pairs).
        method: the aggregator, one of PAIR_METHODS: "mean-diff" (CAA, default), "pca", "centered".
        max_prompt_tokens: cap on each side's templated prompt in tokens (Limits.max_prompt_tokens);
            None: only the model's context is checked.
        source: the dataset file, named at the start of error messages (None: not named).

    Returns:
        dict[int, torch.Tensor]: {layer: vector} for every requested layer, each (hidden_size,) float32
        on the CPU, in residual-stream units (a multiplier of 1 adds it once).

    Raises:
        SteeringError: an item that cannot be tokenized (answer-mean mode: an option with no text) or a
            side longer than the model's context or `max_prompt_tokens`; the message names `source`, the
            item index and the option.
        ValueError: an unknown `method` or `read_mode`; "centered" with fewer than 2 pairs.

    Example:
        >>> items = load_ab_dataset("datasets/refusal/generate.json")  # doctest: +SKIP
        >>> vecs = extract_vectors(lm.model, lm.tokenizer, items, [9], "letter")  # doctest: +SKIP
        >>> vecs[9].shape  # doctest: +SKIP
        torch.Size([576])
    """
    if method not in PAIR_METHODS:
        raise ValueError(f"unknown aggregation method {method!r} (expected one of {', '.join(PAIR_METHODS)})")
    context = model_context_length(model)
    pairs = tokenize_pairs(tokenizer, items, read_mode, system_prompt, context, max_prompt_tokens, source)
    # Batching pairs of similar packed length keeps the padding small; the mean does not depend on the order.
    order = sorted(range(len(pairs)), key=lambda k: (_row_length(pairs[k]), pairs[k].shared))
    pad_id = pad_token_id(tokenizer)
    positives: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    negatives: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    with tqdm(total=len(pairs), desc="extracting", unit="pair", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = [pairs[k] for k in order[start : start + batch_size]]
            for layer, (pos, neg) in pair_activations(model, batch, layers, pad_id).items():
                positives[layer].append(pos)
                negatives[layer].append(neg)
            bar.update(len(batch))
    return {layer: aggregate(torch.cat(positives[layer]), torch.cat(negatives[layer]), method) for layer in layers}
