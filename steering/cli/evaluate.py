"""`python -m steering evaluate`: the A/B sweep, open-ended refusal rate and coherence, controls.

Kept apart from steering.evaluation so that building the parser (and `--help`) does not import torch.

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
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steering.cli import loading
from steering.core.prompts import pad_token_id
from steering.errors import SteeringError
from steering.io.files import write_json, write_text

ALL = "all"  # --behavior all: every shipped behavior with vectors for the model
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


def register(sub: Any) -> None:
    """Add the `evaluate` sub-command (its flags; --behavior's help lists the shipped behaviors) to `sub`."""
    from steering.cli.common import add_behavior_command
    from steering.cli.common import parse_float as _float

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
    p.add_argument("--max-new-tokens", type=int, default=48, help="open-ended answer length (default 48)")
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
    p.add_argument("--gen-batch-size", type=int, default=64, help="open-ended rows per batch (default 64)")
    p.add_argument("--system-prompt")
    p.add_argument(
        "--out",
        help="output folder (default: results/eval/<behavior>/ for one behavior; "
        "for --behavior all, results/eval/ with one <behavior>/ folder each)",
    )
    from steering.config import PROJECT_ROOT
    from steering.core.behaviors import shipped_behaviors

    names = ", ".join(shipped_behaviors(PROJECT_ROOT / "datasets")) or "none"
    for action in p._actions:  # add_behavior_command's --behavior: say which names evaluate takes
        if action.dest == "behavior":
            action.help = f"the behavior to evaluate: one of {names}, or {ALL} (every one with vectors)"
    p.set_defaults(func=cmd_evaluate)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_count(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise SteeringError(f"{flag} must be at least 1, got {value}")


def _check_multipliers(values: list[float] | None, flag: str, config: dict[str, Any]) -> None:
    """Each multiplier finite and within config limits.max_abs_multiplier (steering.core.limits.check_multiplier)."""
    from steering.core.limits import Limits, check_multiplier

    for value in values or []:
        check_multiplier(value, Limits.from_config(config), flag)


def _default_multipliers(m: float) -> list[float]:
    m = abs(m) or 1.0
    return [-2 * m, -m, -m / 2, 0.0, m / 2, m, 2 * m]


def cmd_evaluate(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """`evaluate`: one behavior (--behavior X, results in --out, default results/eval/X/), or every shipped
    behavior that has vectors for the model (--behavior all: each in <out>/<behavior>/, default results/eval/,
    then the per-behavior table <out>/behaviors.md, printed). Inputs are checked before the model loads.

    Raises:
        SteeringError: bad flags, files or cards (one line); --behavior all with --vector, --ab or --open-ended.
    """
    for value, flag in (
        (args.limit_ab, "--limit-ab"),
        (args.limit_open, "--limit-open"),
        (args.max_new_tokens, "--max-new-tokens"),
        (args.batch_size, "--batch-size"),
        (args.gen_batch_size, "--gen-batch-size"),
    ):
        _check_count(value, flag)
    _check_multipliers(args.multipliers, "--multipliers", config)
    _check_multipliers(args.open_multipliers, "--open-multipliers", config)
    if args.behavior == ALL:
        return _evaluate_all(args, config, loading.load_engine)
    _check_known(config, args.behavior, given_files=bool(args.ab and (args.open_ended or args.no_open_ended)))
    if args.vector:
        from steering.cli.common import check_input_file

        check_input_file(args.vector, "--vector", folder_ok=True)
    prepared = _prepare(args, config, args.behavior, args.out)
    _evaluate(args, config, loading.load_engine(args, config), prepared)
    return 0


def _check_known(config: dict[str, Any], behavior: str, given_files: bool = False) -> None:
    """A behavior without a datasets/<behavior>/ folder is an error naming the known ones (unless --ab and the
    open-ended file are given, which need no folder).

    Raises:
        SteeringError: "unknown behavior 'x'; known: a, b, ..., all".
    """
    from steering.config import data_dir as _data_dir
    from steering.core.behaviors import shipped_behaviors
    from steering.core.limits import check_behavior_name

    datasets = _data_dir(config, "datasets_dir")
    if given_files or (datasets / check_behavior_name(behavior)).is_dir():
        return
    known = shipped_behaviors(datasets) + [ALL]
    raise SteeringError(f"unknown behavior '{behavior}'; known: {', '.join(known)}")


def _prepare(args: argparse.Namespace, config: dict[str, Any], behavior: str, out: str | Path | None) -> dict[str, Any]:
    """A behavior's inputs, read and checked before the model loads: its A/B and open-ended test questions
    (--ab / --open-ended, else datasets/<behavior>/test_ab.json and test_open_ended.json), its judge
    (steering.core.behaviors.judge_for: the card's) and the output folder (default results/eval/<behavior>/)."""
    from steering.cli.common import check_destination, check_input_file
    from steering.config import data_dir as _data_dir
    from steering.core.behaviors import judge_for, load_card
    from steering.core.datasets import load_ab_dataset, load_open_ended
    from steering.core.limits import Limits, check_behavior_name

    folder = _data_dir(config, "datasets_dir") / check_behavior_name(behavior)
    ab_path = Path(args.ab) if args.ab else folder / "test_ab.json"
    open_path = Path(args.open_ended) if args.open_ended else folder / "test_open_ended.json"
    limits = Limits.from_config(config)
    items = load_ab_dataset(check_input_file(ab_path, "--ab"), "letter", limits)[: args.limit_ab]
    questions = (
        []
        if args.no_open_ended
        else load_open_ended(check_input_file(open_path, "--open-ended"), limits)[: args.limit_open]
    )
    out = check_destination(out or Path(config["results_dir"]) / "eval" / behavior, "--out", folder=True)
    judge = judge_for(config, behavior)
    try:
        card = load_card(_data_dir(config, "datasets_dir"), behavior)
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
    }


def _evaluate(args: argparse.Namespace, config: dict[str, Any], engine: Any, prepared: dict[str, Any]) -> dict:
    """Run one behavior's evaluation (A/B sweep, open-ended answers, controls, reliability) and write its files.

    Returns:
        {"behavior", "ab": the A/B payload or None, "open_ended": the open-ended payload or None, "out"}.
    """
    import numpy as np

    from steering import evaluation as ev
    from steering.cli.common import display_path as _display_path
    from steering.cli.common import system_prompt as _system_prompt
    from steering.core.layers import check_layer
    from steering.core.limits import Limits, model_context_length
    from steering.decode.generation import SamplingSettings
    from steering.evaluation import reliability as rel

    started = time.perf_counter()
    behavior, ab_path, open_path = prepared["behavior"], prepared["ab_path"], prepared["open_path"]
    items, questions, out, detector = prepared["items"], prepared["questions"], prepared["out"], prepared["judge"]
    score_label = prepared["score_label"]
    lm = engine.lm
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
    multipliers = args.multipliers or _default_multipliers(default_m)
    m = abs(default_m) or 1.0
    open_multipliers = sorted(set(args.open_multipliers or args.multipliers or [-2 * m, -m, 0.0, m, 2 * m]))
    system_prompt = _system_prompt(args, config)
    controls = ev.control_vectors(vector, seed=args.seed)
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    if questions:  # every open-ended question's token budget (config limits:, the context) before any work
        engine.check_request([[{"role": "user", "content": q}] for q in questions], settings, system_prompt)
    vector_source = (
        _display_path(Path(args.vector))
        if args.vector
        else recipe.vector or _display_path(engine.vectors_dir / behavior / f"{lm.slug}.safetensors")
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
    ab_plan = (
        "A/B: skipped (--no-ab)"
        if args.no_ab
        else f"{len(items)} A/B questions x {len(layers)} layers x {len(multipliers)} multipliers"
    )
    _log(
        f"# {lm.describe()}\n# vector {vector_source} | {ab_plan} | open-ended: {len(questions)} questions at "
        f"layer {layer}"
    )

    reliability: dict[str, Any] = {}  # per-prompt steerability (steering/evaluation/reliability.py), by measure
    # ------------------------------------------------------------ A/B sweep (+ controls at `layer`)
    out.mkdir(parents=True, exist_ok=True)
    if args.no_ab:
        ab_payload = _previous_ab(out / "ab_sweep.json", lm.name)
    else:
        specs = [(at, vset.vector(at)) for at in layers] + [
            (layer, vector),
            (layer, controls["random"]),
            (layer, controls["negated"]),
        ]
        prompts = ev.ab_prompts(
            lm.tokenizer,
            items,
            system_prompt,
            context_length=model_context_length(lm.model),
            max_tokens=Limits.from_config(config).max_prompt_tokens,
        )
        t0 = time.perf_counter()
        with lm.lock:
            ab = ev.ab_probabilities(
                lm.model,
                prompts,
                specs,
                multipliers,
                args.batch_size,
                pad_token_id(lm.tokenizer),
                on_progress=lambda d, n: _log(f"A/B: {d}/{n} questions"),
            )
        ab_seconds = time.perf_counter() - t0
        mean_p, mean_mass = ab.p.mean(-1), ab.mass.mean(-1)
        n = len(layers)
        curves = {"vector": mean_p[n], "random": mean_p[n + 1], "negated": mean_p[n + 2]}
        sweep = mean_p[:n]
        effect = _effect_by_layer(sweep, multipliers, default_m)
        ab_payload = {
            "settings": {
                **common,
                "dataset": _display_path(ab_path),
                "questions": len(items),
                "measure": "mean over questions of p(matching letter) / (p(A) + p(B)) at the token after '('",
                "seconds": round(ab_seconds, 1),
            },
            "layers": list(layers),
            "multipliers": list(multipliers),
            "p_match": _rounded(sweep),
            "letter_mass": _rounded(mean_mass[:n]),
            "controls": {"layer": layer, **{k: _rounded(v) for k, v in curves.items()}},
            "effect_by_layer": effect,
        }
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "ab_sweep.json", ab_payload, indent=1)
        default_cell = (default_layer, default_m)
        ev.save_figure(
            ev.plot_heatmap(
                sweep,
                layers,
                multipliers,
                default=default_cell,
                title=f"{lm.name} · {behavior} · A/B p(match), {len(items)} questions",
            ),
            out / "ab_heatmap.png",
        )
        ev.save_figure(ev.plot_ab_curves(curves, multipliers, layer), out / "ab_controls.png")
        if len(set(multipliers)) > 1:  # per question: p(match) against alpha, the vector at the control layer
            reliability["A/B"] = rel.summarize(multipliers, ab.p[n].T, "p(matching letter)")
        _log(f"A/B sweep: {ab_seconds:.1f} s; wrote {out / 'ab_sweep.json'}, ab_heatmap.png, ab_controls.png")

    # ------------------------------------------------------------ open-ended
    open_payload = None
    if questions:
        positive = [m for m in open_multipliers if m > 0]
        variants = {
            "vector": (vector if recipe.shared_vector else vset, list(open_multipliers)),
            "random": (controls["random"], positive),
            "negated": (controls["negated"], positive),
        }
        if args.no_negated:  # for plain addition, -v at +α is the vector at -α: the same answers
            del variants["negated"]
        t0 = time.perf_counter()
        with lm.lock:
            answers = ev.open_ended_answers(
                lm.model,
                lm.tokenizer,
                questions,
                layer,
                variants,
                settings,
                detector,
                system_prompt,
                batch_size=args.gen_batch_size,
                on_progress=lambda d, n: _log(f"open-ended: {d}/{n} answers"),
                recipe=recipe,
                hidden_norm=engine.hidden_norm,
            )
        open_seconds = time.perf_counter() - t0
        summary = ev.summarize_answers(
            answers, {name: open_multipliers if name == "vector" else [0.0] + positive for name in variants}
        )
        breakdown = ev.breakdown_multiplier(summary["vector"])
        open_payload = {
            "settings": {
                **common,
                "dataset": _display_path(open_path),
                "questions": len(questions),
                "layer": layer,
                "max_new_tokens": settings.max_new_tokens,
                "decoding": "greedy",
                "judge": detector.to_dict(),
                "score": score_label,
                **({"refusal_phrases": list(detector.phrases)} if behavior == "refusal" else {}),
                "coherence": "distinct3 = share of distinct word trigrams (falls with repetition); "
                "perplexity = exp(median per-answer mean NLL) under the unsteered model "
                "(rises with garbled text)",
                "breakdown_rule": "smallest |multiplier| with distinct3 < 0.85 x unsteered or "
                "perplexity > 3 x unsteered",
                "seconds": round(open_seconds, 1),
            },
            "summary": summary,
            "breakdown": breakdown,
            "answers": [
                {
                    "question": a.question,
                    "variant": a.variant,
                    "multiplier": a.multiplier,
                    "text": a.text,
                    **({"refusal": a.refusal} if behavior == "refusal" else {}),
                    "shows_behavior": a.refusal,
                    "distinct3": round(a.distinct3, 4),
                    "nll": None if a.nll is None else round(a.nll, 4),
                    "tokens": a.tokens,
                }
                for a in answers
            ],
        }
        write_json(out / "open_ended.json", open_payload, indent=1)
        ev.save_figure(
            ev.plot_open_ended(
                summary,
                layer,
                breakdown=breakdown,
                score_label=score_label,
                title=f"{lm.name} · {behavior} · open-ended answers at layer {layer} "
                f"({len(questions)} questions, {settings.max_new_tokens} tokens)",
            ),
            out / "open_ended.png",
        )
        _log(f"open-ended: {open_seconds:.1f} s; wrote {out / 'open_ended.json'}, open_ended.png")
        if len(open_multipliers) > 1:  # per question: refused (1) or not (0) against alpha
            open_m, _, open_scores = rel.open_ended_scores(answers, "vector")
            reliability["open-ended"] = rel.summarize(open_m, open_scores, score_label)

    if reliability:
        write_json(
            out / "reliability.json",
            {
                "settings": {
                    "model": lm.name,
                    "behavior": behavior,
                    "vector_file": vector_source,
                    "ab_layer": layer,
                    "recipe": recipe.to_dict(),
                    "method": "per prompt: least-squares slope of the score against the multiplier "
                    "(Tan et al. 2024); wrong way = slope < 0, Wilson 95% interval",
                },
                **{name: r.to_dict() for name, r in reliability.items()},
            },
            indent=1,
        )
        ev.save_figure(
            rel.plot_histograms(reliability, f"{lm.name} · {behavior} · per-prompt steerability"),
            out / "reliability.png",
        )
    total = time.perf_counter() - started
    text = _summary_markdown(ab_payload, open_payload, total, np)
    if reliability:
        text += "\n".join(rel.markdown(reliability)) + "\n"
    write_text(out / "summary.md", text)
    print(text, end="")
    _log(f"wrote {out / 'summary.md'} ({total:.0f} s in all)")
    return {"behavior": behavior, "ab": ab_payload, "open_ended": open_payload, "out": out}


def _evaluate_all(args: argparse.Namespace, config: dict[str, Any], make_engine: Any) -> int:
    """--behavior all: every shipped behavior with vectors for the model, one model load, then the table.

    Every card and test file is checked before the model loads; a behavior without vectors for the model is
    listed in the table as such (not an error).
    """
    import copy

    from steering.config import data_dir as _data_dir
    from steering.core.behaviors import shipped_behaviors

    for value, flag in ((args.vector, "--vector"), (args.ab, "--ab"), (args.open_ended, "--open-ended")):
        if value:
            raise SteeringError(f"{flag} names one behavior's file: it cannot be used with --behavior {ALL}")
    behaviors = shipped_behaviors(_data_dir(config, "datasets_dir"))
    if not behaviors:
        raise SteeringError(f"--behavior {ALL}: no behavior ships (no datasets/<behavior>/behavior.yaml)")
    base = Path(args.out) if args.out else Path(config["results_dir"]) / "eval"
    prepared = [_prepare(args, config, b, base / b) for b in behaviors]
    engine = make_engine(args, config)
    have = set(engine.behaviors())
    results: list[dict[str, Any]] = []
    for prep in prepared:
        if prep["behavior"] not in have:
            _log(f"# {prep['behavior']}: no vectors for {engine.lm.name}, skipped")
            results.append({"behavior": prep["behavior"], "ab": None, "open_ended": None, "out": prep["out"]})
            continue
        _log(f"\n# ---- {prep['behavior']}")
        one = copy.copy(args)
        one.behavior = prep["behavior"]
        results.append(_evaluate(one, config, engine, prep))
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
    _log(f"wrote {base / 'behaviors.md'}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed (sys.argv), for the table's header."""
    import shlex

    return "python -m steering " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""


def _row_at(rows: list[dict], m: float) -> dict | None:
    return next((r for r in rows if abs(r["multiplier"] - m) < 1e-9), None)


def _folder_text(out: str | Path | None) -> str:
    """The table's output folder as the footnote names it (relative to the checkout when inside it)."""
    if out is None:
        return "results/eval"
    from steering.cli.common import display_path

    return str(display_path(Path(out))).rstrip("/")


def behaviors_table(results: list[dict[str, Any]], model: str, command: str = "", out: str | Path | None = None) -> str:
    """The per-behavior Markdown table of an `evaluate --behavior all` run.

    Per behavior: the open-ended score (share of answers the card's judge counts) at -α, 0 and +α (α = the
    behavior's default strength, its recipe's), the random-vector control at +α, Δ = score(+α) - score(-α), a
    plain verdict (steers: Δ >= 0.25 and score(+α) - random(+α) >= 0.15; weak: Δ >= 0.1; no: otherwise), where
    the text breaks down (evaluation.breakdown_multiplier over the tested multipliers) and the A/B p(match) at
    -α / +α of the default layer when the A/B sweep ran.

    Args:
        results: _evaluate's return values (open_ended None: no vectors for the model).
        model: the model's name, for the heading.
        command: the command line, shown under the heading.

    Returns:
        Markdown text.
    """

    def fmt(row: dict | None) -> str:
        return "–" if row is None else f"{row['refusal_rate']:.2f}"

    lines = [f"# Open-ended score per behavior, {model}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        "| behavior | judge counts | n | α (layer) | score −α | score 0 | score +α | random +α | Δ | steers? "
        "| text breaks down at | A/B p(match) −α / +α |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o = r["open_ended"]
        if o is None:
            lines.append(f"| {r['behavior']} | | | | | | | | | no vectors for this model (or --no-open-ended) | | |")
            continue
        st = o["settings"]
        m = abs(float(st["default_multiplier"])) or 1.0
        rows = o["summary"]["vector"]
        minus, zero, plus = _row_at(rows, -m), _row_at(rows, 0.0), _row_at(rows, m)
        random = _row_at(o["summary"].get("random", []), m)
        delta = None if minus is None or plus is None else plus["refusal_rate"] - minus["refusal_rate"]
        gap = None if random is None or plus is None else plus["refusal_rate"] - random["refusal_rate"]
        verdict = (
            "–"
            if delta is None
            else ("yes" if delta >= 0.25 and (gap is None or gap >= 0.15) else "weak" if delta >= 0.1 else "**no**")
        )
        breaks = []
        for side in ("positive", "negative"):
            b = o["breakdown"].get(side)
            if b:
                why = "/".join(k for k in ("repetitive", "garbled") if b[k])
                breaks.append(f"{b['multiplier']:+g} ({why})")
        tested = max(abs(x["multiplier"]) for x in rows) if rows else m
        broke = ", ".join(breaks) if breaks else f"holds to ±{tested:g}"
        ab = r.get("ab")
        abtext = ""
        if ab and st["default_layer"] in ab["layers"] and m in ab["multipliers"] and -m in ab["multipliers"]:
            row = ab["p_match"][ab["layers"].index(st["default_layer"])]
            abtext = f"{row[ab['multipliers'].index(-m)]:.2f} / {row[ab['multipliers'].index(m)]:.2f}"
        lines.append(
            f"| {r['behavior']} | {st.get('score', 'refusal rate')} | {st['questions']} | {m:g} "
            f"({st['layer']}) | {fmt(minus)} | {fmt(zero)} | {fmt(plus)} | {fmt(random)} | "
            f"{'–' if delta is None else f'{delta:+.2f}'} | {verdict} | {broke} | {abtext} |"
        )
    lines += [
        "",
        "Score: the share of open-ended answers the behavior card's judge counts "
        "(datasets/<behavior>/behavior.yaml). Breakdown: the smallest |α| with distinct-3 < 0.85 × unsteered "
        f"or perplexity > 3 × unsteered. Per-behavior files: {_folder_text(out)}/<behavior>/ (summary.md, "
        "open_ended.json with every answer).",
    ]
    return "\n".join(lines) + "\n"


def _previous_ab(path: Path, model: str) -> dict | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if payload.get("settings", {}).get("model") == model else None


def _rounded(values: Any) -> Any:
    import numpy as np

    return np.round(np.asarray(values, dtype=float), 4).tolist()


def _effect_by_layer(sweep: Any, multipliers: list[float], m: float) -> dict[str, Any]:
    """Per layer, p(match) at +m minus at -m (m = the default multiplier, else the largest tested)."""
    mults = list(multipliers)
    if not (m in mults and -m in mults):
        positive = [x for x in mults if x > 0 and -x in mults]
        if not positive:
            return {}
        m = max(positive)
    plus, minus = mults.index(m), mults.index(-m)
    values = [float(row[plus] - row[minus]) for row in sweep]
    return {"multiplier": m, "p_plus_minus_p_minus": [round(v, 4) for v in values]}


def _summary_markdown(ab: dict | None, open_ended: dict | None, seconds: float, np: Any) -> str:
    s = (ab or open_ended)["settings"]  # type: ignore[index]
    head = [
        f"# Evaluation: {s['behavior']} on {s['model']}",
        "",
        f"Vector `{s['vector_file']}` (read mode {s['read_mode']}); default layer {s['default_layer']}, "
        f"multiplier {s['default_multiplier']:g}; the controls and open-ended answers use layer "
        f"{s['control_layer']} (vector norm {s['vector_norm']:.1f}, {s['relative_norm']:.2f} x the typical "
        f"hidden-state norm there). Random control: a seeded Gaussian direction (seed {s['control_seed']}) "
        f"scaled to the vector's norm; negated control: minus the vector. This run took {seconds:.0f} s.",
    ]
    return "\n".join(head + _ab_markdown(ab, np) + _open_markdown(open_ended)) + "\n"


def _ab_markdown(ab: dict | None, np: Any) -> list[str]:
    if ab is None:
        return []
    s = ab["settings"]
    layers, mults = ab["layers"], ab["multipliers"]
    sweep = np.array(ab["p_match"])
    lines = [
        "",
        f"## A/B ({s['questions']} questions of `{s['dataset']}`, {len(layers)} layers x {len(mults)} "
        f"multipliers, {s['seconds']:.0f} s)",
        "",
        'Mean p(matching letter) / (p(A) + p(B)) at the token after "("; 0.5 = no preference.',
        "",
        "| α | " + " | ".join(f"{m:g}" for m in mults) + " |",
        "|---|" + "---|" * len(mults),
    ]
    for name, values in ab["controls"].items():
        if name != "layer":
            lines.append(
                f"| {name} (layer {ab['controls']['layer']}) | " + " | ".join(f"{v:.3f}" for v in values) + " |"
            )
    effect = ab.get("effect_by_layer") or {}
    if effect:
        diffs = effect["p_plus_minus_p_minus"]
        order = sorted(range(len(diffs)), key=lambda i: -diffs[i])[:5]
        lines += [
            "",
            f"Largest effect p(+{effect['multiplier']:g}) − p(−{effect['multiplier']:g}) by layer: "
            + ", ".join(f"layer {layers[i]}: {diffs[i]:+.3f}" for i in order)
            + ".",
        ]
    if s["default_layer"] in layers:
        row = sweep[layers.index(s["default_layer"])]
        lines += [
            "",
            f"At the default layer {s['default_layer']}: "
            + ", ".join(f"α {m:g}: {v:.3f}" for m, v in zip(mults, row))
            + ".",
        ]
    lines += ["", "Plots: `ab_heatmap.png` (layer x multiplier, the default outlined), `ab_controls.png`."]
    return lines


def _open_markdown(open_ended: dict | None) -> list[str]:
    lines: list[str] = []
    if open_ended:
        o = open_ended["settings"]
        lines += [
            "",
            f"## Open-ended ({o['questions']} questions of `{o['dataset']}`, layer {o['layer']}, "
            f"{o['max_new_tokens']} new tokens, greedy, {o['seconds']:.0f} s)",
            "",
            f"| variant | α | {o.get('score', 'refusal rate')} (judge) | distinct-3 share | perplexity | mean tokens |",
            "|---|---|---|---|---|---|",
        ]
        for name, rows in open_ended["summary"].items():
            for r in rows:
                if name != "vector" and r["multiplier"] == 0:
                    continue
                ppl = "–" if r["perplexity"] is None else f"{r['perplexity']:.2f}"
                lines.append(
                    f"| {name} | {r['multiplier']:g} | {r['refusal_rate']:.2f} | {r['distinct3']:.3f} | "
                    f"{ppl} | {r['mean_tokens']:.1f} |"
                )
        b = open_ended["breakdown"]
        described = []
        for side in ("positive", "negative"):
            if b.get(side):
                why = " and ".join(k for k in ("repetitive", "garbled") if b[side][k])
                described.append(f"α = {b[side]['multiplier']:g} ({why})")
            else:
                described.append(f"none on the {side} side in the tested range")
        lines += [
            "",
            "Text breaks down (distinct-3 < 0.85 × unsteered or perplexity > 3 × unsteered) at: "
            + "; ".join(described)
            + ".",
        ]
        judge = o.get("judge") or {"kind": "phrases", "phrases": o.get("refusal_phrases", [])}
        items = judge.get("phrases") or judge.get("patterns") or []
        lines += [
            "",
            f"Judge ({judge['kind']}, from the behavior card): an answer counts when it contains any of "
            f"{len(items)} {'phrases' if judge['kind'] == 'phrases' else 'patterns'}, e.g. "
            + ", ".join(f'"{x}"' for x in items[:4])
            + ".",
        ]
        lines += [
            "",
            f"Plot: `open_ended.png` ({o.get('score', 'refusal rate')}, distinct-3 share and perplexity against α).",
        ]
    return lines
