"""Test fixtures: five families of chat templates and a SentencePiece-style (Llama-like) tokenizer.

The templates are Jinja strings written for these tests after the public prompt formats of
Llama-2-chat, Mistral-instruct, Llama-3-instruct, ChatML (SmolLM2, Qwen) and Gemma. They are not the
models' own files, only their shape: where the turns start and end, whether an assistant header
follows the user's turn (ChatML, Llama-3, Gemma) or the prompt simply ends with the instruction
(Llama-2, Mistral: "... [/INST]").

`sentencepiece_tokenizer()` builds a small BPE tokenizer in the style of Llama's: a "▁" word prefix,
byte-fallback tokens for characters outside its vocabulary (newlines become <0x0A>, as in Llama), and
merges such that "[/INST](A" tokenizes as "…INST", "](", "A" and "(A)" as "▁(", "A)" -- the merges that
break a measure which tokenizes the prompt and the reply as one string.

Import from tests (their folder is on sys.path): `from chat_templates import CASES, sentencepiece_tokenizer`.
"""

from __future__ import annotations

from typing import Any

LLAMA2 = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for m in turns -%}"
    "{%- if m['role'] == 'user' -%}"
    "{%- if loop.first and system -%}"
    "{%- set text = '<<SYS>>\\n' ~ system | trim ~ '\\n<</SYS>>\\n\\n' ~ m['content'] | trim -%}"
    "{%- else -%}{%- set text = m['content'] | trim -%}{%- endif -%}"
    "{{- bos_token ~ '[INST] ' ~ text ~ ' [/INST]' -}}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{{- ' ' ~ m['content'] | trim ~ ' ' ~ eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)
"""Llama-2-chat: `<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {assistant} </s>`; no
assistant header (add_generation_prompt changes nothing)."""

MISTRAL = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{{- bos_token -}}"
    "{%- for m in turns -%}"
    "{%- if m['role'] == 'user' -%}"
    "{%- set text = (system ~ '\\n\\n' ~ m['content']) if (loop.first and system) else m['content'] -%}"
    "{{- '[INST] ' ~ text | trim ~ ' [/INST]' -}}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{{- m['content'] | trim ~ eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)
"""Mistral-instruct (v0.1/v0.2 shape): `<s>[INST] {user} [/INST]{assistant}</s>`, the system prompt folded
into the first user turn; no assistant header."""

LLAMA3 = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for m in messages -%}"
    "{{- '<|start_header_id|>' ~ m['role'] ~ '<|end_header_id|>\\n\\n' ~ m['content'] | trim ~ '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)
"""Llama-3-instruct: header tokens around each role, `<|eot_id|>` after each turn, an assistant header."""

CHATML = (
    "{%- for m in messages -%}"
    "{%- if loop.first and m['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' ~ m['role'] ~ '\\n' ~ m['content'] ~ '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""ChatML as SmolLM2 uses it: a default system turn when none is given, `<|im_start|>assistant\\n` header."""

GEMMA = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] | trim ~ '\\n\\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{{- '<bos>' -}}"
    "{%- for m in turns -%}"
    "{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}"
    "{{- '<start_of_turn>' ~ role ~ '\\n' ~ (system if loop.first else '') ~ m['content'] | trim"
    " ~ '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)
"""Gemma: `<start_of_turn>user\\n...<end_of_turn>\\n`, the assistant is "model"; the system prompt goes
into the first user turn (Gemma has no system role)."""

TEMPLATES: dict[str, str] = {"llama2": LLAMA2, "mistral": MISTRAL, "llama3": LLAMA3, "chatml": CHATML, "gemma": GEMMA}

SYSTEM_PROMPT = "You are a careful assistant."

# (case id, template name, system prompt): Llama-2-chat with and without its <<SYS>> block, the others
# with a system prompt where the format has one.
CASES: list[tuple[str, str, str | None]] = [
    ("llama2", "llama2", None),
    ("llama2-system", "llama2", SYSTEM_PROMPT),
    ("mistral", "mistral", None),
    ("llama3", "llama3", SYSTEM_PROMPT),
    ("chatml", "chatml", None),
    ("gemma", "gemma", None),
]

# What the position rule steers of a generation prompt, per template: the assistant header where the
# template has one, else the last token of the instruction ("]" of "[/INST]").
STEERED_TEXT: dict[str, str] = {
    "llama2": "]",
    "mistral": "]",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "chatml": "<|im_start|>assistant\n",
    "gemma": "<start_of_turn>model\n",
}

HISTORY = [
    {"role": "user", "content": "Hi! Can you help me plan a trip?"},
    {"role": "assistant", "content": "Of course. Where would you like to go?"},
    {"role": "user", "content": "Somewhere warm in March, on a small budget."},
]

SPECIAL_TOKENS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
]

# Merged tokens, each made of two existing tokens (the BPE merge order is the list order). "](" and "A)"
# are the merges that break a prompt+reply joined into one string.
_MERGES = [
    ("I", "N"),
    ("IN", "S"),
    ("INS", "T"),
    ("S", "Y"),
    ("SY", "S"),
    ("<", "<"),
    (">", ">"),
    ("<<", "SYS"),
    ("SYS", ">>"),
    ("▁", "["),
    ("▁", "("),
    ("]", "("),
    ("A", ")"),
    ("B", ")"),
    ("▁", "t"),
    ("h", "e"),
    ("▁t", "he"),
    ("o", "u"),
    ("▁", "y"),
    ("▁y", "ou"),
    ("▁", "a"),
    ("r", "e"),
    ("▁a", "re"),
    ("i", "n"),
    ("▁", "in"),
    ("?", "▁"),
]


def sentencepiece_tokenizer(template: str | None = None) -> Any:
    """A Llama-style SentencePiece BPE tokenizer (transformers fast tokenizer), optionally with a template.

    Args:
        template: a key of TEMPLATES or a Jinja string set as the chat template (None: no template).

    Returns:
        A PreTrainedTokenizerFast with bos "<s>", eos "</s>", unk "<unk>", byte-fallback tokens <0x00>..<0xFF>,
        printable ASCII, the merges above and the special tokens of all five templates (about 390 tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁"]:
        vocab[token] = len(vocab)
    for code in range(0x21, 0x7F):
        vocab.setdefault(chr(code), len(vocab))
    for left, right in _MERGES:
        assert left in vocab and right in vocab, (left, right)
        vocab.setdefault(left + right, len(vocab))
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=list(_MERGES), unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    if template is not None:
        tok.chat_template = TEMPLATES.get(template, template)
    return tok


def conversation(system_prompt: str | None = None, history: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    """HISTORY (or `history`) with the system prompt in front when given."""
    messages = [dict(m) for m in (HISTORY if history is None else history)]
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages
