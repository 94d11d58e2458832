"""One behavior's evaluation run (`python -m steering evaluate`, whose command line is steering/cli/evaluate.py):
the A/B sweep over layers x multipliers with the random and negated controls (steering.evaluation.ab_run), the
open-ended answers with their judge score and coherence (steering.evaluation.open_ended_run), per-prompt
reliability, and the files they go into (OUTPUTS in --out). What both parts steer with is settled first
(steering.evaluation.run_setup)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from steering import evaluation as ev
from steering.config import Config
from steering.evaluation import reliability as rel
from steering.evaluation.ab_run import run_ab
from steering.evaluation.open_ended_run import run_open_ended
from steering.evaluation.run_setup import RunSetup, log, prepare_run
from steering.evaluation.summary import summary_markdown
from steering.io.files import write_json, write_text

OUTPUTS = (
    "ab_sweep.json",
    "ab_heatmap.png",
    "ab_controls.png",
    "open_ended.json",
    "open_ended.png",
    "reliability.json",
    "reliability.png",
    "summary.md",
)


def run_behavior(args: Any, config: Config, engine: Any, prepared: dict[str, Any]) -> dict:
    """Run one behavior's evaluation (A/B sweep, open-ended answers, controls, reliability) and write its files.

    Args:
        args: the `evaluate` flags (steering/cli/evaluate.py: --vector, --layers, --layer, --multipliers,
            --open-multipliers, --seed, --max-new-tokens, --no-ab, --no-negated, --batch-size, --gen-batch-size).
        config: the loaded config.yaml tree.
        engine: the loaded steering.engine.Engine.
        prepared: the behavior's checked inputs (steering.cli.evaluate's _prepare: behavior, ab_path, open_path,
            items, questions, out, judge, score_label, system_prompt).

    Returns:
        {"behavior", "ab": the A/B payload or None, "open_ended": the open-ended payload or None, "out"}.

    Raises:
        SteeringError: a layer out of range or without a vector, or a question over the token budget (before
            any model work).
    """
    started = time.perf_counter()
    run = prepare_run(args, engine, prepared)
    items, questions = prepared["items"], prepared["questions"]
    ab_plan = (
        "A/B: skipped (--no-ab)"
        if args.no_ab
        else f"{len(items)} A/B questions x {len(run.layers)} layers x {len(run.multipliers)} multipliers"
    )
    log(
        f"# {run.lm.describe()}\n# vector {run.vector_source} | {ab_plan} | open-ended: {len(questions)} questions "
        f"at layer {run.layer}"
    )
    ab_payload, ab_reliability = run_ab(args, config, run, items, prepared["ab_path"])
    open_payload, open_reliability = run_open_ended(
        args, engine, run, questions, prepared["open_path"], prepared["judge"], prepared["score_label"]
    )
    # per-prompt steerability (steering/evaluation/reliability.py), by measure
    measures = (("A/B", ab_reliability), ("open-ended", open_reliability))
    reliability = {name: value for name, value in measures if value is not None}
    if reliability:
        _write_reliability(run, reliability)
    total = time.perf_counter() - started
    text = summary_markdown(ab_payload, open_payload, total, np)
    if reliability:
        text += "\n".join(rel.markdown(reliability)) + "\n"
    write_text(run.out / "summary.md", text)
    print(text, end="")
    log(f"wrote {run.out / 'summary.md'} ({total:.0f} s in all)")
    return {"behavior": run.behavior, "ab": ab_payload, "open_ended": open_payload, "out": run.out}


def _write_reliability(run: RunSetup, reliability: dict[str, Any]) -> None:
    """reliability.json and reliability.png: per-prompt steerability by measure (Tan et al. 2024)."""
    write_json(
        run.out / "reliability.json",
        {
            "settings": {
                "model": run.lm.name,
                "behavior": run.behavior,
                "vector_file": run.vector_source,
                "ab_layer": run.layer,
                "recipe": run.recipe.to_dict(),
                "method": "per prompt: least-squares slope of the score against the multiplier "
                "(Tan et al. 2024); wrong way = slope < 0, Wilson 95% interval",
            },
            **{name: r.to_dict() for name, r in reliability.items()},
        },
        indent=1,
    )
    title = f"{run.lm.name} · {run.behavior} · per-prompt steerability"
    ev.save_figure(rel.plot_histograms(reliability, title), run.out / "reliability.png")
