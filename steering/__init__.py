"""LLaMA Steering: Contrastive Activation Addition (CAA; Rimsky et al. 2023, arXiv 2312.06681) for chat models.

The public Python API (the README's "Python API" section shows it in use)::

    import steering

    config = steering.load_config()                             # data folders resolved from the home folder
    lm = steering.load_model(steering.ModelSettings())          # the embedded SmolLM2-135M-Instruct
    vectors = steering.load_vectors(config.vectors_dir / "refusal" / "smollm2-135m-instruct.safetensors")
    result = steering.generate(lm.model, lm.tokenizer, [[{"role": "user", "content": "Hi"}]] * 2,
                               multipliers=[2.0, -2.0], steer=steering.SteeringSpec(9, vectors.vector(9)))

- Models: load_model, ModelSettings, LoadedModel; configuration: load_config, Config (the typed tree), Limits.
- Data and extraction: load_ab_dataset, ABItem, extract_vectors.
- Vector files: VectorSet, load_vectors (safetensors, the paper's .pt layout, GGUF), save_safetensors, save_gguf.
- Steering: steering (the CAA context manager), steer and SteeringPlan (any operator, any layers), generate,
  SamplingSettings, SteeringSpec, GenerationResult; Engine (model + vectors + the three-pane comparison).
- Errors: SteeringError (one-line messages for anything a user can get wrong).

Names are imported on first use, so `import steering` stays light (no torch until a name needs it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from steering.errors import SteeringError

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "load_config": "steering.config",
    "Config": "steering.config",
    "Limits": "steering.core.limits",
    "ModelSettings": "steering.config",
    "LoadedModel": "steering.models",
    "load_model": "steering.models",
    "ABItem": "steering.core.datasets",
    "load_ab_dataset": "steering.core.datasets",
    "extract_vectors": "steering.extract.extraction",
    "VectorSet": "steering.io.vector_set",
    "load_vectors": "steering.io.vector_store",
    "save_safetensors": "steering.io.vector_files",
    "save_gguf": "steering.io.gguf_vectors",
    "steering": "steering.core.hooks",
    "steer": "steering.core.hooks",
    "SteeringPlan": "steering.core.plan",
    "generate": "steering.decode.generation",
    "SamplingSettings": "steering.decode.generation",
    "SteeringSpec": "steering.decode.generation",
    "GenerationResult": "steering.decode.generation",
    "Engine": "steering.engine",
}

__all__ = ["SteeringError", *_EXPORTS]

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from steering.config import Config, ModelSettings, load_config
    from steering.core.datasets import ABItem, load_ab_dataset
    from steering.core.hooks import steer, steering
    from steering.core.limits import Limits
    from steering.core.plan import SteeringPlan
    from steering.decode.generation import GenerationResult, SamplingSettings, SteeringSpec, generate
    from steering.engine import Engine
    from steering.extract.extraction import extract_vectors
    from steering.io.gguf_vectors import save_gguf
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet
    from steering.io.vector_store import load_vectors
    from steering.models import LoadedModel, load_model


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steering' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
