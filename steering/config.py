"""Reading config.yaml and resolving per-model defaults."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steering.errors import SteeringError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.yaml"

# Used when a key is missing from config.yaml, so a partial file still works.
DEFAULTS: dict[str, Any] = {
    "model": {
        "name": "smollm2-135m-instruct",
        "dtype": "auto",
        "device": "auto",
        "device_map": None,
        "load_in_8bit": False,
        "load_in_4bit": False,
        "compile": False,
        "compile_backend": "inductor",
        "cuda_graphs": True,
    },
    "behavior": "refusal",
    "vectors_dir": "vectors",
    "datasets_dir": "datasets",
    "models": {},
    "default_model_settings": {"read_mode": "answer-mean", "layer_fraction": 0.33, "multiplier": 2.0},
    "generation": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0, "system_prompt": None},
    "extraction": {"batch_size": 16},
    "limits": {"max_new_tokens": 1024, "max_prompt_tokens": 4096, "max_abs_multiplier": 100.0,
               "max_dataset_item_chars": 20000},
    "app": {
        "host": "127.0.0.1",
        "port": 7860,
        "share": False,
        "password_env": "LLAMA_STEERING_PASSWORD",
        "max_queue": 16,
        "concurrency_per_model": 1,
        "max_prompt_chars": 2000,
        "max_upload_mb": 64,
    },
    "evaluation": {"refusal_phrases": ["i can't", "i cannot", "i'm sorry", "as an ai", "i don't have personal"]},
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "models":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Load config.yaml merged over DEFAULTS; a broken file is a one-line SteeringError."""
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    if not path.exists():
        if path == DEFAULT_CONFIG_PATH:
            return copy.deepcopy(DEFAULTS)
        raise SteeringError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        detail = str(exc).replace("\n", " ")
        raise SteeringError(f"config file {path} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        raise SteeringError(f"config file {path}: expected a mapping at the top level, found {type(data).__name__}")
    for section in ("model", "generation", "extraction", "limits", "app", "evaluation", "models"):
        if section in data and not isinstance(data[section], dict):
            raise SteeringError(
                f"config file {path}: section '{section}' must be a mapping, found {type(data[section]).__name__}"
            )
    return _merge(DEFAULTS, data)


@dataclass(frozen=True)
class SteeringDefaults:
    read_mode: str
    layer: int
    multiplier: float


def model_defaults(config: dict[str, Any], model_name: str, num_layers: int) -> SteeringDefaults:
    """Read mode, layer and multiplier for a model: its own entry in `models:` or the generic fallback."""
    models = config.get("models", {})
    entry = models.get(model_name)
    if entry is None:  # a hub id whose file name matches an entry, e.g. HuggingFaceTB/SmolLM2-135M-Instruct
        from steering.models import model_slug

        entry = next((v for k, v in models.items() if model_slug(k) == model_slug(model_name)), None)
    fallback = config["default_model_settings"]
    if entry is None:
        layer = int(round(float(fallback.get("layer_fraction", 0.33)) * num_layers))
        return SteeringDefaults(
            read_mode=str(fallback.get("read_mode", "answer-mean")),
            layer=min(max(layer, 0), num_layers - 1),
            multiplier=float(fallback.get("multiplier", 2.0)),
        )
    return SteeringDefaults(
        read_mode=str(entry.get("read_mode", fallback.get("read_mode", "answer-mean"))),
        layer=int(entry.get("layer", round(0.33 * num_layers))),
        multiplier=float(entry.get("multiplier", fallback.get("multiplier", 2.0))),
    )
