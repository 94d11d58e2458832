"""Chat-template prompts and the token positions CAA reads from and steers.

Everything goes through the tokenizer's own chat template, so the same code serves Llama-2's
[INST] format and SmolLM2's <|im_start|> format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, cast

from steering.core.datasets import READ_MODES, ABItem
from steering.errors import SteeringError

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedTokenizerBase

Message = dict[str, str]


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
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
    """A copy of the chat history with `system_prompt` put first, unless it already starts with a system turn.

    Args:
        history: messages {"role": ..., "content": ...} in order.
        system_prompt: text of the system turn (None or "": none added).

    Returns:
        A new list of new message dicts (the input is not changed).
    """
    messages = [dict(m) for m in history]
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def _ids(tokenizer: PreTrainedTokenizerBase, messages: list[Message], add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class PromptTokens:
    """A prompt's token ids and where steering starts (see chat_prompt).

    Attributes:
        input_ids: the chat-template prompt, as token ids.
        steer_from: first token position steered: the end of the user's last instruction (Rimsky et al. 2023,
            arXiv 2312.06681, section 3: steering is added at every position after the instruction).
    """

    input_ids: list[int]
    steer_from: int  # first position steered: the end of the user's last instruction (see chat_prompt)


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> PromptTokens:
    """Tokens ready for generation and the first position to steer (Rimsky et al. 2023, section 3).

    The paper steers every position from the end of the user's instruction on: with Llama-2-chat, from
    the last token of "[/INST]" (the original code's `find_instruction_end_postion`, positions >= it).
    The rule here, for any template: render the conversation with and without the generation prompt;

    - a template with an assistant header (ChatML, Llama-3, Gemma) renders the user's turn as a prefix
      of the generation prompt: steering starts at the header, the first token that is not the user's
      turn (if the header merges with the turn's last characters, at the merged token);
    - a template without one (Llama-2, Mistral: the prompt ends with "[/INST]") renders both alike, and
      one whose renderings differ otherwise is not trusted: steering starts at the last prompt token.

    Either way steer_from <= len(input_ids) - 1, so the first generated token is always steered.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        messages: the conversation ({"role", "content"} dicts), ending with the user's turn.

    Returns:
        PromptTokens: input_ids (the templated prompt, no extra special tokens) and steer_from.
    """
    messages = list(messages)
    # tokenize=False: the template's text (transformers types the result as any of its return kinds)
    text = cast(str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    last = max(len(ids) - 1, 0)
    user_text = cast(str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
    if len(user_text) < len(text) and text.startswith(user_text):
        through_user = tokenizer(user_text, add_special_tokens=False)["input_ids"]
        return PromptTokens(ids, min(common_prefix_length(ids, through_user), last))
    return PromptTokens(ids, last)


def answer_letter_tokens(
    tokenizer: PreTrainedTokenizerBase, letters: Sequence[str]
) -> tuple[list[int], dict[str, int]]:
    """How the reply "(A", "(B", ... starts, tokenized on its own, never joined to the prompt's text.

    Joining the reply to the prompt's text lets a tokenizer merge across the boundary (Llama-2's vocabulary
    turns "[/INST](A" into "…INST", "](", "A"); tokenized separately, as the model writes a reply after its
    prompt, SentencePiece vocabularies give the paper's own "[/INST] (A" ("▁(", "A").

    Args:
        tokenizer: a transformers tokenizer.
        letters: the choice letters, e.g. ["A", "B"].

    Returns:
        (opening, letter_ids): the tokens every "(<letter>" shares (usually "(" or "▁("; empty if the
        vocabulary merges "(A") and, per letter, the first token after them.

    Raises:
        SteeringError: the letters do not tokenize to distinct tokens after the shared opening.
    """
    versions = {letter: tokenizer(f"({letter}", add_special_tokens=False)["input_ids"] for letter in letters}
    first = versions[letters[0]]
    shared = min(common_prefix_length(first, v) for v in versions.values())
    if any(len(v) <= shared for v in versions.values()):
        raise SteeringError(
            f'cannot find the answer-letter tokens: "({letters[0]}" and the other choices tokenize alike'
        )
    letter_ids = {letter: v[shared] for letter, v in versions.items()}
    if len(set(letter_ids.values())) != len(letter_ids):
        raise SteeringError("two answer letters map to the same token")
    return first[:shared], letter_ids


@dataclass(frozen=True)
class ContrastTokens:
    """One side of an A/B pair: its tokens and which positions are averaged into the activation."""

    input_ids: list[int]
    read_positions: list[int]


def contrast_tokens(
    tokenizer: PreTrainedTokenizerBase, item: ABItem, letter: str, read_mode: str, system_prompt: str | None = None
) -> ContrastTokens:
    """The tokens of one side of an A/B pair and the positions whose activations CAA averages.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        item: the A/B item.
        letter: which answer this side gives ("A", "B", ...).
        read_mode: "letter" (the paper: the question with its choices as the user turn, "(A)" as the
            reply, read at the letter token) or "answer-mean" (the question without its choices as the
            user turn, the option's text as the reply, the mean over the option's tokens).
        system_prompt: a system prompt for the template (None: the template's default).

    Returns:
        ContrastTokens: input_ids and read_positions (indices into input_ids, never empty).

    Raises:
        SteeringError: answer-mean mode and the option has no text, or its text tokenizes to nothing
            (the message names the option; tokenize_pairs adds the item's index).
        ValueError: an unknown read mode.
    """
    if read_mode == "letter":
        # The paper: the question with its choices as the user turn, "(A)" as the reply, read at the
        # letter token. The reply is tokenized on its own (see answer_letter_tokens), so the read
        # position is the letter whatever the template's last characters are.
        prompt = _ids(tokenizer, build_messages([{"role": "user", "content": item.question}], system_prompt), True)
        through_letter = tokenizer(f"({letter}", add_special_tokens=False)["input_ids"]
        reply = tokenizer(f"({letter})", add_special_tokens=False)["input_ids"]
        if reply[: len(through_letter)] != through_letter:  # ")" merged with the letter: stop at the letter
            reply = through_letter
        ids = prompt + reply
        return ContrastTokens(ids, [len(prompt) + len(through_letter) - 1])
    if read_mode == "answer-mean":
        prefix_ids = _ids(tokenizer, build_messages([{"role": "user", "content": item.request}], system_prompt), True)
        if not item.choices.get(letter, "").strip():
            raise SteeringError(
                f"option ({letter}) has no text: answer-mean mode reads the option's tokens "
                "(use --read-mode letter, or give every option a text)"
            )
        answer_ids = tokenizer(item.choices[letter], add_special_tokens=False)["input_ids"]
        if not answer_ids:
            raise SteeringError(f"option ({letter}) is empty after tokenization: nothing to read in answer-mean mode")
        ids = prefix_ids + answer_ids
        return ContrastTokens(ids, list(range(len(prefix_ids), len(ids))))
    raise ValueError(f"unknown read mode {read_mode!r} (expected one of {', '.join(READ_MODES)})")
