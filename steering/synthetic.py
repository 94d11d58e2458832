"""Models without a download, for the GPU benchmark (`bench --synthetic-7b`), scripts/gpu_check.py and the
tests: a byte-level chat tokenizer and the configuration of a Llama-2-7B-shaped model (random weights).

Not part of the public API (steering.__all__).
"""

from __future__ import annotations

from typing import Any


def make_byte_tokenizer() -> Any:
    """A byte-level chat tokenizer: one token per byte, a simple <|role|>...<|end|> template.

    Enough for anything that only formats chats (random-weight models need no real vocabulary).

    Returns:
        A transformers PreTrainedTokenizerFast of 256 byte tokens plus <|end|> (EOS), <pad> and three role
        tokens, with a chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens(
        {
            "eos_token": "<|end|>",
            "pad_token": "<pad>",
            "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>"],
        }
    )
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tok


def llama7b_config(**overrides: Any) -> Any:
    """A transformers LlamaConfig of Llama-2-7B's shape (32 layers, hidden 4096, MLP 11008, 32 heads,
    vocabulary 32000, context 4096, untied embeddings); `overrides` replace any of its fields."""
    from transformers import LlamaConfig

    values = dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return LlamaConfig(**values)
