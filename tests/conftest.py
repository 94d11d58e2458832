"""Shared fixtures: a tiny random Llama with a byte-level chat tokenizer, and the embedded model."""

from __future__ import annotations

import pytest
import torch


def make_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens({"eos_token": "<|end|>", "pad_token": "<pad>",
                            "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>"]})
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tok


def make_tiny_model(vocab_size: int, seed: int = 0, layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.config.eos_token_id = None  # random weights: never stop early, so lengths are predictable
    model.generation_config.eos_token_id = None
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return make_tiny_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def embedded_engine():
    """The embedded SmolLM2 model with the project's config (integration tests)."""
    from steering.config import load_config
    from steering.engine import Engine

    return Engine.from_config(load_config())
