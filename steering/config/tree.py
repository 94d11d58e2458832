"""The config tree: one frozen dataclass per config.yaml section; their field defaults are the built-in defaults
(the only ones: other modules derive theirs from these). Where the home folder is: see steering.config."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from steering.config.checks import FrozenMapping, at_least, fraction, ranged, sampling_temperature, to_plain
from steering.core.limits import Limits, check_multiplier, check_new_tokens, check_seed
from steering.errors import SteeringError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent  # the source checkout (or site-packages when installed)
HOME_ENV = "LLAMA_STEERING_HOME"
DATA_DIRS = ("vectors_dir", "datasets_dir", "results_dir")  # folders resolved by steering.config's rule
EMBEDDED_MODEL = "smollm2-135m-instruct"

ReadMode = Literal["letter", "answer-mean"]


def home() -> Path:
    """The folder holding config.yaml and the data folders (the rule: steering.config's module docstring).

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


def home_hint() -> str:
    """What to add to a "not found" message about config.yaml or the data folders when the home folder is the
    current folder only because no source checkout was found (a non-editable install run elsewhere).

    Returns:
        "" when $LLAMA_STEERING_HOME is set or the package runs from a checkout; else a sentence (starting
        with "; ") saying where the files were looked for and how to point at them.
    """
    if os.environ.get(HOME_ENV) or (PROJECT_ROOT / "pyproject.toml").is_file():
        return ""
    return (
        f"; the data folders were looked for in the current folder ({Path.cwd()}) since no source checkout "
        f"was found: set {HOME_ENV} to the folder holding config.yaml, datasets/ and vectors/, or pass --config"
    )


@dataclass(frozen=True)
class ModelSettings:
    """How to load a model (config `model:`; CLI flags override it); load_model takes it.

    Attributes:
        name: a Hugging Face hub id, a local model folder, or "smollm2-135m-instruct" (the embedded model).
        dtype: "auto" (by device), "float32", "float16" or "bfloat16".
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        device_map: a transformers device_map (e.g. "auto") to spread a model over devices; None: one device.
        load_in_8bit, load_in_4bit: bitsandbytes quantization (at most one; needs a GPU and bitsandbytes).
        compile: the GPU fast path compiles the decoding step with torch.compile.
        compile_backend: the torch.compile backend ("inductor"; "eager" is cheap, for tests).
        cuda_graphs: the GPU fast path replays decoding steps as CUDA graphs.
        threads: torch CPU threads: a count >= 1, "auto", or None (torch's default).
    """

    name: str = EMBEDDED_MODEL
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend of the fast path ("eager": cheap, for tests)
    cuda_graphs: bool = True
    threads: int | str | None = ranged("auto", at_least(1))  # torch CPU threads (set_threads): a count, or "auto"


@dataclass(frozen=True)
class ModelSteering:
    """One model's steering defaults (an entry of config `models:`); a key left out comes from
    `default_model_settings` (the layer from its layer_fraction)."""

    read_mode: ReadMode | None = None
    layer: int | None = ranged(None, at_least(0))  # checked against the model's blocks when it loads
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
    layer_fraction: float = ranged(0.33, at_least(0, 1))
    multiplier: float = 2.0


@dataclass(frozen=True)
class GenerationSettings:
    """Default sampling of the CLI and the app (config `generation:`): tokens per reply, temperature
    (0 = greedy), nucleus top_p, seed; system_prompt None keeps the chat template's own."""

    max_new_tokens: int = ranged(64, at_least(1))  # and at most limits.max_new_tokens (Config checks it)
    temperature: float = ranged(0.0, sampling_temperature)
    top_p: float = ranged(1.0, fraction)
    seed: int | None = ranged(0, lambda value, name: value is None or check_seed(value, name))
    system_prompt: str | None = None


@dataclass(frozen=True)
class ExtractionSettings:
    """Vector extraction (config `extraction:`): A/B items per forward pass."""

    batch_size: int = ranged(16, at_least(1))


@dataclass(frozen=True)
class AppSettings:
    """The web app (config `app:`): where it listens, the optional password's env var, the queue, the
    requests decoded together per model (steering/decode/scheduler.py), the prompt and upload caps."""

    host: str = "127.0.0.1"
    port: int = ranged(7860, at_least(1, 65535))
    share: bool = False
    password_env: str | None = "LLAMA_STEERING_PASSWORD"
    max_queue: int = ranged(16, at_least(0))  # requests waiting for room in the batch (0: none wait)
    concurrency_per_model: int = ranged(4, at_least(1))
    max_prompt_chars: int = ranged(2000, at_least(1))
    max_upload_mb: float = ranged(64, at_least(0, strict=True))


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
        self.check_ranges()

    def check_ranges(self) -> None:
        """The checks across sections: generation.max_new_tokens within limits.max_new_tokens, every default
        multiplier within limits.max_abs_multiplier (the same checks as the CLI flags).

        Raises:
            SteeringError: "config: <key path> ..." (steering.config.checks.build names the file instead).
        """
        check_new_tokens(self.generation.max_new_tokens, self.limits, "generation.max_new_tokens")
        check_multiplier(self.default_model_settings.multiplier, self.limits, "default_model_settings.multiplier")
        for name, entry in self.models.items():
            if entry.multiplier is not None:
                check_multiplier(entry.multiplier, self.limits, f"models.{name}.multiplier")

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict view (data folders as strings), e.g. for YAML/JSON or a library call."""
        return to_plain(self)
