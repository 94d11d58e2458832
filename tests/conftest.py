"""Fixtures only (helpers live in tests/fixtures.py and tests/cli_helpers.py): the tiny random Llama, its
tokenizer and an Engine over it, the embedded model, the CLI without a model, and the session-wide guards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fixtures import make_tiny_engine, make_tiny_lm, make_tiny_model, make_tiny_tokenizer

SHIPPED = ("results", "vectors", "datasets", "config.yaml")  # what the tests must never write


def _snapshot(root: Path) -> dict[str, str]:
    files: list[Path] = []
    for name in SHIPPED:
        path = root / name
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}


@pytest.fixture(scope="session", autouse=True)
def shipped_files_untouched():
    """Fail the run if any test wrote into the checkout's shipped vectors, results, datasets or config."""
    root = Path(__file__).resolve().parent.parent
    before = _snapshot(root)
    yield
    after = _snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests changed shipped files: {', '.join(changed[:10])}"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return make_tiny_model(len(tiny_tokenizer))


@pytest.fixture(scope="module")
def tiny_engine(tiny_tokenizer):
    """An Engine over a tiny random Llama (fixtures.make_tiny_engine, eager path, the project's config), one per
    test module."""
    return make_tiny_engine(tiny_tokenizer)


@pytest.fixture(scope="module")
def static_lm(tiny_tokenizer):
    """A tiny LoadedModel with a fast path on the CPU (static cache, persistent hooks, no graphs, bucket 16), one
    per test module; its hooks are removed afterwards. The static-cache scheduler tests run on it."""
    from steering.decode.fast_path import FastPath

    lm = make_tiny_lm(tiny_tokenizer)
    lm.fast_path = FastPath(lm.model, compile=False, bucket=16)
    yield lm
    lm.fast_path.steering.remove()


@pytest.fixture(scope="session", autouse=True)
def fast_path_everywhere():
    """STEERING_TEST_FAST_PATH=1: every model loaded through the config in this process (the
    embedded_engine fixture, in-process CLI runs) is on the fast path (`compile: true` with the cheap
    `eager` compile backend: persistent hooks, static cache, compiled decoding step), so the suite can be
    run with the fast path off and on. Subprocess CLI runs are not affected."""
    import os

    if os.environ.get("STEERING_TEST_FAST_PATH") != "1":
        yield
        return
    from steering.engine import Engine

    original = Engine.from_config.__func__

    def forced(cls, config, **overrides):
        return original(cls, config, **{**overrides, "compile": True, "compile_backend": "eager"})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "from_config", classmethod(forced))
        yield


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model through the CLI (steering.cli.loading.load_engine) fails the test: a refusal of bad input
    must come before the (slow) load."""

    def load(args, config):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr("steering.cli.loading.load_engine", load)


@pytest.fixture(scope="session")
def embedded_engine():
    """The embedded SmolLM2 model with the project's config (integration tests)."""
    from steering.config import load_config
    from steering.engine import Engine

    engine = Engine.from_config(load_config())
    engine.warm_up()  # as the CLI and the app do: the fast path when the config (or STEERING_TEST_FAST_PATH) asks
    return engine
