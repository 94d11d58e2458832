"""`test`: answer open-ended questions at several multipliers (the paper's test.py, open-ended part)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from steering.cli import loading
from steering.cli.common import add_model_flags, check_destination, check_input_file
from steering.cli.common import parse_float as _float
from steering.cli.common import system_prompt as _system_prompt
from steering.cli.steer import add_steering_flags, read_mode_of, sampling_settings, steering_choice
from steering.config import Config
from steering.core.datasets import load_open_ended
from steering.io.files import write_json


def register(sub: Any) -> None:
    """Add the `test` sub-command (its flags) to the sub-parsers `sub`."""
    p = sub.add_parser("test", help="answer open-ended questions at several multipliers (the paper's test.py)")
    add_model_flags(p)
    p.add_argument("--questions", help="default: datasets/<behavior>/test_open_ended.json")
    p.add_argument("--multipliers", type=_float, nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--batch-size", type=int, default=8, help="questions per batch (3 rows each)")
    add_steering_flags(p)
    p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace, config: Config) -> int:
    """`test`: answer open-ended questions at several multipliers (the paper's test.py, open-ended part).

    For each multiplier writes `<out>/test_results_x<multiplier>.json` with the added, subtracted and unsteered
    answer per question, and the settings (model, layer, recipe, sampling) used.

    Args:
        args: parsed flags of `test` (--questions, --multipliers, --out, --layer, --vector, --limit,
            --batch-size, sampling).
        config: the loaded config.yaml tree.

    Returns:
        0 once every file is written.

    Raises:
        SteeringError: a missing or malformed questions file, an unwritable --out folder, a missing vector, or a
            question over the token budget (all checked before the first answer).
    """
    from tqdm.auto import tqdm  # lazy: only when the command runs

    questions_path = Path(args.questions or config.datasets_dir / args.behavior / "test_open_ended.json")
    check_input_file(questions_path, "--questions")
    questions = load_open_ended(questions_path)
    if args.limit:
        questions = questions[: args.limit]
    settings = sampling_settings(args, config)
    out = check_destination(args.out, "--out", folder=True)  # before the model loads, not after the first answers
    if args.vector:
        check_input_file(args.vector, "--vector", folder_ok=True)
    engine = loading.load_engine(args, config)
    vector, layer = steering_choice(engine, args)
    system_prompt = _system_prompt(args, config)
    # every question's token budget before the first answer (not a failure halfway through the files)
    engine.check_request([[{"role": "user", "content": q}] for q in questions], settings, system_prompt)
    for multiplier in args.multipliers:
        results = []
        with tqdm(total=len(questions), desc=f"x{multiplier:g}", unit="q") as bar:
            for start in range(0, len(questions), args.batch_size):
                chunk = questions[start : start + args.batch_size]
                for question, texts in zip(
                    chunk,
                    engine.compare_batch(
                        chunk, vector, layer, multiplier, settings, system_prompt=system_prompt, behavior=args.behavior
                    ),
                ):
                    results.append(
                        {
                            "question": question,
                            "added": texts["added"],
                            "subtracted": texts["subtracted"],
                            "unsteered": texts["unsteered"],
                        }
                    )
                bar.update(len(chunk))
        payload = {
            "settings": {
                "model": engine.lm.name,
                "behavior": args.behavior,
                "layer": layer,
                "multiplier": multiplier,
                "read_mode": read_mode_of(engine, args),
                "max_new_tokens": settings.max_new_tokens,
                "seed": settings.seed,
                "temperature": settings.temperature,
                "batch_size": args.batch_size,
                "recipe": engine.recipe(args.behavior).with_overrides(layer, multiplier).to_dict(),
            },
            "results": results,
        }
        path = out / f"test_results_x{multiplier:g}.json"
        write_json(path, payload)
        print(f"wrote {path}")
    return 0
