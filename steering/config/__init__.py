"""The configuration as one typed, frozen tree (:class:`Config`): built-in defaults, config.yaml, overrides.

The defaults live in one place: the field defaults of the dataclasses below. A config file only names what
it changes; :func:`load_config` merges it over the defaults, and :func:`override` applies CLI flags and app
settings (dotted keys or per-section keyword arguments) through the same merge and the same type checks.
An unknown key or a value of the wrong type is a one-line SteeringError naming the file (or "override"),
the key path and the expected type.

Where config.yaml and the data folders are (the same rule for `python -m steering`, the `steering`
command, app.py and the Python API, from any working folder):

- The *home* folder is $LLAMA_STEERING_HOME when set; else the source checkout this package runs from
  (the folder holding pyproject.toml, as after `pip install -e .`); else the current folder (a
  non-editable install: set LLAMA_STEERING_HOME or pass --config).
- The config file is --config PATH when given, else <home>/config.yaml (missing: the built-in defaults).
- The data folders (`vectors_dir`, `datasets_dir`, `results_dir`): an absolute path is used as it is; a
  relative one set in a config file is relative to that file's folder; the built-in default (and a
  relative path given in code or in an override) is relative to the home folder. A Config always holds
  them as absolute paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from steering.config.checks import build, checked, drop_none, merge, shallow
from steering.config.tree import (
    DATA_DIRS,
    EMBEDDED_MODEL,
    HOME_ENV,
    PROJECT_ROOT,
    AppSettings,
    Config,
    DefaultModelSettings,
    EvaluationSettings,
    ExtractionSettings,
    GenerationSettings,
    ModelSettings,
    ModelSteering,
    ReadMode,
    home,
    home_hint,
)
from steering.core.limits import Limits
from steering.errors import SteeringError

__all__ = [
    "AppSettings",
    "Config",
    "DATA_DIRS",
    "DefaultModelSettings",
    "EMBEDDED_MODEL",
    "EvaluationSettings",
    "ExtractionSettings",
    "GenerationSettings",
    "HOME_ENV",
    "Limits",
    "ModelSettings",
    "ModelSteering",
    "PROJECT_ROOT",
    "ReadMode",
    "SteeringDefaults",
    "home",
    "home_hint",
    "load_config",
    "model_defaults",
    "model_slug",
    "override",
]


def load_config(path: str | Path | None = None) -> Config:
    """The config file merged over the built-in defaults, checked and frozen.

    Args:
        path: the config file; None reads <home>/config.yaml (the built-in defaults when it is missing).

    Returns:
        The Config; its data folders are absolute, resolved by the rule in the module docstring.

    Raises:
        SteeringError: one line for a missing or broken file, an unknown key, a value of the wrong type
            (naming the file, the key path and the expected type) or a bad $LLAMA_STEERING_HOME.
    """
    default = path is None or str(path) == ""
    file = home() / "config.yaml" if default else Path(path)  # type: ignore[arg-type]
    if not file.exists():
        if default:
            return Config()
        raise SteeringError(f"config file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        detail = str(exc).replace("\n", " ")
        raise SteeringError(f"config file {file} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        raise SteeringError(f"config file {file}: expected a mapping at the top level, found {type(data).__name__}")
    source = f"config file {file}"
    data = dict(data)
    for key in DATA_DIRS:  # relative to the file's folder
        if key in data:
            folder = checked(data[key], Path, source, key).expanduser()
            data[key] = folder if folder.is_absolute() else (file.resolve().parent / folder).resolve()
    return build(Config, data, source)


def override(
    config: Config, changes: Mapping[str, Any] | None = None, /, *, source: str = "override", **sections: Any
) -> Config:
    """A copy of `config` with some values changed: the one way CLI flags and app settings apply.

    Args:
        config: the config to start from (not modified: it is frozen).
        changes: dotted keys, e.g. {"app.port": 8000, "generation.seed": 3}, or nested mappings.
        source: what the changes are, for error messages (e.g. "command line").
        sections: top-level keys or whole sections as mappings, e.g. ``model={"name": "x"}``,
            ``vectors_dir=tmp_path``.

    None values (a flag not given) leave the value as it is.

    Returns:
        The new Config, checked like a config file.

    Raises:
        SteeringError: an unknown key or a value of the wrong type, in one line.
    """
    nested: dict[str, Any] = {}
    for key, value in [*(changes or {}).items(), *sections.items()]:
        parts = str(key).split(".")
        for part in reversed(parts[1:]):
            value = {part: value}
        nested = merge(nested, {parts[0]: value})
    nested = drop_none(nested)
    return build(Config, merge(shallow(config), nested), source)


def model_slug(name: str) -> str:
    """A file-name-safe id of a model name (also matches a hub id to its `models:` entry):
    'meta-llama/Llama-2-7b-chat-hf' -> 'llama-2-7b-chat-hf'."""
    base = name.rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-") or "model"


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


def model_defaults(config: Config, model_name: str, num_layers: int) -> SteeringDefaults:
    """Read mode, layer and multiplier for a model: its own entry in `models:`, the rest from
    `default_model_settings` (a missing layer: round(layer_fraction x num_layers), clamped to the blocks).

    Args:
        config: the loaded config.
        model_name: the model's name or hub id (an entry matches by name or by file-name slug).
        num_layers: the model's decoder block count.

    Returns:
        The defaults. Precedence at run time: a behavior's tuned defaults file
        (vectors/<behavior>/<model-slug>.defaults.json) wins over these (steering.engine.Engine.recipe).

    Raises:
        SteeringError: the model's `models:` entry names a layer the model does not have.
    """
    key = model_name if model_name in config.models else None
    if key is None:  # a hub id whose file name matches an entry, e.g. HuggingFaceTB/SmolLM2-135M-Instruct
        key = next((k for k in config.models if model_slug(k) == model_slug(model_name)), None)
    entry = config.models[key] if key is not None else ModelSteering()
    fallback = config.default_model_settings
    layer = entry.layer
    if layer is not None and not 0 <= layer < num_layers:  # the file check knew no layer count; the model does
        raise SteeringError(
            f"config models.{key}.layer {layer} is out of range: the model has layers 0..{num_layers - 1}"
        )
    if layer is None:
        layer = min(max(int(round(fallback.layer_fraction * num_layers)), 0), num_layers - 1)
    return SteeringDefaults(
        read_mode=entry.read_mode or fallback.read_mode,
        layer=layer,
        multiplier=entry.multiplier if entry.multiplier is not None else fallback.multiplier,
    )
