"""Shared fixtures: a tiny random Llama with a byte-level chat tokenizer, and the embedded model."""

from __future__ import annotations

import pytest
import torch


def make_tiny_tokenizer():
    """A byte-level chat tokenizer: one token per byte, a simple <|role|>...<|end|> template."""
    from steering.bench import make_byte_tokenizer

    return make_byte_tokenizer()


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
