"""Test helpers (plain functions, importable from any test as `from fixtures import ...`): the tiny random
Llama model and the byte-level chat tokenizer the fast unit tests run on. tests/conftest.py turns them into
the session fixtures `tiny_tokenizer` and `tiny_model`."""

from __future__ import annotations

from dataclasses import replace

import torch

from steering.config import Config

# Conversations the generation tests share: one turn, and three turns (a history before the question).
PLANET = [{"role": "user", "content": "What's your favorite planet?"}]
DRAGON = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there!"},
    {"role": "user", "content": "Tell me a longer story about a dragon."},
]


def make_tiny_tokenizer():
    """A byte-level chat tokenizer: one token per byte, a simple <|role|>...<|end|> template
    (steering.synthetic.make_byte_tokenizer, shared with the GPU benchmark)."""
    from steering.synthetic import make_byte_tokenizer

    return make_byte_tokenizer()


def make_tiny_model(vocab_size: int, seed: int = 0, layers: int = 4):
    """A random LlamaForCausalLM (hidden 64, MLP 128, 4 heads, 2 KV heads, context 512) in eval mode, seeded, that
    never stops early (no EOS id), so generated lengths are predictable (steering.synthetic.random_llama)."""
    from steering.synthetic import TINY, random_llama

    shape = replace(TINY, layers=layers, kv_heads=2, vocab=vocab_size, context=512, norm_eps=1e-6)
    return random_llama(shape, seed=seed)


def ab_item(question: str, matching: str = "A"):
    """An A/B item (steering.core.datasets.ABItem) from a question text with its (A)/(B) choices, parsed by
    steering.core.datasets.parse_choices; `matching` is the behavior's letter, the other letter is not matching."""
    from steering.core.datasets import ABItem, parse_choices

    request, choices = parse_choices(question)
    return ABItem(question, request, choices, matching, "B" if matching == "A" else "A")


def make_tiny_lm(tokenizer, settings=None, layers: int = 4, name: str = "tiny", **extra):
    """A steering.models.LoadedModel called `name` (slug: model_slug(name)) around make_tiny_model(len(tokenizer),
    layers=layers): float32 on CPU, hidden size 64, no quantization. `settings` defaults to
    ModelSettings(name=name); `extra` goes to LoadedModel as is (e.g. lock=threading.Lock())."""
    from steering.config import ModelSettings, model_slug
    from steering.models import LoadedModel

    return LoadedModel(
        model=make_tiny_model(len(tokenizer), layers=layers),
        tokenizer=tokenizer,
        name=name,
        slug=model_slug(name),
        dtype=torch.float32,
        device=torch.device("cpu"),
        quantization=None,
        num_layers=layers,
        hidden_size=64,
        load_seconds=0.0,
        settings=settings if settings is not None else ModelSettings(name=name),
        **extra,
    )


def make_tiny_engine(tokenizer, config: Config | None = None, settings=None, layers: int = 4, **extra):
    """A steering.engine.Engine over make_tiny_lm(tokenizer, settings, layers, **extra) (`extra` may name the
    model: name="org/Tiny-Model") with `config` (default: steering.config.load_config())."""
    from steering.config import load_config
    from steering.engine import Engine

    return Engine(make_tiny_lm(tokenizer, settings, layers, **extra), config if config is not None else load_config())


def count_generate_calls(engine, monkeypatch) -> list[int]:
    """The batch size of every Engine._generate call from now on (a list that grows; `monkeypatch` undoes it)."""
    calls: list[int] = []
    original = engine._generate

    def counted(conversations, *args, **kwargs):
        calls.append(len(conversations))
        return original(conversations, *args, **kwargs)

    monkeypatch.setattr(engine, "_generate", counted)
    return calls
