"""Coherence of generated answers under the unsteered model: the mean per-token negative log-likelihood
(exp of it: the unsteered model's perplexity of the answer). The distinct-n share, the other coherence
measure, is steering.evaluation.refusal.distinct_ngram_share (no model needed)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from steering.core.prompts import build_messages, chat_prompt, pad_token_id


@torch.inference_mode()
def answer_nll(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    answers: Sequence[Sequence[int]],
    system_prompt: str | None = None,
    batch_size: int = 64,
) -> list[float | None]:
    """Mean per-token NLL of each answer (token ids) after its question, under the unsteered model.

    exp(NLL) is the unsteered model's perplexity of the answer: it rises when steering makes the text
    stop looking like language (it stays low for a fluent refusal, and for a loop: pair it with the
    distinct-n share). Empty answers give None. Each question's prompt runs once into a KV cache
    shared by all its answers; only the answer positions go through the LM head.
    """
    from transformers import DynamicCache  # lazy: transformers is slow to import; this module needs only torch

    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    base = getattr(model, "model", model)
    pad_id = pad_token_id(tokenizer)
    groups: dict[str, list[int]] = {}
    for i, (question, answer) in enumerate(zip(questions, answers)):
        if answer:
            groups.setdefault(question, []).append(i)
    prompt_ids = {
        q: chat_prompt(tokenizer, build_messages([{"role": "user", "content": q}], system_prompt)).input_ids
        for q in groups
    }
    out: list[float | None] = [None] * len(answers)
    # chunks of whole questions, up to `batch_size` answer rows each
    chunks: list[list[str]] = [[]]
    for q in sorted(groups, key=lambda q: len(prompt_ids[q])):
        if chunks[-1] and sum(len(groups[c]) for c in chunks[-1]) + len(groups[q]) > batch_size:
            chunks.append([])
        chunks[-1].append(q)
    for chunk in chunks:
        width = max(len(prompt_ids[q]) for q in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, q in enumerate(chunk):
            ids[row, width - len(prompt_ids[q]) :] = torch.tensor(prompt_ids[q])
            mask[row, width - len(prompt_ids[q]) :] = 1
        cache = DynamicCache(config=model.config)
        last = base(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            cache=cache,
            use_cache=True,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
        ).last_hidden_state[:, -1]
        rows = [(k, i) for k, q in enumerate(chunk) for i in groups[q]]
        select = torch.tensor([k for k, _ in rows])
        cache.batch_select_indices(select.to(device))
        span = max(len(answers[i]) for _, i in rows)
        ans_ids = torch.full((len(rows), span), pad_id, dtype=torch.long)
        ans_mask = torch.zeros((len(rows), span), dtype=torch.long)
        ans_pos = torch.zeros((len(rows), span), dtype=torch.long)
        for row, (k, i) in enumerate(rows):
            n, start = len(answers[i]), len(prompt_ids[chunk[k]])
            ans_ids[row, span - n :] = torch.tensor(list(answers[i]))  # pads between prompt and answer, masked
            ans_mask[row, span - n :] = 1
            ans_pos[row] = start
            ans_pos[row, span - n :] = start + torch.arange(n)
        hidden = base(
            input_ids=ans_ids.to(device),
            attention_mask=torch.cat([mask[select], ans_mask], -1).to(device),
            position_ids=ans_pos.to(device),
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        for row, (k, i) in enumerate(rows):
            n = len(answers[i])
            # answer token t is predicted from the hidden state before it: the prompt's last for t = 0
            states = torch.cat([last[k : k + 1], hidden[row, span - n : span - 1]], dim=0)
            logits = head(states).float()
            target = torch.tensor(list(answers[i]), device=logits.device)
            out[i] = float(torch.nn.functional.cross_entropy(logits, target))
    return out
