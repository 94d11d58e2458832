"""What `chat` and `test` share: the sampling flags and settings, and the vector and layer a command steers with."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from steering.cli.build_vectors import ensure_vectors
from steering.cli.checks import flag_name
from steering.cli.common import parse_float as _float
from steering.config import Config, override
from steering.core.limits import check_finite, check_new_tokens, check_seed
from steering.errors import SteeringError


def add_steering_flags(p: argparse.ArgumentParser, vector_help: str | None = None) -> None:
    """Add what `chat` and `test` steer with: --layer, --behavior, --vector (help `vector_help`), the sampling
    flags --max-new-tokens, --temperature, --top-p, --seed, --system-prompt (each overrides config `generation:`)
    and --build-vectors (build a missing vector file first, see steering_choice)."""
    p.add_argument("--layer", type=int)
    p.add_argument("--behavior", default=None)
    p.add_argument("--vector", help=vector_help)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=_float, help="0 = greedy")
    p.add_argument("--top-p", type=_float)
    p.add_argument("--seed", type=int)
    p.add_argument("--system-prompt")
    p.add_argument(
        "--build-vectors",
        action="store_true",
        help="no vectors for this model yet: build them from the behavior's dataset first",
    )


def sampling_settings(args: argparse.Namespace, config: Config) -> Any:
    """The sampling settings of a command: its flags, else config `generation:`, checked against `limits:`.

    Raises:
        SteeringError: a value that is not a number, not finite, or out of range (seed outside
            0..2**63-1, max_new_tokens outside 1..limits.max_new_tokens, temperature < 0, top_p outside (0, 1]).
    """
    from steering.decode.generation import SamplingSettings  # lazy: imports torch

    flags = {name: getattr(args, name, None) for name in ("max_new_tokens", "temperature", "top_p", "seed")}
    if flags["max_new_tokens"] is not None:  # named by its flag (override would name the config key)
        check_new_tokens(flags["max_new_tokens"], config.limits, "--max-new-tokens")
    gen = override(config, generation=flags, source="command line").generation  # the flags over config

    def where(name: str) -> str:  # the flag or config key a bad value came from
        return flag_name(name) if flags[name] is not None else f"config generation.{name}"

    check_new_tokens(gen.max_new_tokens, config.limits, where("max_new_tokens"))
    values = {name: check_finite(getattr(gen, name), where(name)) for name in ("temperature", "top_p")}
    try:
        return SamplingSettings(
            max_new_tokens=gen.max_new_tokens,
            temperature=values["temperature"],
            top_p=values["top_p"],
            seed=None if gen.seed is None else check_seed(gen.seed, where("seed")),
        )
    except (ValueError, TypeError) as exc:
        raise SteeringError(f"generation settings: {exc}") from None


def behavior_recipe(engine: Any, args: argparse.Namespace) -> Any:
    """The --behavior's recipe for the loaded model (its tuned defaults file, else config.yaml's)."""
    return engine.recipe(args.behavior)


def steering_choice(engine: Any, args: argparse.Namespace) -> tuple[Any, int]:
    """The vector, layer and multiplier a command uses: flags first, then the model's defaults."""
    from steering.core.layers import check_layer  # lazy: imports torch

    # the default layer is the chosen behavior's own (its tuned recipe), not the config's default behavior's
    default = engine.defaults.layer if getattr(args, "vector", None) else behavior_recipe(engine, args).layer
    layer = check_layer(args.layer if args.layer is not None else default, engine.lm.num_layers)
    if not getattr(args, "vector", None):  # None: the engine steers with the behavior's recipe (its vector file)
        # no vectors yet for this model: build them (first use)
        if (
            ensure_vectors(
                engine,
                args.behavior,
                build=bool(getattr(args, "build_vectors", False)),
                ask=input if sys.stdin.isatty() else None,
            )
            is not None
            and args.layer is None
        ):
            layer = engine.recipe(args.behavior).layer  # the model's default layer until tuned
        engine.recipe_vectors(engine.recipe(args.behavior), args.behavior).vector(layer)  # checked before generating
        return None, layer
    return engine.load_vector_file(args.vector).vector(layer), layer


def read_mode_of(engine: Any, args: argparse.Namespace) -> str:
    """The read mode recorded in the vector file a command steers with (--vector, else the behavior's)."""
    if getattr(args, "vector", None):
        return engine.load_vector_file(args.vector).metadata.get("read_mode", "unknown")
    return engine.vectors_for(args.behavior).metadata.get("read_mode", "unknown")
