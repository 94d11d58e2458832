"""The prompt batch: each conversation templated, checked against the token caps, the rows' common
prefix found, and the rest left padded (last tokens aligned, absolute positions per row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from steering.core.limits import Limits, check_token_budget, model_context_length
from steering.core.prompts import Message, PromptTokens, build_messages, chat_prompt, common_prefix_length, pad_token_id

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def check_prompt_budget(
    prompt_tokens: Sequence[int], max_new_tokens: int, limits: Limits | None, context: int | None
) -> None:
    """check_token_budget for each row of a batch (rows named when there are several).

    Args:
        prompt_tokens: templated prompt length of each row, in tokens.
        max_new_tokens: tokens asked for per row.
        limits: the configured caps; None checks the context window only.
        context: the model's context window in tokens (None: not checked).

    Raises:
        SteeringError: the first row over a cap, with its length and the cap.
    """
    for row, tokens in enumerate(prompt_tokens):
        what = "the prompt" if len(set(prompt_tokens)) == 1 else f"row {row}'s prompt"  # e.g. 3 panes, 1 prompt
        if limits is None:
            check_token_budget(
                tokens,
                max_new_tokens,
                Limits(max_new_tokens=max(max_new_tokens, 1), max_prompt_tokens=max(tokens, 1)),
                context,
                what,
            )
        else:
            check_token_budget(tokens, max_new_tokens, limits, context, what)


@dataclass
class PromptBatch:
    """The prompts of one generation as model inputs.

    Attributes:
        prompts: each row's templated prompt (prompts.PromptTokens: input_ids, steer_from).
        input_ids: (rows, width) long: the shared prefix, then each row's own tokens left padded.
        attention: (rows, width) long, 1 at real tokens.
        positions: (rows, width) long absolute positions (padding at 0).
        shared: length of the prefix common to every row, computed once for all rows (0: none).
        pad_id: the padding token id.
    """

    prompts: list[PromptTokens]
    input_ids: torch.Tensor
    attention: torch.Tensor
    positions: torch.Tensor
    shared: int
    pad_id: int

    @property
    def rows(self) -> int:
        """The batch size."""
        return len(self.prompts)

    @property
    def width(self) -> int:
        """The padded prompt length, in tokens."""
        return int(self.input_ids.shape[1])

    @property
    def steer_from(self) -> list[int]:
        """Each row's first steered absolute position (the end of its prompt's history)."""
        return [p.steer_from for p in self.prompts]

    @classmethod
    def build(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        conversations: Sequence[Sequence[Message]],
        system_prompt: str | None = None,
        max_new_tokens: int = 1,
        limits: Limits | None = None,
        steered: bool = False,
        share_prefix: bool = True,
    ) -> PromptBatch:
        """Template, check and pad the conversations for `model` (tensors on its device).

        Rows that begin alike (the app's three panes, a template's system prompt) share that prefix: it
        is computed once for all rows before steering starts, so it ends before every row's steer_from
        when `steered`; each row keeps at least one token of its own. `share_prefix` False (a static
        cache has a fixed batch) turns that off.

        Raises:
            ValueError: no conversations.
            SteeringError: a prompt over `limits` or the model's context (check_prompt_budget).
        """
        if not conversations:
            raise ValueError("no conversations to generate for")
        prompts = [chat_prompt(tokenizer, build_messages(conv, system_prompt)) for conv in conversations]
        check_prompt_budget([len(p.input_ids) for p in prompts], max_new_tokens, limits, model_context_length(model))
        return cls.from_prompts(model, prompts, pad_token_id(tokenizer), steered, share_prefix)

    @classmethod
    def from_prompts(
        cls,
        model: PreTrainedModel,
        prompts: Sequence[PromptTokens],
        pad_id: int,
        steered: bool = False,
        share_prefix: bool = True,
    ) -> PromptBatch:
        """Pad already templated (and checked) prompts into one batch, as build() does: e.g. the rows of several
        scheduler requests prefilled together. Args as build(); `steered` keeps the shared prefix before
        every row's steer_from. Raises ValueError: no prompts."""
        if not prompts:
            raise ValueError("no prompts to pad")
        prompts = list(prompts)
        batch = len(prompts)
        shared = 0
        if batch > 1 and share_prefix:
            shared = min(len(p.input_ids) for p in prompts) - 1  # each row keeps a token of its own
            if steered:
                shared = min(shared, min(p.steer_from for p in prompts))
            for prompt in prompts[1:]:
                shared = common_prefix_length(prompts[0].input_ids, prompt.input_ids, shared)
        width = max(len(p.input_ids) for p in prompts)
        input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
        attention = torch.zeros((batch, width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # the shared prefix, then the rest left padded: last tokens aligned
            own = len(prompt.input_ids) - shared
            input_ids[row, :shared] = torch.tensor(prompt.input_ids[:shared], dtype=torch.long)
            input_ids[row, width - own :] = torch.tensor(prompt.input_ids[shared:], dtype=torch.long)
            attention[row, :shared] = 1
            attention[row, width - own :] = 1
        device = next(model.parameters()).device
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        return cls(prompts, input_ids, attention, positions, shared, pad_id)
