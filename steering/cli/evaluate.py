"""`python -m steering evaluate`: the A/B sweep, open-ended refusal rate and coherence, controls.

The command line: flags, the checks of every input before the model loads, one behavior or all of them. The run
itself is steering.evaluation.run (run_behavior), imported when the command runs (the Markdown is
steering.evaluation.summary), so building the parser (and `--help`) does not import torch.

Outputs in --out (default <results_dir>/eval/, config.yaml's results folder: results/ of the checkout):
  ab_sweep.json       mean normalised p(match) per layer x multiplier, controls at the chosen layer
  ab_heatmap.png      the sweep as a heatmap, the default layer/multiplier outlined
  ab_controls.png     p(match) against the multiplier at the chosen layer: vector, random, negated
  open_ended.json     per multiplier: refusal rate, distinct-3 share, perplexity; every answer
  open_ended.png      refusal rate, distinct-3 share and perplexity against the multiplier, with controls
  reliability.json    per-prompt steerability (Tan et al. 2024): slope of the score against the multiplier
                      for every A/B question and open-ended question, mean slope, wrong-way share + Wilson CI
  reliability.png     histograms of those slopes
  summary.md          the numbers above in a few lines

Per behavior: the open-ended score is the share of answers the behavior card's judge counts
(steering/core/behaviors.py; refusal: its phrase list), the test files are the behavior's own, and the default --out
is results/eval/<behavior>/. `--behavior all` runs every shipped behavior (a datasets/<behavior>/ folder with a
behavior.yaml) that has vectors for the model, each into <out>/<behavior>/, and writes the table of all of them
(score at -α / 0 / +α, the random control at +α, where the text breaks down) to <out>/behaviors.md.

The open-ended run uses the behavior's steering recipe (steering/core/recipe.py: the tuned defaults file
vectors/<behavior>/<model>.defaults.json, else config.yaml's CAA addition): its band, operators and
unit, with multipliers in the recipe's unit; the A/B sweep is CAA addition at one layer per cell.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
from pathlib import Path
from typing import Any

from steering.cli import loading
from steering.cli.common import (
    add_answer_flags,
    add_behavior_command,
    check_destination,
    check_input_file,
    system_prompt,
)
from steering.cli.common import parse_float as _float
from steering.config import PROJECT_ROOT, Config
from steering.core.behaviors import judge_for, load_card, shipped_behaviors
from steering.core.datasets import load_ab_dataset, load_open_ended
from steering.core.limits import check_behavior_name
from steering.errors import SteeringError
from steering.evaluation.summary import behaviors_table
from steering.io.files import write_text

ALL = "all"  # --behavior all: every shipped behavior with vectors for the model


def register(sub: Any) -> None:
    """Add the `evaluate` sub-command (its flags; --behavior's help lists the shipped behaviors) to `sub`."""
    p = add_behavior_command(
        sub,
        "evaluate",
        "A/B sweep over layers x multipliers, open-ended refusal rate and coherence, with random and negated controls",
    )
    p.add_argument("--vector", help="a vector file instead of vectors/<behavior>/<model>.safetensors")
    p.add_argument("--ab", help="A/B test questions (default: datasets/<behavior>/test_ab.json)")
    p.add_argument("--open-ended", help="open-ended questions (default: datasets/<behavior>/test_open_ended.json)")
    p.add_argument("--layers", type=int, nargs="+", help="A/B sweep layers (default: every layer of the vector set)")
    p.add_argument(
        "--multipliers",
        type=_float,
        nargs="+",
        help="A/B sweep multipliers (default: -2m -m -m/2 0 m/2 m 2m, m = the model's default)",
    )
    p.add_argument("--layer", type=int, help="layer of the open-ended run and the controls (default: the model's)")
    p.add_argument(
        "--open-multipliers",
        type=_float,
        nargs="+",
        help="open-ended multipliers (default: --multipliers if given, else -2m -m 0 m 2m)",
    )
    add_answer_flags(p, 48, "--gen-batch-size", "open-ended")
    p.add_argument("--limit-ab", type=int, help="only the first N A/B questions")
    p.add_argument("--limit-open", type=int, help="only the first N open-ended questions")
    p.add_argument("--no-open-ended", action="store_true", help="A/B sweep only")
    p.add_argument(
        "--no-ab", action="store_true", help="open-ended only (the summary reuses --out/ab_sweep.json when it is there)"
    )
    p.add_argument(
        "--no-negated",
        action="store_true",
        help="open-ended answers without the negated control (for CAA addition it repeats the vector at -α)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random control vector (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="A/B questions per batch (default 16)")
    p.add_argument(
        "--out",
        help="output folder (default: results/eval/<behavior>/ for one behavior; "
        "for --behavior all, results/eval/ with one <behavior>/ folder each)",
    )

    names = ", ".join(shipped_behaviors(PROJECT_ROOT / "datasets")) or "none"
    for action in p._actions:  # add_behavior_command's --behavior: say which names evaluate takes
        if action.dest == "behavior":
            action.help = f"the behavior to evaluate: one of {names}, or {ALL} (every one with vectors)"
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    """`evaluate`: one behavior (--behavior X, results in --out, default results/eval/X/), or every shipped
    behavior that has vectors for the model (--behavior all: each in <out>/<behavior>/, default results/eval/,
    then the per-behavior table <out>/behaviors.md, printed). Inputs are checked before the model loads.

    Raises:
        SteeringError: bad flags, files or cards (one line); --behavior all with --vector, --ab or --open-ended.
    """
    # the counts and multipliers are checked by flag name before this (steering.cli.checks.check_arguments)
    if args.behavior == ALL:
        return _evaluate_all(args, config, loading.load_engine)
    _check_known(config, args.behavior, given_files=bool(args.ab and (args.open_ended or args.no_open_ended)))
    if args.vector:
        check_input_file(args.vector, "--vector", folder_ok=True)
    prepared = _prepare(args, config, args.behavior, args.out)
    from steering.evaluation.run import run_behavior  # lazy: imports torch (--help stays fast)

    run_behavior(args, config, loading.load_engine(args, config), prepared)
    return 0


def _check_known(config: Config, behavior: str, given_files: bool = False) -> None:
    """A behavior without a datasets/<behavior>/ folder is an error naming the known ones (unless --ab and the
    open-ended file are given, which need no folder).

    Raises:
        SteeringError: "unknown behavior 'x'; known: a, b, ..., all".
    """

    datasets = config.datasets_dir
    if given_files or (datasets / check_behavior_name(behavior)).is_dir():
        return
    known = shipped_behaviors(datasets) + [ALL]
    raise SteeringError(f"unknown behavior '{behavior}'; known: {', '.join(known)}")


def _prepare(args: argparse.Namespace, config: Config, behavior: str, out: str | Path | None) -> dict[str, Any]:
    """A behavior's inputs, read and checked before the model loads: its A/B and open-ended test questions
    (--ab / --open-ended, else datasets/<behavior>/test_ab.json and test_open_ended.json), its judge
    (steering.core.behaviors.judge_for: the card's) and the output folder (default results/eval/<behavior>/)."""

    folder = config.datasets_dir / check_behavior_name(behavior)
    ab_path = Path(args.ab) if args.ab else folder / "test_ab.json"
    open_path = Path(args.open_ended) if args.open_ended else folder / "test_open_ended.json"
    limits = config.limits
    items = load_ab_dataset(check_input_file(ab_path, "--ab"), "letter", limits)[: args.limit_ab]
    questions = (
        []
        if args.no_open_ended
        else load_open_ended(check_input_file(open_path, "--open-ended"), limits)[: args.limit_open]
    )
    out = check_destination(out or config.results_dir / "eval" / behavior, "--out", folder=True)
    judge = judge_for(config, behavior)
    try:
        card = load_card(config.datasets_dir, behavior)
        label = "refusal rate" if behavior == "refusal" else f"{card.name.lower()} rate"
    except SteeringError:  # no card (refusal without one, or another folder): the judge above decided
        label = f"{behavior} rate"
    return {
        "behavior": behavior,
        "ab_path": ab_path,
        "open_path": open_path,
        "items": items,
        "questions": questions,
        "out": out,
        "judge": judge,
        "score_label": label,
        "system_prompt": system_prompt(args, config),
    }


def _evaluate_all(args: argparse.Namespace, config: Config, make_engine: Any) -> int:
    """--behavior all: every shipped behavior with vectors for the model, one model load, then the table.

    Every card and test file is checked before the model loads; a behavior without vectors for the model is
    listed in the table as such (not an error).
    """
    from steering.evaluation.run import run_behavior  # lazy: imports torch (--help stays fast)
    from steering.evaluation.run_setup import log

    for value, flag in ((args.vector, "--vector"), (args.ab, "--ab"), (args.open_ended, "--open-ended")):
        if value:
            raise SteeringError(f"{flag} names one behavior's file: it cannot be used with --behavior {ALL}")
    behaviors = shipped_behaviors(config.datasets_dir)
    if not behaviors:
        raise SteeringError(f"--behavior {ALL}: no behavior ships (no datasets/<behavior>/behavior.yaml)")
    base = Path(args.out) if args.out else config.results_dir / "eval"
    prepared = [_prepare(args, config, b, base / b) for b in behaviors]
    engine = make_engine(args, config)
    have = set(engine.behaviors())
    results: list[dict[str, Any]] = []
    for prep in prepared:
        if prep["behavior"] not in have:
            log(f"# {prep['behavior']}: no vectors for {engine.lm.name}, skipped")
            results.append({"behavior": prep["behavior"], "ab": None, "open_ended": None, "out": prep["out"]})
            continue
        log(f"\n# ---- {prep['behavior']}")
        one = copy.copy(args)
        one.behavior = prep["behavior"]
        results.append(run_behavior(one, config, engine, prep))
        pending = [p["behavior"] for p in prepared[len(results) :]]
        if pending:  # the table so far, so that a long run stopped half-way still leaves one
            write_text(
                base / "behaviors.md",
                behaviors_table(results, engine.lm.name, _command_line(args), base)
                + f"\nNot run yet (the run was still going): {', '.join(pending)}.\n",
            )
    text = behaviors_table(results, engine.lm.name, command=_command_line(args), out=base)
    write_text(base / "behaviors.md", text)
    print(text, end="")
    log(f"wrote {base / 'behaviors.md'}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed (sys.argv), for the table's header."""
    return "python -m steering " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
