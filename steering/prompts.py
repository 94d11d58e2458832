"""Chat-template prompts and the token positions CAA reads from and steers.

Everything goes through the tokenizer's own chat template, so the same code serves Llama-2's
[INST] format and SmolLM2's <|im_start|> format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from steering.datasets import ABItem

Message = dict[str, str]
READ_MODES = ("letter", "answer-mean")


def pad_token_id(tokenizer: Any) -> int:
    """The padding id: the tokenizer's pad token, else its end-of-sequence token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad or 0)


def common_prefix_length(a: Sequence[int], b: Sequence[int], limit: int | None = None) -> int:
    """How many leading tokens a and b share (at most `limit`)."""
    end = min(len(a), len(b)) if limit is None else min(len(a), len(b), limit)
    n = 0
    while n < end and a[n] == b[n]:
        n += 1
    return n


def build_messages(history: Sequence[Message], system_prompt: str | None = None) -> list[Message]:
    messages = [dict(m) for m in history]
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def _ids(tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class PromptTokens:
    input_ids: list[int]
    steer_from: int  # first position steered: the token after the end of the user's last instruction


def chat_prompt(tokenizer: Any, messages: Sequence[Message]) -> PromptTokens:
    """Tokens ready for generation and where steering starts (the assistant part, per the paper)."""
    messages = list(messages)
    ids = _ids(tokenizer, messages, add_generation_prompt=True)
    through_user = _ids(tokenizer, messages, add_generation_prompt=False)
    # Chat templates render "everything up to the user's turn" as a prefix of the generation prompt;
    # if a template does not, fall back to steering only the generated tokens.
    steer_from = len(through_user) if ids[: len(through_user)] == through_user else len(ids)
    return PromptTokens(ids, steer_from)


@dataclass(frozen=True)
class ContrastTokens:
    """One side of an A/B pair: its tokens and which positions are averaged into the activation."""

    input_ids: list[int]
    read_positions: list[int]


def contrast_tokens(
    tokenizer: Any, item: ABItem, letter: str, read_mode: str, system_prompt: str | None = None
) -> ContrastTokens:
    if read_mode == "letter":
        # The paper: the question with its choices as the user turn, "(A)" as the reply,
        # read at position -2 (the letter token).
        prefix = tokenizer.apply_chat_template(
            build_messages([{"role": "user", "content": item.question}], system_prompt),
            tokenize=False,
            add_generation_prompt=True,
        )
        ids = tokenizer(prefix + f"({letter})", add_special_tokens=False)["input_ids"]
        return ContrastTokens(ids, [len(ids) - 2])
    if read_mode == "answer-mean":
        prefix_ids = _ids(tokenizer, build_messages([{"role": "user", "content": item.request}], system_prompt), True)
        answer_ids = tokenizer(item.choices[letter], add_special_tokens=False)["input_ids"]
        ids = prefix_ids + answer_ids
        return ContrastTokens(ids, list(range(len(prefix_ids), len(ids))))
    raise ValueError(f"unknown read mode {read_mode!r} (expected one of {', '.join(READ_MODES)})")
