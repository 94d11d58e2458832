"""The A/B measure's prompts (Rimsky et al. 2023, section 4): each question tokenized as the chat prompt the
model would answer, ending in "(", split where steering starts (the engine's position rule), with the token
id of each choice letter. Used by steering.evaluation.ab (the measure) and the app's Calibrate tab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from steering.core.datasets import ABItem
from steering.core.prompts import answer_letter_tokens, build_messages, chat_prompt
from steering.errors import SteeringError


@dataclass(frozen=True)
class ABPrompt:
    """One A/B question split where steering starts."""

    prefix: list[int]  # unsteered: everything through the user's turn
    suffix: list[int]  # steered: the assistant header (or the instruction's last token) and "(" (read next)
    letter_ids: dict[str, int]  # choice letter -> token id of the letter after "("
    matching: str

    @property
    def input_ids(self) -> list[int]:
        """The whole prompt's token ids: `prefix` (unsteered) followed by `suffix` (steered)."""
        return self.prefix + self.suffix


def ab_prompts(
    tokenizer: Any,
    items: Sequence[ABItem],
    system_prompt: str | None = None,
    context_length: int | None = None,
    max_tokens: int | None = None,
) -> list[ABPrompt]:
    """Tokenize the A/B questions for the measure (Rimsky et al. 2023, section 4).

    Each prompt is the chat prompt the model would answer (steering.core.prompts.chat_prompt: the same tokens
    and the same first steered position as in generation) followed by the reply's opening "(", tokenized
    on its own (prompts.answer_letter_tokens); the letter tokens are those that follow that opening. So
    the measure does not depend on how the template's last characters and "(A" would tokenize joined
    (Llama-2's "[/INST](A" merges into "…INST", "](", "A"); with SentencePiece vocabularies the reply
    reads "[/INST] (", the paper's own prompt.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        items: the A/B items (their choice letters; items without option lines use the two answers' letters).
        system_prompt: a system prompt for the template (None: the template's default).
        context_length: the model's context in tokens (steering.core.limits.model_context_length); a prompt
            longer than it is refused before the model runs (None: not checked).
        max_tokens: the configured cap on a prompt's tokens (Limits.max_prompt_tokens; None: not checked).

    Returns:
        One ABPrompt per item, in order.

    Raises:
        SteeringError: naming the item's index, when its letters cannot be told apart as tokens or its
            prompt does not fit the context.
    """
    prompts = []
    openings: dict[tuple[str, ...], tuple[list[int], dict[str, int]]] = {}
    for index, item in enumerate(items):
        letters = tuple(item.letters)
        if letters not in openings:
            try:
                openings[letters] = answer_letter_tokens(tokenizer, letters)
            except SteeringError as exc:
                raise SteeringError(f"A/B item {index}: {exc}") from None
        opening, letter_ids = openings[letters]
        prompt = chat_prompt(tokenizer, build_messages([{"role": "user", "content": item.question}], system_prompt))
        ids = prompt.input_ids + opening
        if context_length is not None and len(ids) > context_length:
            raise SteeringError(
                f"A/B item {index}: the prompt is {len(ids)} tokens long; the model's context is "
                f"{context_length} tokens"
            )
        if max_tokens is not None and len(ids) > max_tokens:
            raise SteeringError(
                f"A/B item {index}: the prompt is {len(ids)} tokens long (system prompt + question); "
                f"the limit is {max_tokens} (limits.max_prompt_tokens)"
            )
        prompts.append(ABPrompt(ids[: prompt.steer_from], ids[prompt.steer_from :], dict(letter_ids), item.matching))
    return prompts
