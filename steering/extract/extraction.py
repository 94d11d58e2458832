"""Building CAA steering vectors: mean difference of activations over contrastive A/B pairs.

Batched and packed. The prompts of a batch share the chat template's opening, run once into a KV
cache; the two prompts of a pair share every token up to the answer, so each pair is one packed row
(question, positive answer, negative answer) with an attention mask that keeps the two answers apart.
Tokens after the last read position, the LM head and the layers past the deepest requested one are
skipped.

How the per-pair activations become one vector per layer (`method`, stored in the vector file):

* ``mean-diff`` (the paper's, the reference): mean over pairs of (positive - negative) (CAA, Rimsky et
  al. 2023, arXiv 2312.06681).
* ``pca``: the first principal component of the per-pair differences, uncentred (the same as PCA of
  the pair-centred activations: each side minus its pair's mean is +-d/2), as steering-vectors'
  ``pca_aggregator`` and repeng's ``pca_center`` compute it; sign fixed to agree with the mean
  difference, scaled to its norm.
* ``centered``: the first principal component of the mean-centred differences (each difference minus
  the mean difference: the direction in which the pairs differ most from one another, repeng's
  ``pca_diff`` with scikit-learn's centring); sign fixed to agree with the mean difference, scaled to
  its norm.
* ``instructions``: not from A/B pairs: mean activation over harmful requests minus mean over
  harmless ones, read at the post-instruction positions (the chat template's tokens after the user's
  request), the refusal direction of Arditi et al. 2024, "Refusal in language models is mediated by a
  single direction" (arXiv 2406.11717), section 2.3 (instruction_direction below).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from steering.config import ExtractionSettings
from steering.core.datasets import ABItem
from steering.core.limits import model_context_length
from steering.core.prompts import ContrastTokens, build_messages, common_prefix_length, contrast_tokens, pad_token_id
from steering.core.record import recording, run_truncated
from steering.errors import SteeringError


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


def tokenize_pairs(
    tokenizer: Any,
    items: Sequence[ABItem],
    read_mode: str,
    system_prompt: str | None = None,
    context_length: int | None = None,
    max_tokens: int | None = None,
) -> list[PairTokens]:
    """Tokenize each A/B item's two sides for extraction, checking them before any model runs.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        items: the A/B items.
        read_mode: "letter" or "answer-mean" (steering.core.prompts.contrast_tokens).
        system_prompt: a system prompt for the template (None: the template's default).
        context_length: the model's context in tokens (steering.core.limits.model_context_length); None: not checked.
        max_tokens: the configured cap on a prompt's tokens (Limits.max_prompt_tokens); None: not checked.

    Returns:
        One PairTokens per item (each side cut after its last read position).

    Raises:
        SteeringError: one line naming the item's index and option: an option with no text or one that
            tokenizes to nothing (answer-mean mode), or a side longer than the model's context.
    """
    pairs = []
    for index, item in enumerate(items):
        sides = []
        for letter in (item.matching, item.not_matching):
            try:
                side = _through_last_read(contrast_tokens(tokenizer, item, letter, read_mode, system_prompt))
            except SteeringError as exc:
                raise SteeringError(f"dataset item {index}: {exc}") from None
            if context_length is not None and len(side.input_ids) > context_length:
                raise SteeringError(
                    f"dataset item {index}: the prompt with option ({letter}) is {len(side.input_ids)} "
                    f"tokens long; the model's context is {context_length} tokens"
                )
            if max_tokens is not None and len(side.input_ids) > max_tokens:
                raise SteeringError(
                    f"dataset item {index}: the prompt with option ({letter}) is {len(side.input_ids)} "
                    f"tokens long (system prompt + question + option); the limit is {max_tokens} "
                    "(limits.max_prompt_tokens)"
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


PAIR_METHODS = ("mean-diff", "pca", "centered")  # aggregators of A/B pair activations
METHODS = PAIR_METHODS + ("instructions",)


def mean_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """CAA aggregation: mean over pairs of (behavior - not behavior)."""
    return (positive - negative).mean(dim=0)


def _first_component(rows: torch.Tensor) -> torch.Tensor:
    # the top right-singular vector of rows (n, hidden): the unit direction of largest uncentred variance
    _, _, vh = torch.linalg.svd(rows.double(), full_matrices=False)
    return vh[0].float()


def _sign_fixed(direction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # a principal component has no sign: point it the way the mean difference points, give it that norm
    sign = -1.0 if float(direction @ reference) < 0 else 1.0
    return sign * direction * reference.norm()


def pca_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """First principal component of the per-pair differences d_i = positive_i - negative_i (uncentred).

    The same direction as PCA of the pair-centred activations (positive_i - m_i = d_i / 2 and
    negative_i - m_i = -d_i / 2 with m_i the pair's mean): steering-vectors' ``pca_aggregator``, repeng's
    ``pca_center``. A component has no sign: it is flipped to agree with the mean difference and scaled
    to the mean difference's norm, so a multiplier means about the same as for ``mean_difference``.

    Args: positive, negative (pairs, hidden). Returns: (hidden,) float32.
    """
    diffs = (positive - negative).float()
    return _sign_fixed(_first_component(diffs), diffs.mean(dim=0))


def centered_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """First principal component of the mean-centred differences d_i - mean(d).

    The direction in which the pairs' differences vary most around their mean (repeng's ``pca_diff``,
    whose scikit-learn PCA centres the data). Sign flipped to agree with the mean difference and scaled
    to its norm (see pca_difference). Needs at least 2 pairs (one centred difference is zero).

    Args: positive, negative (pairs, hidden). Returns: (hidden,) float32.
    Raises: ValueError with fewer than 2 pairs.
    """
    diffs = (positive - negative).float()
    if diffs.shape[0] < 2:
        raise ValueError(f"the centered method needs at least 2 pairs, got {diffs.shape[0]}")
    mean = diffs.mean(dim=0)
    return _sign_fixed(_first_component(diffs - mean), mean)


def aggregate(positive: torch.Tensor, negative: torch.Tensor, method: str = "mean-diff") -> torch.Tensor:
    """One vector from per-pair activations (pairs, hidden) by `method` (one of PAIR_METHODS)."""
    if method == "mean-diff":
        return mean_difference(positive, negative)
    if method == "pca":
        return pca_difference(positive, negative)
    if method == "centered":
        return centered_difference(positive, negative)
    raise ValueError(f"unknown aggregation method {method!r} (expected one of {', '.join(PAIR_METHODS)})")


def _segment_means(records: torch.Tensor, segments: torch.Tensor, count: int) -> torch.Tensor:
    sums = torch.zeros(count, records.shape[-1]).index_add_(0, segments, records)
    sizes = torch.zeros(count).index_add_(0, segments, torch.ones(len(segments)))
    return sums / sizes[:, None]


@torch.inference_mode()
def pair_activations(
    model: Any, pairs: Sequence[PairTokens], layers: Sequence[int], pad_id: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """For one batch of pairs: {layer: (positive means, negative means)}, each (pairs, hidden).

    Two stages share one KV cache: (0) the prefix common to every prompt of the batch (system prompt,
    template), once; (1) one packed row per pair: its question, then the positive side's own tokens,
    then the negative side's, each side at its true positions. A 4D attention mask lets each side see
    the common prefix, the question and its own earlier tokens, never the other side. So every token
    is computed once, padding is only the tail of the shorter rows, and each read activation equals
    running that prompt on its own.
    """
    from transformers import DynamicCache

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
        for means in (_segment_means(recorder.records[layer], segments, 2 * n),)
    }


def extract_vectors(
    model: Any,
    tokenizer: Any,
    items: Sequence[ABItem],
    layers: Sequence[int],
    read_mode: str,
    batch_size: int = ExtractionSettings.batch_size,
    system_prompt: str | None = None,
    progress: bool = True,
    method: str = "mean-diff",
    max_prompt_tokens: int | None = None,
) -> dict[int, torch.Tensor]:
    """One vector per requested layer from all pairs (float32, on the CPU).

    `method` is the aggregator (PAIR_METHODS): mean-diff (CAA, the default), pca or centered; see the
    module docstring. Raises ValueError for an unknown method.
    """
    if method not in PAIR_METHODS:
        raise ValueError(f"unknown aggregation method {method!r} (expected one of {', '.join(PAIR_METHODS)})")
    pairs = tokenize_pairs(tokenizer, items, read_mode, system_prompt, model_context_length(model), max_prompt_tokens)
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


# ---------------------------------------------------------------------------- instruction direction
INSTRUCTION_POSITIONS = ("post", "last")


def post_instruction_tokens(
    tokenizer: Any, request: str, system_prompt: str | None = None, positions: str = "post"
) -> ContrastTokens:
    """The generation prompt of one request and the positions read for the instruction direction.

    `positions`: "post" = every token the chat template puts after the request (for SmolLM2:
    <|im_end|>, newline, <|im_start|>, assistant, newline), Arditi et al.'s post-instruction tokens;
    "last" = the final token only. If the request's end cannot be found as a token boundary, "post"
    falls back to the final token.
    """
    if positions not in INSTRUCTION_POSITIONS:
        raise ValueError(f"unknown positions {positions!r} (expected one of {', '.join(INSTRUCTION_POSITIONS)})")
    messages = build_messages([{"role": "user", "content": request}], system_prompt)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    last = [len(ids) - 1]
    if positions == "last" or not request or request not in text:
        return ContrastTokens(ids, last)
    end = text.rfind(request) + len(request)
    before = tokenizer(text[:end], add_special_tokens=False)["input_ids"]
    if 0 < len(before) < len(ids) and ids[: len(before)] == before:
        return ContrastTokens(ids, list(range(len(before), len(ids))))
    return ContrastTokens(ids, last)


@torch.inference_mode()
def prompt_activations(
    model: Any,
    prompts: Sequence[ContrastTokens],
    layers: Sequence[int],
    pad_id: int,
    batch_size: int = ExtractionSettings.batch_size,
    progress: bool = False,
    desc: str = "reading",
) -> dict[int, torch.Tensor]:
    """{layer: (prompts, hidden)}: each prompt's block output at `layer`, averaged over its read positions.

    Right padding (a causal model's activations at real tokens do not depend on padding after them);
    the forward pass stops after the deepest requested layer. float32 on the CPU.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda k: len(prompts[k].input_ids))
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    with (
        recording(model, layers) as recorder,
        tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress) as bar,
    ):
        for start in range(0, len(order), batch_size):
            batch = [prompts[k] for k in order[start : start + batch_size]]
            width = max(len(p.input_ids) for p in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            rows, cols, segments = [], [], []
            for i, p in enumerate(batch):
                ids[i, : len(p.input_ids)] = torch.tensor(p.input_ids, dtype=torch.long)
                mask[i, : len(p.input_ids)] = 1
                rows += [i] * len(p.read_positions)
                cols += list(p.read_positions)
                segments += [i] * len(p.read_positions)
            recorder.select(torch.tensor(rows), torch.tensor(cols))
            run_truncated(model, input_ids=ids.to(device), attention_mask=mask.to(device))
            seg = torch.tensor(segments, dtype=torch.long)
            for layer in layers:
                out[layer].append(_segment_means(recorder.records[layer], seg, len(batch)))
            bar.update(len(batch))
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))
    return {layer: torch.cat(out[layer])[back] for layer in layers}


