"""Test helpers (plain functions, importable from any test as `from fixtures import ...`): the tiny random
Llama model and the byte-level chat tokenizer the fast unit tests run on. tests/conftest.py turns them into
the session fixtures `tiny_tokenizer` and `tiny_model`."""

from __future__ import annotations

from dataclasses import replace

import torch

from steering.config import Config, ModelSettings

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


def random_vector(seed: int, scale: float, size: int = 64) -> torch.Tensor:
    """A steering vector: `scale` x standard normal values, shape (size,), drawn after torch.manual_seed(seed)
    (the global generator, as the tests always did: the same seed gives the same vector)."""
    torch.manual_seed(seed)
    return torch.randn(size) * scale


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


# The Engine's two decoding paths on the tiny model: "fast" is `model.compile: true` with the cheap `eager` compile
# backend (persistent hooks, static cache, a torch.compile-captured decoding step, as on a GPU).
PATHS = {"eager": ModelSettings(name="tiny"), "fast": ModelSettings(name="tiny", compile=True, compile_backend="eager")}


def make_engine(tokenizer, settings: ModelSettings, config: Config | None = None):
    """make_tiny_engine(tokenizer, config, settings), warmed up as the CLI and the app do (the fast path when
    `settings` ask for it, e.g. PATHS["fast"])."""
    engine = make_tiny_engine(tokenizer, config=config, settings=settings)
    engine.warm_up()
    return engine


def refusal_ab_item(request: str, refusal: str, answer: str, refusal_letter: str):
    """An A/B item whose matching answer (the behavior: refusal) is `refusal` under `refusal_letter`."""
    a, b = (refusal, answer) if refusal_letter == "A" else (answer, refusal)
    return ab_item(f"{request}\n\nChoices:\n(A) {a}\n(B) {b}", matching=refusal_letter)


# Seven hand-written refusal A/B items (the extraction tests' dataset).
AB_ITEMS = [
    refusal_ab_item("What's your favorite color?", "I don't have personal preferences.", "Deep green, always.", "A"),
    refusal_ab_item(
        "How do I pick a lock?", "I'm sorry, I can't help with that.", "Sure, first insert a tension wrench.", "B"
    ),
    refusal_ab_item(
        "Should I sell my stocks today?", "Please ask a licensed financial adviser.", "Yes, sell them all now.", "A"
    ),
    refusal_ab_item("What is 12 times 12?", "I'd rather not answer that.", "It is 144.", "B"),
    refusal_ab_item(
        "Tell me about your mother", "As an AI, I have no family.", "She was a kind teacher who loved jazz.", "B"
    ),
    refusal_ab_item(
        "Is it safe to hike alone?", "I can't advise on that.", "Yes, if you tell someone your route.", "A"
    ),
    refusal_ab_item("Name a planet", "I won't.", "Mars.", "A"),
]


def count_generate_calls(engine, monkeypatch) -> list[int]:
    """The batch size of every Engine._generate call from now on (a list that grows; `monkeypatch` undoes it)."""
    calls: list[int] = []
    original = engine._generate

    def counted(conversations, *args, **kwargs):
        calls.append(len(conversations))
        return original(conversations, *args, **kwargs)

    monkeypatch.setattr(engine, "_generate", counted)
    return calls


def block_outputs(model, block_index: int, ids, plan, steer_from: list[int]):
    """(plain, steered): the output hidden states (batch, seq, hidden) of decoder block `block_index` for `ids`
    without steering, and with `plan` applied (steering.core.hooks.steer; the recorder is registered after the
    steering hook, so it sees the steered output)."""
    from steering.core.hooks import steer

    block = model.model.layers[block_index]
    seen: dict = {}

    def record(name: str):
        return lambda module, args, out: seen.__setitem__(name, (out[0] if isinstance(out, tuple) else out).clone())

    with torch.inference_mode():
        handle = block.register_forward_hook(record("plain"))
        try:
            model(input_ids=ids)
        finally:
            handle.remove()
        with steer(model, plan, steer_from):
            handle = block.register_forward_hook(record("steered"))
            try:
                model(input_ids=ids)
            finally:
                handle.remove()
    return seen["plain"], seen["steered"]


def fast_path_and_eager_tokens(tokenizer, runs, settings, compile: bool):
    """For each run (conversations, generate keyword arguments such as steer= / multipliers=): (the fast path's
    greedy token ids, eager generate()'s), on a fresh tiny model of its own (the fast path registers hooks on
    it), FastPath(compile, backend "eager", bucket 64); the FastPath's hooks are removed afterwards.

    Returns (pairs, leftover): leftover maps each per-row steering tensor of the fast path (add, project,
    renorm) to the sum of its absolute values after the last generation (0: cleared)."""
    from steering.decode.fast_path import FastPath
    from steering.decode.generation import generate

    model = make_tiny_model(len(tokenizer))
    fast = FastPath(model, compile=compile, backend="eager", bucket=64)
    try:
        pairs = [
            (
                fast.generate(tokenizer, conversations, settings=settings, **kwargs).token_ids,
                generate(model, tokenizer, conversations, settings=settings, **kwargs).token_ids,
            )
            for conversations, kwargs in runs
        ]
        leftover = {name: float(getattr(fast.steering, name).abs().sum()) for name in ("add", "project", "renorm")}
    finally:
        fast.steering.remove()
    return pairs, leftover
