"""`chat`: the added (+alpha), unsteered and subtracted (-alpha) answers to one prompt."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from steering.cli import loading
from steering.cli.common import add_model_flags, check_input_file, system_prompt
from steering.cli.common import parse_float as _float
from steering.cli.steer import add_steering_flags, behavior_recipe, sampling_settings, steering_choice
from steering.config import Config
from steering.core.behaviors import card_warning
from steering.core.limits import check_multiplier
from steering.errors import SteeringError


def register(sub: Any) -> None:
    """Add the `chat` sub-command (its flags) to the sub-parsers `sub`."""
    p = sub.add_parser("chat", help="print the added, unsteered and subtracted answers to one prompt")
    add_model_flags(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--multiplier", type=_float)
    p.add_argument("--json", action="store_true")
    add_steering_flags(p, "a vector file instead of vectors/<behavior>/ (.safetensors, .pt, .gguf)")
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace, config: Config) -> int:
    """`chat`: print the added (+alpha), unsteered and subtracted (-alpha) answers to one prompt.

    The three answers are generated in one batch by `Engine.compare`; the vector is `--vector` or the behavior's
    recipe (its vector file, built on first use when --build-vectors or the user agrees).

    Args:
        args: parsed flags of `chat` (--prompt, --multiplier, --layer, --behavior, --vector, --json, sampling).
        config: the loaded config.yaml tree.

    Returns:
        0; prints the three answers (or one JSON object with `added`, `unsteered`, `subtracted`, `settings`;
        `settings` names the steered `layers` and the `subtracted_multiplier` the recipe applied, which differs
        from -multiplier when the recipe gives that side its own strength).

    Raises:
        SteeringError: an empty prompt, bad sampling settings, a multiplier outside the configured limits, a
            missing vector file or layer, or a prompt over the token budget.
    """
    prompt = args.prompt.strip()  # as the app sends a message: the same answers for the same text
    if not prompt:
        raise SteeringError("--prompt is empty")
    settings = sampling_settings(args, config)  # checked before the model loads
    if args.vector:
        check_input_file(args.vector, "--vector", folder_ok=True)
    else:
        if warning := card_warning(config.datasets_dir, args.behavior):
            print(warning, file=sys.stderr)  # a broken card: say so in one line, then go on
    engine = loading.load_engine(args, config)
    vector, layer = steering_choice(engine, args)
    default_multiplier = engine.defaults.multiplier if args.vector else behavior_recipe(engine, args).strength
    multiplier = args.multiplier if args.multiplier is not None else default_multiplier
    multiplier = check_multiplier(
        multiplier,
        config.limits,
        "--multiplier" if args.multiplier is not None else "the default multiplier",
    )
    # the token budget (config limits:, the model's context) before generating
    engine.check_request([{"role": "user", "content": prompt}], settings, system_prompt(args, config))
    start = time.perf_counter()
    result = engine.compare(
        [{"role": "user", "content": prompt}],
        vector,
        layer,
        multiplier,
        settings,
        system_prompt=system_prompt(args, config),
        behavior=args.behavior,
    )
    seconds = time.perf_counter() - start
    added, unsteered, subtracted = result.texts
    recipe = behavior_recipe(engine, args).with_overrides(layer, multiplier)  # what Engine.compare steered with
    ratio = recipe.minus_ratio()  # rows of negative strength steer at |s| x ratio (the recipe's strength_minus)
    applied = lambda s: s * ratio if s < 0 else s  # noqa: E731  (what Recipe.plan steers a row of strength s with)
    minus = applied(-multiplier)
    layers = recipe.layers(engine.lm.num_layers)
    info = {
        "model": engine.lm.name,
        "behavior": args.behavior if not args.vector else args.vector,
        "layer": layer,
        "layers": layers,
        "multiplier": multiplier,
        "added_multiplier": round(applied(multiplier), 6),
        "subtracted_multiplier": round(minus, 6),
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
        "seconds": round(seconds, 2),
    }
    if args.json:
        print(
            json.dumps(
                {"added": added, "subtracted": subtracted, "unsteered": unsteered, "settings": info},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        band = f" (layers {layers[0]}-{layers[-1]})" if len(layers) > 1 else ""

        def label(s: float) -> str:  # "+1.5", "-1.5 x 1.33 = -2" (a negative row at the recipe's own strength)
            return f"{s:+g}" + (f" x {ratio:.3g} = {applied(s):+g}" if s < 0 and ratio != 1.0 else "")

        print(f"# {engine.lm.describe()} | {info['behavior']} layer {layer}{band} | alpha {multiplier:g}\n")
        print(f"[added {label(multiplier)}]\n{added}\n")
        print(f"[unsteered]\n{unsteered}\n")
        print(f"[subtracted {label(-multiplier)}]\n{subtracted}\n")
        print(f"({seconds:.1f} s for three answers in one batch)")
    return 0
