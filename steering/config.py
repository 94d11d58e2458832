"""Reading config.yaml and resolving per-model defaults.

Where config.yaml and the data folders are (the same rule for `python -m steering`, the `steering`
command, app.py and the Python API, from any working folder):

- The *home* folder is $LLAMA_STEERING_HOME when set; else the source checkout this package runs from
  (the folder holding pyproject.toml, as after `pip install -e .`); else the current folder (a
  non-editable install: set LLAMA_STEERING_HOME or pass --config).
- The config file is --config PATH when given, else <home>/config.yaml (missing: the built-in DEFAULTS).
- The data folders (`vectors_dir`, `datasets_dir`, `results_dir`): an absolute path is used as it is; a
  relative one set in a config file is relative to that file's folder; the built-in default is relative
  to the home folder. load_config returns them as absolute paths.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steering.errors import SteeringError

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the source checkout (or site-packages when installed)
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.yaml"
HOME_ENV = "LLAMA_STEERING_HOME"
DATA_DIRS = ("vectors_dir", "datasets_dir", "results_dir")  # folders resolved by the rule above

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
        "threads": "auto",
    },
    "behavior": "refusal",
    "vectors_dir": "vectors",
    "datasets_dir": "datasets",
    "results_dir": "results",
    "models": {},
    "default_model_settings": {"read_mode": "answer-mean", "layer_fraction": 0.33, "multiplier": 2.0},
    "generation": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0, "system_prompt": None},
    "extraction": {"batch_size": 16},
    "limits": {
        "max_new_tokens": 1024,
        "max_prompt_tokens": 4096,
        "max_abs_multiplier": 100.0,
        "max_dataset_item_chars": 20000,
    },
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
    "evaluation": {},  # refusal_phrases (optional) overrides datasets/refusal/behavior.yaml's judge phrases
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "models":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def home() -> Path:
    """The folder holding config.yaml and the data folders (see the module docstring for the rule).

    Returns:
        $LLAMA_STEERING_HOME (absolute), else the source checkout, else the current folder.

    Raises:
        SteeringError: $LLAMA_STEERING_HOME is set but is not a folder.
    """
    env = os.environ.get(HOME_ENV)
    if env:
        folder = Path(env).expanduser().resolve()
        if not folder.is_dir():
            raise SteeringError(f"{HOME_ENV}={env}: not a folder (it should hold config.yaml and the data folders)")
        return folder
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT
    return Path.cwd()


def data_dir(config: dict[str, Any], key: str) -> Path:
    """A data folder of `config` ('vectors_dir', 'datasets_dir' or 'results_dir') as an absolute path.

    load_config already made them absolute; a relative value (a config built in code) is taken
    relative to home().
    """
    folder = Path(str(config.get(key, DEFAULTS[key]))).expanduser()
    return folder if folder.is_absolute() else home() / folder


def _resolve_data_dirs(config: dict[str, Any], data: dict[str, Any], path: Path | None) -> None:
    """Make the data folders absolute in place: relative values of the file `path` against its folder."""
    for key in DATA_DIRS:
        value = config[key]
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise SteeringError(f"config file {path}: '{key}' must be a folder path, found {value!r}")
        folder = Path(value).expanduser()
        if not folder.is_absolute():
            folder = (path.resolve().parent if key in data and path else home()) / folder
        config[key] = str(folder.resolve())


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Load a config file merged over DEFAULTS, with absolute data folders.

    Args:
        path: the config file; None reads <home>/config.yaml (built-in DEFAULTS when it is missing).

    Returns:
        The merged config; 'vectors_dir', 'datasets_dir' and 'results_dir' are absolute paths (strings),
        resolved by the rule in the module docstring.

    Raises:
        SteeringError: one line for a missing or broken file, a section that is not a mapping, a bad
            data folder value or a bad $LLAMA_STEERING_HOME.
    """
    default = path is None or str(path) == ""
    path = home() / "config.yaml" if default else Path(path)  # type: ignore[arg-type]
    if not path.exists():
        if default:
            config = copy.deepcopy(DEFAULTS)
            _resolve_data_dirs(config, {}, None)
            return config
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
    config = _merge(DEFAULTS, data)
    _resolve_data_dirs(config, data, path)
    return config


@dataclass(frozen=True)
class SteeringDefaults:
    """A model's steering defaults: read mode, layer and multiplier (from config `models:` or the fallback).

    Attributes:
        read_mode: where extraction reads activations: "letter" (the answer letter, as in CAA, Rimsky et al.
            2023, arXiv 2312.06681, section 3) or "answer-mean" (mean over the answer's tokens).
        layer: decoder block index to steer, 0..num_layers - 1.
        multiplier: the default alpha (unitless factor on the vector).
    """

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
