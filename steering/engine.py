"""The steering engine: a loaded model, its vectors, and the three-variant generation the CLI and app use."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from steering import compare as comparison
from steering.config import Config, SteeringDefaults, home, home_hint, model_defaults, override
from steering.core.hooks import SteeringPlan
from steering.core.layers import check_layer
from steering.core.limits import check_multiplier
from steering.core.mixing import engine_plan
from steering.core.norms import measure_hidden_norms
from steering.core.prompts import Message
from steering.core.recipe import Recipe, config_recipe
from steering.decode import dispatch, fast_path_setup
from steering.decode.generation import SamplingSettings
from steering.errors import SteeringError
from steering.io.recipe_defaults import defaults_path, load_defaults
from steering.io.vector_set import VectorSet
from steering.io.vector_store import available_behaviors, load_vectors, vector_path
from steering.models import LoadedModel, load_model

if TYPE_CHECKING:
    from steering.decode.fast_path import FastPath

log = logging.getLogger(__name__)


@dataclass
class Engine:
    """A loaded model with its config: the vectors of each behavior (validated, cached), the steering
    defaults (config.yaml `models:` or the tuned defaults file), the request limits, and the added /
    unsteered / subtracted comparison the CLI and the app run (compare, compare_batch).

    Constructing one reads the behavior's tuned defaults file (a broken file is logged and the config's
    `models:` defaults are kept) and starts the request scheduler (continuous batching); it loads no
    vectors (vectors_for reads and caches them on first use). Engine.from_config loads the model too.

    Args:
        lm: the loaded model (steering.load_model).
        config: the configuration (steering.load_config); its `models:` / `default_model_settings`,
            `limits` and `app` sections are used.

    Attributes:
        defaults: the steering defaults in use (read_mode, layer, multiplier in CAA units).
        config_defaults: the defaults from config.yaml alone (before the tuned defaults file).
        limits: config.limits, the caps every request is checked against.
        scheduler: the Scheduler that batches the requests of several users.

    Example:
        >>> engine = Engine.from_config(load_config())  # doctest: +SKIP
        >>> engine.vectors_for("refusal").layers  # doctest: +SKIP
    """

    lm: LoadedModel
    config: Config

    def __post_init__(self) -> None:
        # config.yaml's models: entry; the behavior's tuned defaults file (recipe) takes precedence below
        self.config_defaults: SteeringDefaults = model_defaults(self.config, self.lm.name, self.lm.num_layers)
        self.defaults: SteeringDefaults = self.config_defaults
        self._vectors: dict[str, VectorSet] = {}
        self._recipes: dict[str, Recipe] = {}
        try:
            tuned = self.recipe()
            self.defaults = replace(self.config_defaults, layer=tuned.layer, multiplier=tuned.strength)
        except SteeringError as exc:  # a broken defaults file: reported again when a recipe is used
            log.warning("steering defaults: %s", exc)
        self._norms: dict[int, float] = {}
        self.limits = self.config.limits
        # Requests of several users decode in one batch (continuous batching); app.concurrency_per_model
        # is the most requests per batch, app.max_queue the most waiting for room (steering/decode/scheduler.py).
        self.scheduler = dispatch.scheduler_for(self, None)
        # The fast path (compiled or CUDA-graphed decoding, static cache, persistent hooks) is set up by an
        # explicit warm_up(), not here; an Engine on a model that already has one (a second Engine) uses it.
        self.fast_path: FastPath | None = getattr(self.lm, "fast_path", None)
        if self.fast_path is not None:
            self.scheduler = dispatch.scheduler_for(self, self.fast_path)

    def warm_up(self) -> FastPath | None:
        """Set up the fast path the model settings ask for, once: `model.compile` (static cache + torch.compile,
        compiled before the first user) or `model.cuda_graphs` on a CUDA 16/32-bit model (graphs captured on
        first use). The CLI and the app call it after loading; without it the engine generates eagerly.

        Its persistent hooks act only inside the fast path's own generation (fast_path.PersistentSteering);
        other forwards of the model pass through them untouched. A fast path that cannot be set up (a compiler
        error, say) leaves the model on the eager path, logged as a warning. Idempotent.

        Returns:
            The FastPath, or None (the settings ask for none, or it failed to set up).
        """
        if self.fast_path is not None:
            return self.fast_path
        try:
            if self.lm.settings.compile:
                self.fast_path = fast_path_setup.enable_fast_path(self.lm)
            elif self.lm.settings.cuda_graphs and fast_path_setup.graphs_supported(self.lm):
                self.fast_path = fast_path_setup.enable_fast_path(self.lm, compile=False)
        except Exception as exc:  # noqa: BLE001 -- any setup failure: generation still works, eagerly
            log.warning("fast path off, generating on the eager path: %s: %s", type(exc).__name__, exc)
            self.fast_path = None
        if self.fast_path is not None:
            self.scheduler.close()
            self.scheduler = dispatch.scheduler_for(self, self.fast_path)
        return self.fast_path

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> Engine:
        """Load the model named by config's `model:` section (flags in `overrides` win) and wrap it in an Engine.

        Args:
            config: the loaded config (steering.config.load_config).
            overrides: ModelSettings fields (name, device, dtype, ...), applied with steering.config.override;
                None values are ignored.

        Raises:
            SteeringError: the model cannot be loaded (see steering.models.load_model).
        """
        config = override(config, model=overrides, source="model settings")
        return cls(load_model(config.model), config)

    # ------------------------------------------------------------------ vectors
    @property
    def vectors_dir(self) -> Path:
        """The folder holding vectors/<behavior>/<model slug>.safetensors (config `vectors_dir`, resolved)."""
        return self.config.vectors_dir

    def behaviors(self) -> list[str]:
        """Names of the behaviors that have a vector file for this model in `vectors_dir`, sorted."""
        return available_behaviors(self.vectors_dir, self.lm.slug)

    def vectors_for(self, behavior: str) -> VectorSet:
        """The behavior's vector set for this model, loaded once and validated against the model.

        Args:
            behavior: a behavior name (steering.core.limits.check_behavior_name), never a path.

        Raises:
            SteeringError: invalid name, no vectors, or a file that does not fit the model. The message
                names no server path and no shell command (it may reach remote callers); the local
                details (file path, the command that makes the vectors) are in the error's `detail`.
        """
        if behavior not in self._vectors:
            path = vector_path(self.vectors_dir, behavior, self.lm.slug)  # refuses names that are not names
            if not path.exists():
                known = ", ".join(self.behaviors()) or "none yet"
                raise SteeringError(
                    f"no '{behavior}' vectors for {self.lm.name}; known behaviors: {known}",
                    detail=f"{path} is missing; make them with: python -m steering extract --behavior {behavior}"
                    + home_hint(),
                )
            try:
                vset = self.validated(load_vectors(path, self.lm.name, label=f"the '{behavior}' vector set"))
            except SteeringError as exc:
                raise SteeringError(str(exc), detail=f"file: {path}") from None
            self._vectors[behavior] = vset
        return self._vectors[behavior]

    def validated(self, vset: VectorSet) -> VectorSet:
        """`vset` checked against this model: sizes, layers, finite values, and norms bounded relative to
        the typical hidden-state norm at each layer (vector_set.MAX_RELATIVE_NORM); raises SteeringError."""
        vset.validate(self.lm.hidden_size, self.lm.num_layers)  # cheap checks before any model run
        return vset.validate(self.lm.hidden_size, self.lm.num_layers, hidden_norms=self.hidden_norms(vset.layers))

    def load_vector_file(self, path: str | Path, label: str | None = None) -> VectorSet:
        """A vector file or paper-layout folder (picking this model's files), validated against the model.

        Args:
            path: .safetensors, .gguf, .pt or a folder of vec_layer_<L>_<model>.pt files.
            label: how messages name the file instead of its path (e.g. the upload's own file name).
        """
        return self.validated(load_vectors(path, self.lm.name, label=label))

    def forget_vectors(self, behavior: str) -> None:
        """Drop the cached vector set and recipe of `behavior`, so the next use reads its files again."""
        self._vectors.pop(behavior, None)
        self._recipes.pop(behavior, None)

    # ------------------------------------------------------------------ recipes (steering/core/recipe.py)
    def recipe(self, behavior: str | None = None) -> Recipe:
        """The behavior's steering recipe for this model: its defaults file
        vectors/<behavior>/<model-slug>.defaults.json (written by `steering tune`) when there is one,
        else config.yaml's models: entry (CAA addition at one layer). Raises SteeringError for a broken file."""
        behavior = behavior or self.config.behavior
        if behavior not in self._recipes:
            found = load_defaults(defaults_path(self.vectors_dir, behavior, self.lm.slug))
            self._recipes[behavior] = (
                found.recipe
                if found is not None
                else config_recipe(self.config_defaults.layer, self.config_defaults.multiplier)
            )
        return self._recipes[behavior]

    def recipe_vectors(self, recipe: Recipe, behavior: str | None = None) -> VectorSet:
        """The vector set a recipe names (`recipe.vector`, relative to the home folder, config.home()) or the
        behavior's."""
        if recipe.vector:
            path = Path(recipe.vector)
            return self.load_vector_file(path if path.is_absolute() else home() / path)
        return self.vectors_for(behavior or self.config.behavior)

    def steering_plan(
        self,
        strengths: Sequence[float],
        recipe: Recipe | None = None,
        behavior: str | None = None,
        vector: torch.Tensor | None = None,
        layer: int | None = None,
        multiplier: float | None = None,
        mix: Any = None,
    ) -> SteeringPlan:
        """The hooks.SteeringPlan for rows of signed strengths x the recipe's strength.

        Args:
            strengths: per row, a signed factor of the strength (compare: +1, 0, -1).
            recipe: default self.recipe(behavior); `layer` / `multiplier` replace its anchor layer and
                strength (in the recipe's unit); `vector` (hidden,) replaces its vector at every layer
                of the band (e.g. an uploaded file's).
            mix: a steering.core.mixing.Mix (a second behavior and its multiplier alpha2); when active, row i adds
                strengths[i] x (alpha1 v1 + alpha2 v2) at the anchor layer (CAA addition; steering/core/mixing.py).
        Raises: SteeringError for a layer out of range, a multiplier over the cap, missing vectors.
        """
        if mix is not None and mix.active:
            return engine_plan(self, strengths, mix, recipe, behavior, vector, layer, multiplier)
        if multiplier is not None:
            multiplier = check_multiplier(multiplier, self.limits)
        if layer is not None:
            check_layer(layer, self.lm.num_layers)
        recipe = (recipe or self.recipe(behavior)).with_overrides(layer, multiplier)
        check_layer(recipe.layer, self.lm.num_layers)
        strength = check_multiplier(recipe.strength, self.limits)
        check_multiplier(recipe.minus_strength, self.limits, "subtracted-side strength")  # strength_minus
        source: Any = vector if vector is not None else self.recipe_vectors(recipe, behavior)
        return recipe.plan(
            source,
            [factor * strength for factor in strengths],
            self.lm.num_layers,
            hidden_norm=self.hidden_norm if recipe.unit == "relative" else None,
        )

    # ------------------------------------------------------------------ norms
    def hidden_norm(self, layer: int) -> float:
        """Typical L2 norm of the residual stream at `layer` (median over tokens of neutral prompts)."""
        check_layer(layer, self.lm.num_layers)
        return self.hidden_norms([layer])[layer]

    def hidden_norms(self, layers: Sequence[int]) -> dict[int, float]:
        """hidden_norm for several layers, measured in one pass per prompt and cached.

        Args:
            layers: decoder block indices (0..num_layers - 1).

        Returns:
            {layer: median L2 norm of that block's output over the tokens of 4 neutral chat prompts,
            the first token (an attention sink with outsized norm) left out}.
        """
        missing = sorted({check_layer(layer, self.lm.num_layers) for layer in layers} - set(self._norms))
        if missing:
            self._norms.update(measure_hidden_norms(self.lm, missing))
        return {layer: self._norms[layer] for layer in layers}

    def relative_norm(self, vector: torch.Tensor, layer: int) -> float:
        """The vector's L2 norm divided by the typical hidden-state norm at `layer` (see hidden_norm).

        Args:
            vector: (hidden_size,) tensor, residual-stream units.
            layer: decoder block index, 0..num_layers - 1.

        Returns:
            A unitless ratio (1.0: as long as a typical residual-stream vector at that layer).

        Raises:
            SteeringError: `layer` is out of range.
        """
        return float(vector.float().norm()) / self.hidden_norm(layer)

    # ------------------------------------------------------------------ generation
    check_request = dispatch.check_request  # the caps, without the model (steering/decode/dispatch.py)
    compare = comparison.compare  # the added / unsteered / subtracted panes (steering/compare.py)
    compare_batch = comparison.compare_batch

    generate_rows = comparison.generate_rows  # rows of signed strengths (the app's dose-response strip)

    def plain(
        self, conversation: Sequence[Message], settings: SamplingSettings, system_prompt: str | None = None
    ) -> str:
        """One unsteered reply, no hook at all (the reference the unsteered pane must equal)."""
        return self._generate([list(conversation)], settings, system_prompt).texts[0]

    _generate = dispatch.run_request  # the scheduler, the fast path or generate() (steering/decode/dispatch.py)
