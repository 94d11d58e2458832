"""Checks of every subcommand's flags, made before files are read or a model loads (one-line errors).

Checked by flag name, so every command (and any later one using the same names) gets the same rules.
"""

from __future__ import annotations

import argparse
from typing import Any

from steering.cli.common import check_destination
from steering.config import Config
from steering.core.limits import check_behavior_name, check_finite, check_multiplier, check_new_tokens, check_seed
from steering.errors import SteeringError

# Flags that count something, in any subcommand: whole numbers >= 1 (a batch size of -3, a limit of 0 or
# --max-pairs -2, which used to drop the last two pairs, are refused in one line before the model loads).
COUNT_FLAGS = (
    "batch_size",
    "gen_batch_size",
    "max_pairs",
    "limit",
    "limit_ab",
    "limit_open",
    "max_new_tokens",
    "threads",
    "tokens",
    "repeats",
    "hook_repeats",
    "pairs",
    "extract_repeats",
    "load_repeats",
    "layers_7b",
    "batch_rows",
)


# Output paths of commands that write them only at the end (extract, test, evaluate and export-gguf check
# theirs in the command): (flag dest, is a folder).
OUTPUT_FLAGS = {"bench": (("json", False), ("work_dir", True)), "tune": (("out", False), ("cache", False))}


def flag_name(dest: str) -> str:
    """The flag of an argparse destination: "max_new_tokens" -> "--max-new-tokens"."""
    return "--" + dest.replace("_", "-")


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def check_arguments(args: argparse.Namespace, config: Config) -> None:  # noqa: C901 (a flat list of checks)
    """Refuse bad flag values of any subcommand in one line, before files are read or a model loads.

    Checked by flag name, so every command (and any later one using the same names) gets the same rules:
    counts (COUNT_FLAGS) >= 1; --max-new-tokens within config limits.max_new_tokens; --layer/--layers >= 0;
    --multiplier, --strengths and every --*multipliers value finite with |value| <= limits.max_abs_multiplier;
    every other number finite; --seed in 0..2**63-1; --temperature >= 0; --top-p in (0, 1]; --behavior a
    name, never a path; the OUTPUT_FLAGS destinations writable.

    Raises:
        SteeringError: the first bad value, named with its flag.
    """
    limits = config.limits
    values = vars(args)
    for dest in COUNT_FLAGS:
        for value in _as_list(values.get(dest)):
            if isinstance(value, int) and value < 1:
                raise SteeringError(f"{flag_name(dest)} must be at least 1, got {value}")
    if values.get("max_new_tokens") is not None:
        check_new_tokens(values["max_new_tokens"], limits, "--max-new-tokens")
    for dest in ("layer", "layers"):
        for layer in _as_list(values.get(dest)):
            if layer < 0:
                raise SteeringError(f"{flag_name(dest)}: layer {layer} is out of range: layers count from 0")
    for dest, value in values.items():
        if dest in ("multiplier", "strengths") or dest.endswith("multipliers"):
            for number in _as_list(value):
                check_multiplier(number, limits, flag_name(dest))
        for number in _as_list(value):  # every other number flag of any command: finite
            if isinstance(number, float):
                check_finite(number, flag_name(dest))
    if values.get("seed") is not None:
        check_seed(values["seed"], "--seed")
    if values.get("temperature") is not None and check_finite(values["temperature"], "--temperature") < 0:
        raise SteeringError(f"--temperature must be 0 (greedy) or more, got {values['temperature']:g}")
    if values.get("top_p") is not None and not 0 < check_finite(values["top_p"], "--top-p") <= 1:
        raise SteeringError(f"--top-p must be in (0, 1], got {values['top_p']:g}")
    if "behavior" in values:
        check_behavior_name(values["behavior"])
    for dest, folder in OUTPUT_FLAGS.get(values.get("command"), ()):  # refused now, not after the whole run
        if isinstance(values.get(dest), str) and not values.get("dry_run"):
            check_destination(values[dest], flag_name(dest), folder=folder)
