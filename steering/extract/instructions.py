"""The refusal direction from instructions (method ``instructions``): mean activation over harmful requests
minus mean over harmless ones, read at the post-instruction positions (the chat template's tokens after the
user's request); Arditi et al. 2024, "Refusal in language models is mediated by a single direction"
(arXiv 2406.11717), section 2.3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, cast

import torch
from tqdm.auto import tqdm

from steering.config import ExtractionSettings
from steering.core.limits import model_context_length
from steering.core.prompts import ContrastTokens, build_messages, pad_token_id
from steering.core.record import recording, run_truncated
from steering.errors import SteeringError
from steering.extract.extraction import check_request_length, segment_means

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

INSTRUCTION_POSITIONS = ("post", "last")


def post_instruction_tokens(
    tokenizer: PreTrainedTokenizerBase, request: str, system_prompt: str | None = None, positions: str = "post"
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
    text = cast(str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
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
    model: PreTrainedModel,
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
                out[layer].append(segment_means(recorder.records[layer], seg, len(batch)))
            bar.update(len(batch))
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))
    return {layer: torch.cat(out[layer])[back] for layer in layers}


def instruction_direction(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    harmful: Sequence[str],
    harmless: Sequence[str],
    layers: Sequence[int],
    batch_size: int = ExtractionSettings.batch_size,
    system_prompt: str | None = None,
    positions: str = "post",
    progress: bool = True,
    max_prompt_tokens: int | None = None,
    source: str | None = None,
) -> dict[int, torch.Tensor]:
    """The refusal direction from instructions: mean activation over harmful requests minus the mean over
    harmless ones, at the post-instruction positions (Arditi et al. 2024, "Refusal in language models is
    mediated by a single direction", arXiv 2406.11717, section 2.3: difference-in-means at the
    post-instruction tokens). Each request's activations are averaged over its read positions first
    (post_instruction_tokens), then over requests.

    Args: harmful, harmless: request texts (at least one each); layers: block indices;
    positions: "post" or "last"; max_prompt_tokens: the configured cap on a prompt's tokens
    (Limits.max_prompt_tokens; None: not checked); source: the instructions file, named in messages.
    Returns: {layer: (hidden,) float32}.
    Raises: ValueError when a list is empty; SteeringError (one line: file, harmful/harmless request index,
    length, cap) when a request's prompt is longer than the model's context or max_prompt_tokens, before
    the model runs.
    """
    source = f"{source}: " if source else ""
    if not harmful or not harmless:
        raise ValueError(
            f"the instruction direction needs harmful and harmless requests, got {len(harmful)} and {len(harmless)}"
        )
    pad_id = pad_token_id(tokenizer)
    read = lambda texts: [post_instruction_tokens(tokenizer, t, system_prompt, positions) for t in texts]  # noqa: E731
    harmful_tokens, harmless_tokens = read(harmful), read(harmless)
    # every request's length before any model run (as extract_vectors' tokenize_pairs)
    context = model_context_length(model)
    for kind, prompts in (("harmful", harmful_tokens), ("harmless", harmless_tokens)):
        for index, prompt in enumerate(prompts):
            check_request_length(
                len(prompt.input_ids), context, max_prompt_tokens, f"{source}{kind} request {index}: the prompt"
            )
    pos = prompt_activations(model, harmful_tokens, layers, pad_id, batch_size, progress, "harmful")
    neg = prompt_activations(model, harmless_tokens, layers, pad_id, batch_size, progress, "harmless")
    return {layer: pos[layer].mean(dim=0) - neg[layer].mean(dim=0) for layer in layers}


def load_instructions(
    path: Any, positive_key: str = "harmful", negative_key: str = "harmless"
) -> tuple[list[str], list[str]]:
    """The two request lists of an instructions file: a JSON object {"harmful": [...], "harmless": [...]}
    (other keys, such as "personal", are allowed and ignored unless named).

    Returns (positive requests, negative requests). Raises SteeringError (one line, naming the file,
    key and item) for a missing file, bad JSON, a missing or empty list, or a non-string / blank item.
    """
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