def instruction_direction(
    model: Any,
    tokenizer: Any,
    harmful: Sequence[str],
    harmless: Sequence[str],
    layers: Sequence[int],
    batch_size: int = ExtractionSettings.batch_size,
    system_prompt: str | None = None,
    positions: str = "post",
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """The refusal direction from instructions: mean activation over harmful requests minus the mean over
    harmless ones, at the post-instruction positions (Arditi et al. 2024, "Refusal in language models is
    mediated by a single direction", arXiv 2406.11717, section 2.3: difference-in-means at the
    post-instruction tokens). Each request's activations are averaged over its read positions first
    (post_instruction_tokens), then over requests.

    Args: harmful, harmless: request texts (at least one each); layers: block indices;
    positions: "post" or "last". Returns: {layer: (hidden,) float32}.
    Raises: ValueError when a list is empty.
    """
    if not harmful or not harmless:
        raise ValueError(
            f"the instruction direction needs harmful and harmless requests, got {len(harmful)} and {len(harmless)}"
        )
    pad_id = pad_token_id(tokenizer)
    read = lambda texts: [post_instruction_tokens(tokenizer, t, system_prompt, positions) for t in texts]  # noqa: E731
    pos = prompt_activations(model, read(harmful), layers, pad_id, batch_size, progress, "harmful")
    neg = prompt_activations(model, read(harmless), layers, pad_id, batch_size, progress, "harmless")
    return {layer: pos[layer].mean(dim=0) - neg[layer].mean(dim=0) for layer in layers}


def load_instructions(
    path: Any, positive_key: str = "harmful", negative_key: str = "harmless"
) -> tuple[list[str], list[str]]:
    """The two request lists of an instructions file: a JSON object {"harmful": [...], "harmless": [...]}
    (other keys, such as "personal", are allowed and ignored unless named).

    Returns (positive requests, negative requests). Raises SteeringError (one line, naming the file,
    key and item) for a missing file, bad JSON, a missing or empty list, or a non-string / blank item.
    """
    import json
    from pathlib import Path

    from steering.errors import SteeringError

    path = Path(path)
    if not path.exists():
        raise SteeringError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SteeringError(f"{path}: not valid JSON text ({exc})") from None
    if not isinstance(data, dict):
        raise SteeringError(
            f"{path}: expected a JSON object with '{positive_key}' and '{negative_key}' lists, "
            f"found {type(data).__name__}"
        )
    lists = []
    for key in (positive_key, negative_key):
        items = data.get(key)
        if not isinstance(items, list) or not items:
            raise SteeringError(
                f"{path}: '{key}' must be a non-empty list of requests, found "
                f"{type(items).__name__ if items is not None else 'nothing'}"
            )
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise SteeringError(f"{path}: '{key}' item {index}: expected a non-empty string, found {item!r}")
        lists.append(list(items))
    return lists[0], lists[1]
