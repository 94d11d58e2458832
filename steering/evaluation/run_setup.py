"""What one behavior's evaluation run settles before it runs anything (steering.evaluation.run): the vector set
and layers, the control layer and its controls, the multipliers of the A/B sweep and of the open-ended answers,
the sampling settings and the settings every output file records. Also `log`, the run's progress lines."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from steering.core.layers import check_layer
from steering.decode.generation import SamplingSettings
from steering.evaluation.controls import control_vectors
from steering.io.files import display_path


def log(message: str) -> None:
    """One progress line on stderr (the results go to files and stdout)."""
    print(message, file=sys.stderr, flush=True)


def default_multipliers(m: float) -> list[float]:
    """The A/B sweep's default multipliers around the default strength m: -2m -m -m/2 0 m/2 m 2m (m = 1 when 0)."""
    m = abs(m) or 1.0
    return [-2 * m, -m, -m / 2, 0.0, m / 2, m, 2 * m]


@dataclass
class RunSetup:
    """One behavior's run, settled: what the A/B part (steering.evaluation.ab_run) and the open-ended part
    (steering.evaluation.open_ended_run) steer with and record.

    Attributes:
        lm: the loaded model (steering.models.LoadedModel).
        behavior: the behavior's name; out: its output folder.
        recipe: the behavior's recipe at the control layer (operators, band, unit; steering.core.recipe).
        vset: the vector set (--vector, else the recipe's file); layers: the A/B sweep's layers.
        layer: the control layer (open-ended answers and controls); vector: (hidden_size,) its vector.
        default_layer, default_m: the behavior's default layer and strength (CAA multiplier units).
        multipliers: the A/B sweep's multipliers; open_multipliers: the open-ended ones, ascending.
        controls: {"random", "negated"} (hidden_size,) control vectors (steering.evaluation.controls).
        settings: greedy SamplingSettings of the open-ended answers.
        system_prompt: the system prompt of every prompt (None: the template's own).
        vector_source: how the files name the vector file.
        common: the settings every output file records.
    """

    lm: Any
    behavior: str
    out: Path
    recipe: Any
    vset: Any
    layers: list[int]
    layer: int
    vector: torch.Tensor
    default_layer: int
    default_m: float
    multipliers: list[float]
    open_multipliers: list[float]
    controls: dict[str, torch.Tensor]
    settings: SamplingSettings
    system_prompt: str | None
    vector_source: str
    common: dict[str, Any]


def prepare_run(args: Any, engine: Any, prepared: dict[str, Any]) -> RunSetup:
    """Settle one behavior's run from the `evaluate` flags and its checked inputs, before any model work.

    Args:
        args: the `evaluate` flags (--vector, --layers, --layer, --multipliers, --open-multipliers, --seed,
            --max-new-tokens).
        engine: the loaded steering.engine.Engine.
        prepared: the behavior's checked inputs (steering.cli.evaluate's _prepare).

    Returns:
        RunSetup.

    Raises:
        SteeringError: a layer out of range or missing from the vector set, or an open-ended question over
            the token budget (config limits:, the model's context).
    """
    lm = engine.lm
    behavior = prepared["behavior"]
    recipe = engine.recipe(behavior)  # the open-ended run's operators, band and unit
    default_layer = recipe.layer  # the behavior's own defaults (its tuned file, else config.yaml's)
    vset = engine.load_vector_file(args.vector) if args.vector else engine.recipe_vectors(recipe, behavior)
    layers = args.layers if args.layers else vset.layers
    for layer in layers:
        check_layer(layer, lm.num_layers)
        vset.vector(layer)
    layer = check_layer(args.layer if args.layer is not None else default_layer, lm.num_layers)
    vector = vset.vector(layer)
    recipe = recipe.with_overrides(layer=layer)
    default_m = recipe.strength
    m = abs(default_m) or 1.0
    open_multipliers = sorted(set(args.open_multipliers or args.multipliers or [-2 * m, -m, 0.0, m, 2 * m]))
    system_prompt = prepared["system_prompt"]
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    if prepared["questions"]:  # every open-ended question's token budget (config limits:, the context) first
        conversations = [[{"role": "user", "content": q}] for q in prepared["questions"]]
        engine.check_request(conversations, settings, system_prompt)
    vector_source = (
        display_path(Path(args.vector))
        if args.vector
        else recipe.vector or display_path(engine.vectors_dir / behavior / f"{lm.slug}.safetensors")
    )
    common = {
        "model": lm.name,
        "behavior": behavior,
        "vector_file": vector_source,
        "read_mode": vset.metadata.get("read_mode", "unknown"),
        "default_layer": default_layer,
        "default_multiplier": default_m,
        "control_layer": layer,
        "control_seed": args.seed,
        "vector_norm": round(float(vector.norm()), 4),
        "relative_norm": round(engine.relative_norm(vector, layer), 4),
        "system_prompt": system_prompt,
        "recipe": recipe.to_dict(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return RunSetup(
        lm=lm,
        behavior=behavior,
        out=prepared["out"],
        recipe=recipe,
        vset=vset,
        layers=list(layers),
        layer=layer,
        vector=vector,
        default_layer=default_layer,
        default_m=default_m,
        multipliers=list(args.multipliers or default_multipliers(default_m)),
        open_multipliers=open_multipliers,
        controls=control_vectors(vector, seed=args.seed),
        settings=settings,
        system_prompt=system_prompt,
        vector_source=vector_source,
        common=common,
    )
