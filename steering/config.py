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

import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from steering.core.limits import Limits
from steering.errors import SteeringError

__all__ = [
    "AppSettings",
    "Config",
    "DATA_DIRS",
    "DefaultModelSettings",
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
    "load_config",
    "model_defaults",
    "model_slug",
    "override",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the source checkout (or site-packages when installed)
HOME_ENV = "LLAMA_STEERING_HOME"
DATA_DIRS = ("vectors_dir", "datasets_dir", "results_dir")  # folders resolved by the rule above
EMBEDDED_MODEL = "smollm2-135m-instruct"

ReadMode = Literal["letter", "answer-mean"]


# ---------------------------------------------------------------------------------------------- the tree
class FrozenMapping(Mapping[str, Any]):
    """A read-only, hashable mapping (config `models:`): unlike MappingProxyType it pickles and deep-copies."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"


@dataclass(frozen=True)
class ModelSettings:
    """How to load a model (config `model:`; CLI flags override it): hub id, local folder or the embedded
    smollm2-135m-instruct; dtype and device (auto picks), 8-/4-bit, the GPU fast path, CPU threads."""

    name: str = EMBEDDED_MODEL
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend of the fast path ("eager": cheap, for tests)
    cuda_graphs: bool = True
    threads: int | str | None = "auto"  # torch CPU threads (set_threads): a count, or "auto"

    @classmethod
    def from_config(cls, section: ModelSettings | Mapping[str, Any], **overrides: Any) -> ModelSettings:
        """ModelSettings from a config's `model` section (or a mapping of its keys); non-None `overrides` win.

        Raises:
            SteeringError: an override or key that is not a ModelSettings field, or a value of the wrong type.
        """
        values = dataclasses.asdict(section) if isinstance(section, ModelSettings) else dict(section)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return _build(cls, values, "override", "model")


@dataclass(frozen=True)
class ModelSteering:
    """One model's steering defaults (an entry of config `models:`); a key left out comes from
    `default_model_settings` (the layer from its layer_fraction)."""

    read_mode: ReadMode | None = None
    layer: int | None = None
    multiplier: float | None = None


@dataclass(frozen=True)
class DefaultModelSettings:
    """Steering defaults of a model without its own `models:` entry (config `default_model_settings:`).

    Attributes:
        read_mode: "letter" (CAA, Rimsky et al. 2023, section 3) or "answer-mean".
        layer_fraction: layer = round(layer_fraction x layer count), clamped to the model's blocks.
        multiplier: the default alpha.
    """

    read_mode: ReadMode = "answer-mean"
    layer_fraction: float = 0.33
    multiplier: float = 2.0


@dataclass(frozen=True)
class GenerationSettings:
    """Default sampling of the CLI and the app (config `generation:`): tokens per reply, temperature
    (0 = greedy), nucleus top_p, seed; system_prompt None keeps the chat template's own."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    system_prompt: str | None = None


@dataclass(frozen=True)
class ExtractionSettings:
    """Vector extraction (config `extraction:`): A/B items per forward pass."""

    batch_size: int = 16


@dataclass(frozen=True)
class AppSettings:
    """The web app (config `app:`): where it listens, the optional password's env var, the queue, the
    requests decoded together per model (steering/decode/scheduler.py), the prompt and upload caps."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    password_env: str | None = "LLAMA_STEERING_PASSWORD"
    max_queue: int = 16
    concurrency_per_model: int = 4
    max_prompt_chars: int = 2000
    max_upload_mb: float = 64


@dataclass(frozen=True)
class EvaluationSettings:
    """Evaluation (config `evaluation:`): refusal_phrases, when set, replaces the refusal card's judge phrases
    (datasets/refusal/behavior.yaml); a single string is a one-phrase list."""

    refusal_phrases: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Config:
    """The whole configuration (config.yaml), frozen; derive a changed copy with :func:`override`.

    Attributes:
        model: how to load the model.
        behavior: the behavior the CLI and the app start with.
        vectors_dir, datasets_dir, results_dir: the data folders, absolute (module docstring rule).
        models: per-model steering defaults, by model name (or hub id).
        default_model_settings: the steering defaults of any other model.
        generation, extraction, limits, app, evaluation: the sections of the same names.
    """

    model: ModelSettings = field(default_factory=ModelSettings)
    behavior: str = "refusal"
    vectors_dir: Path = Path("vectors")
    datasets_dir: Path = Path("datasets")
    results_dir: Path = Path("results")
    models: Mapping[str, ModelSteering] = field(default_factory=dict)
    default_model_settings: DefaultModelSettings = field(default_factory=DefaultModelSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    limits: Limits = field(default_factory=Limits)
    app: AppSettings = field(default_factory=AppSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)

    def __post_init__(self) -> None:
        """Data folders as absolute Paths (relative ones against home()); `models` as a read-only mapping."""
        for key in DATA_DIRS:
            folder = Path(getattr(self, key)).expanduser()
            object.__setattr__(self, key, folder if folder.is_absolute() else (home() / folder).resolve())
        object.__setattr__(self, "models", FrozenMapping(self.models))

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict view (data folders as strings), e.g. for YAML/JSON or a library call."""
        return _to_plain(self)


# ---------------------------------------------------------------------------------------------- checking
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "a list of strings"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if typing.get_origin(tp) is Mapping:
        return "a mapping"
    return {Path: "a folder path", float: "a number", int: "a whole number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Mismatch(Exception):
    pass


_SCALARS: dict[Any, Any] = {  # annotation -> does a YAML value fit it
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    Path: lambda v: isinstance(v, (str, os.PathLike)) and bool(str(v).strip()),
    type(None): lambda v: v is None,
}


def _convert(value: Any, tp: Any, source: str, where: str) -> Any:
    """`value` checked against the annotation `tp` (and converted: int -> float, str -> Path, list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, source, where)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp in _SCALARS:
        if not _SCALARS[tp](value):
            raise _Mismatch
        return float(value) if tp is float else Path(value) if tp is Path else value
    if origin is Literal and value in typing.get_args(tp):
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, value, source, where)
    if origin is Mapping and isinstance(value, Mapping):  # models: name -> entry
        entry_type = typing.get_args(tp)[1]
        return {str(k): _checked(v, entry_type, source, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:  # a list of strings; one string is a one-item list
        items = [value] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(item, str) for item in items):
            return tuple(items)
    raise _Mismatch


def _checked(value: Any, tp: Any, source: str, where: str) -> Any:
    try:
        return _convert(value, tp, source, where)
    except _Mismatch:
        raise SteeringError(f"{source}: '{where}' must be {_type_name(tp)}, found {value!r}") from None


def _build(cls: type[Any], data: Mapping[str, Any], source: str, where: str = "") -> Any:
    """An instance of the dataclass `cls` from `data`, every key known and every value of its field's type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            path = f"{where}.{key}" if where else str(key)
            raise SteeringError(f"{source}: unknown key '{path}' (expected one of: {', '.join(names)})")
    prefix = f"{where}." if where else ""
    values = {key: _checked(value, hints[key], source, prefix + key) for key, value in data.items()}
    try:
        return cls(**values)
    except SteeringError as exc:  # a section's own range check (Limits): name the file too
        raise SteeringError(f"{source}: {str(exc).removeprefix('config: ')}") from None


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, nested mappings key by key (base is not modified)."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------------------------------------- loading
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
            folder = _checked(data[key], Path, source, key).expanduser()
            data[key] = folder if folder.is_absolute() else (file.resolve().parent / folder).resolve()
    return _build(Config, data, source)


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
        nested = _merge(nested, {parts[0]: value})
    nested = _drop_none(nested)
    return _build(Config, _merge(_shallow(config), nested), source)


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and not dataclasses.is_dataclass(value):
            value = _drop_none(value)
        if value is not None:
            out[key] = value
    return out


def _shallow(value: Any) -> Any:
    """A dataclass tree as nested dicts of its field values (the values themselves kept as they are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _shallow(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _shallow(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------- per model
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
    """
    entry = config.models.get(model_name)
    if entry is None:  # a hub id whose file name matches an entry, e.g. HuggingFaceTB/SmolLM2-135M-Instruct
        entry = next((v for k, v in config.models.items() if model_slug(k) == model_slug(model_name)), None)
    entry = entry or ModelSteering()
    fallback = config.default_model_settings
    layer = entry.layer
    if layer is None:
        layer = min(max(int(round(fallback.layer_fraction * num_layers)), 0), num_layers - 1)
    return SteeringDefaults(
        read_mode=entry.read_mode or fallback.read_mode,
        layer=layer,
        multiplier=entry.multiplier if entry.multiplier is not None else fallback.multiplier,
    )
