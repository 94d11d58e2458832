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

The open-ended run uses the behavior's steering recipe (steering/recipe.py: the tuned defaults file
vectors/<behavior>/<model>.defaults.json, else config.yaml's CAA addition): its band, operators and
unit, with multipliers in the recipe's unit; the A/B sweep is CAA addition at one layer per cell.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from steering.errors import SteeringError
from steering.files import write_json, write_text
from steering.prompts import pad_token_id

OUTPUTS = ("ab_sweep.json", "ab_heatmap.png", "ab_controls.png", "open_ended.json", "open_ended.png",
           "reliability.json", "reliability.png", "summary.md")


def register(sub: Any) -> None:
    from steering.cli_common import add_behavior_command, parse_float as _float

    p = add_behavior_command(sub, "evaluate", "A/B sweep over layers x multipliers, open-ended refusal rate "
                                              "and coherence, with random and negated controls")
    p.add_argument("--vector", help="a vector file instead of vectors/<behavior>/<model>.safetensors")
    p.add_argument("--ab", help="A/B test questions (default: datasets/<behavior>/test_ab.json)")
    p.add_argument("--open-ended", help="open-ended questions (default: datasets/<behavior>/test_open_ended.json)")
    p.add_argument("--layers", type=int, nargs="+", help="A/B sweep layers (default: every layer of the vector set)")
    p.add_argument("--multipliers", type=_float, nargs="+",
                   help="A/B sweep multipliers (default: -2m -m -m/2 0 m/2 m 2m, m = the model's default)")
    p.add_argument("--layer", type=int, help="layer of the open-ended run and the controls (default: the model's)")
    p.add_argument("--open-multipliers", type=_float, nargs="+",
                   help="open-ended multipliers (default: --multipliers if given, else -2m -m 0 m 2m)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="open-ended answer length (default 48)")
    p.add_argument("--limit-ab", type=int, help="only the first N A/B questions")
    p.add_argument("--limit-open", type=int, help="only the first N open-ended questions")
    p.add_argument("--no-open-ended", action="store_true", help="A/B sweep only")
    p.add_argument("--no-ab", action="store_true",
                   help="open-ended only (the summary reuses --out/ab_sweep.json when it is there)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random control vector (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="A/B questions per batch (default 16)")
    p.add_argument("--gen-batch-size", type=int, default=64, help="open-ended rows per batch (default 64)")
    p.add_argument("--system-prompt")
    p.add_argument("--out", help="output folder (default: <results_dir>/eval, results/eval of the checkout)")
    p.set_defaults(func=cmd_evaluate)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_count(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise SteeringError(f"{flag} must be at least 1, got {value}")


def _check_multipliers(values: list[float] | None, flag: str, config: dict[str, Any]) -> None:
    """Each multiplier finite and within config limits.max_abs_multiplier (steering.limits.check_multiplier)."""
    from steering.limits import Limits, check_multiplier

    for value in values or []:
        check_multiplier(value, Limits.from_config(config), flag)


def _default_multipliers(m: float) -> list[float]:
    m = abs(m) or 1.0
    return [-2 * m, -m, -m / 2, 0.0, m / 2, m, 2 * m]


def cmd_evaluate(args: argparse.Namespace, config: dict[str, Any]) -> int:
    from steering.cli import _engine  # looked up at run time: tests replace steering.cli._engine
    from steering.cli_common import check_destination, check_input_file
    from steering.cli_common import display_path as _display_path, system_prompt as _system_prompt
    from steering.config import PROJECT_ROOT
    from steering.datasets import load_ab_dataset, load_open_ended
    from steering.limits import Limits, model_context_length

    started = time.perf_counter()
    data_dir = PROJECT_ROOT / config["datasets_dir"] / args.behavior
    ab_path = Path(args.ab) if args.ab else data_dir / "test_ab.json"
    open_path = Path(args.open_ended) if args.open_ended else data_dir / "test_open_ended.json"
    for value, flag in ((args.limit_ab, "--limit-ab"), (args.limit_open, "--limit-open"),
                        (args.max_new_tokens, "--max-new-tokens"), (args.batch_size, "--batch-size"),
                        (args.gen_batch_size, "--gen-batch-size")):
        _check_count(value, flag)
    _check_multipliers(args.multipliers, "--multipliers", config)
    _check_multipliers(args.open_multipliers, "--open-multipliers", config)
    if args.vector:
        check_input_file(args.vector, "--vector", folder_ok=True)
    # validate the inputs before the slow imports and the model load
    limits = Limits.from_config(config)
    items = load_ab_dataset(check_input_file(ab_path, "--ab"), "letter", limits)[: args.limit_ab]
    questions = [] if args.no_open_ended else load_open_ended(check_input_file(open_path, "--open-ended"),
                                                              limits)[: args.limit_open]
    out = check_destination(args.out or Path(config["results_dir"]) / "eval", "--out", folder=True)

    import numpy as np

    from steering import evaluation as ev
    from steering import reliability as rel
    from steering.generation import SamplingSettings
    from steering.layers import check_layer
    from steering.refusal import RefusalDetector

    try:
        detector = RefusalDetector.from_config(config)
    except ValueError as exc:
        raise SteeringError(f"config evaluation.refusal_phrases: {exc}") from None
    engine = _engine(args, config)
    lm = engine.lm
    recipe = engine.recipe(args.behavior)  # the open-ended run's operators, band and unit
    vset = engine.load_vector_file(args.vector) if args.vector else engine.recipe_vectors(recipe, args.behavior)
    layers = args.layers if args.layers else vset.layers
    for layer in layers:
        check_layer(layer, lm.num_layers)
        vset.vector(layer)
    layer = check_layer(args.layer if args.layer is not None else engine.defaults.layer, lm.num_layers)
    vector = vset.vector(layer)
    recipe = recipe.with_overrides(layer=layer)
    default_m = engine.defaults.multiplier
    multipliers = args.multipliers or _default_multipliers(default_m)
    m = abs(default_m) or 1.0
    open_multipliers = sorted(set(args.open_multipliers or args.multipliers or [-2 * m, -m, 0.0, m, 2 * m]))
    system_prompt = _system_prompt(args, config)
    controls = ev.control_vectors(vector, seed=args.seed)
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    if questions:  # every open-ended question's token budget (config limits:, the context) before any work
        engine.check_request([[{"role": "user", "content": q}] for q in questions], settings, system_prompt)
    vector_source = _display_path(Path(args.vector)) if args.vector else recipe.vector or _display_path(
        engine.vectors_dir / args.behavior / f"{lm.slug}.safetensors")
    common = {"model": lm.name, "behavior": args.behavior, "vector_file": vector_source,
              "read_mode": vset.metadata.get("read_mode", "unknown"), "default_layer": engine.defaults.layer,
              "default_multiplier": default_m, "control_layer": layer, "control_seed": args.seed,
              "vector_norm": round(float(vector.norm()), 4),
              "relative_norm": round(engine.relative_norm(vector, layer), 4),
              "system_prompt": system_prompt, "recipe": recipe.to_dict(),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _log(f"# {lm.describe()}\n# vector {vector_source} | {len(items)} A/B questions x {len(layers)} layers x "
         f"{len(multipliers)} multipliers | open-ended: {len(questions)} questions at layer {layer}")

    reliability: dict[str, Any] = {}  # per-prompt steerability (steering/reliability.py), by measure
    # ------------------------------------------------------------ A/B sweep (+ controls at `layer`)
    out.mkdir(parents=True, exist_ok=True)
    if args.no_ab:
        ab_payload = _previous_ab(out / "ab_sweep.json", lm.name)
    else:
        specs = [(l, vset.vector(l)) for l in layers] + [(layer, vector), (layer, controls["random"]),
                                                          (layer, controls["negated"])]
        prompts = ev.ab_prompts(lm.tokenizer, items, system_prompt, context_length=model_context_length(lm.model),
                                max_tokens=Limits.from_config(config).max_prompt_tokens)
        t0 = time.perf_counter()
        with lm.lock:
            ab = ev.ab_probabilities(lm.model, prompts, specs, multipliers, args.batch_size, pad_token_id(lm.tokenizer),
                                     on_progress=lambda d, n: _log(f"A/B: {d}/{n} questions"))
        ab_seconds = time.perf_counter() - t0
        mean_p, mean_mass = ab.p.mean(-1), ab.mass.mean(-1)
        n = len(layers)
        curves = {"vector": mean_p[n], "random": mean_p[n + 1], "negated": mean_p[n + 2]}
        sweep = mean_p[:n]
        effect = _effect_by_layer(sweep, multipliers, default_m)
        ab_payload = {
            "settings": {**common, "dataset": _display_path(ab_path), "questions": len(items),
                         "measure": "mean over questions of p(matching letter) / (p(A) + p(B)) at the token after '('",
                         "seconds": round(ab_seconds, 1)},
            "layers": list(layers), "multipliers": list(multipliers),
            "p_match": _rounded(sweep), "letter_mass": _rounded(mean_mass[:n]),
            "controls": {"layer": layer, **{k: _rounded(v) for k, v in curves.items()}},
            "effect_by_layer": effect,
        }
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "ab_sweep.json", ab_payload, indent=1)
        default_cell = (engine.defaults.layer, default_m)
        ev.save_figure(ev.plot_heatmap(sweep, layers, multipliers, default=default_cell,
                                       title=f"{lm.name} · {args.behavior} · A/B p(match), {len(items)} questions"),
                       out / "ab_heatmap.png")
        ev.save_figure(ev.plot_ab_curves(curves, multipliers, layer), out / "ab_controls.png")
        if len(set(multipliers)) > 1:  # per question: p(match) against alpha, the vector at the control layer
            reliability["A/B"] = rel.summarize(multipliers, ab.p[n].T, "p(matching letter)")
        _log(f"A/B sweep: {ab_seconds:.1f} s; wrote {out / 'ab_sweep.json'}, ab_heatmap.png, ab_controls.png")

    # ------------------------------------------------------------ open-ended
    open_payload = None
    if questions:
        positive = [m for m in open_multipliers if m > 0]
        variants = {"vector": (vector if recipe.shared_vector else vset, list(open_multipliers)), "random": (controls["random"], positive),
                    "negated": (controls["negated"], positive)}
        t0 = time.perf_counter()
        with lm.lock:
            answers = ev.open_ended_answers(lm.model, lm.tokenizer, questions, layer, variants, settings, detector,
                                            system_prompt, batch_size=args.gen_batch_size,
                                            on_progress=lambda d, n: _log(f"open-ended: {d}/{n} answers"),
                                            recipe=recipe, hidden_norm=engine.hidden_norm)
        open_seconds = time.perf_counter() - t0
        summary = ev.summarize_answers(answers, {"vector": open_multipliers, "random": [0.0] + positive,
                                                 "negated": [0.0] + positive})
        breakdown = ev.breakdown_multiplier(summary["vector"])
        open_payload = {
            "settings": {**common, "dataset": _display_path(open_path), "questions": len(questions),
                         "layer": layer, "max_new_tokens": settings.max_new_tokens, "decoding": "greedy",
                         "refusal_phrases": list(detector.phrases),
                         "coherence": "distinct3 = share of distinct word trigrams (falls with repetition); "
                                      "perplexity = exp(median per-answer mean NLL) under the unsteered model "
                                      "(rises with garbled text)",
                         "breakdown_rule": "smallest |multiplier| with distinct3 < 0.85 x unsteered or "
                                           "perplexity > 3 x unsteered",
                         "seconds": round(open_seconds, 1)},
            "summary": summary, "breakdown": breakdown,
            "answers": [{"question": a.question, "variant": a.variant, "multiplier": a.multiplier, "text": a.text,
                         "refusal": a.refusal, "distinct3": round(a.distinct3, 4),
                         "nll": None if a.nll is None else round(a.nll, 4), "tokens": a.tokens} for a in answers],
        }
        write_json(out / "open_ended.json", open_payload, indent=1)
        ev.save_figure(ev.plot_open_ended(summary, layer, breakdown=breakdown,
                                          title=f"{lm.name} · {args.behavior} · open-ended answers at layer {layer} "
                                                f"({len(questions)} questions, {settings.max_new_tokens} tokens)"),
                       out / "open_ended.png")
        _log(f"open-ended: {open_seconds:.1f} s; wrote {out / 'open_ended.json'}, open_ended.png")
        if len(open_multipliers) > 1:  # per question: refused (1) or not (0) against alpha
            open_m, _, open_scores = rel.open_ended_scores(answers, "vector")
            reliability["open-ended"] = rel.summarize(open_m, open_scores, "refusal")

    if reliability:
        write_json(out / "reliability.json", {
            "settings": {"model": lm.name, "behavior": args.behavior, "vector_file": vector_source,
                         "ab_layer": layer, "recipe": recipe.to_dict(),
                         "method": "per prompt: least-squares slope of the score against the multiplier "
                                   "(Tan et al. 2024); wrong way = slope < 0, Wilson 95% interval"},
            **{name: r.to_dict() for name, r in reliability.items()}}, indent=1)
        ev.save_figure(rel.plot_histograms(reliability, f"{lm.name} · {args.behavior} · per-prompt steerability"),
                       out / "reliability.png")
    total = time.perf_counter() - started
    text = _summary_markdown(ab_payload, open_payload, total, np)
    if reliability:
        text += "\n".join(rel.markdown(reliability)) + "\n"
    write_text(out / "summary.md", text)
    print(text, end="")
    _log(f"wrote {out / 'summary.md'} ({total:.0f} s in all)")
    return 0


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
    head = [f"# Evaluation: {s['behavior']} on {s['model']}", "",
            f"Vector `{s['vector_file']}` (read mode {s['read_mode']}); default layer {s['default_layer']}, "
            f"multiplier {s['default_multiplier']:g}; the controls and open-ended answers use layer "
            f"{s['control_layer']} (vector norm {s['vector_norm']:.1f}, {s['relative_norm']:.2f} x the typical "
            f"hidden-state norm there). Random control: a seeded Gaussian direction (seed {s['control_seed']}) "
            f"scaled to the vector's norm; negated control: minus the vector. This run took {seconds:.0f} s."]
    return "\n".join(head + _ab_markdown(ab, np) + _open_markdown(open_ended)) + "\n"


def _ab_markdown(ab: dict | None, np: Any) -> list[str]:
    if ab is None:
        return []
    s = ab["settings"]
    layers, mults = ab["layers"], ab["multipliers"]
    sweep = np.array(ab["p_match"])
    lines = ["", f"## A/B ({s['questions']} questions of `{s['dataset']}`, {len(layers)} layers x {len(mults)} "
             f"multipliers, {s['seconds']:.0f} s)", "",
             "Mean p(matching letter) / (p(A) + p(B)) at the token after \"(\"; 0.5 = no preference.", "",
             "| α | " + " | ".join(f"{m:g}" for m in mults) + " |",
             "|---|" + "---|" * len(mults)]
    for name, values in ab["controls"].items():
        if name != "layer":
            lines.append(f"| {name} (layer {ab['controls']['layer']}) | " + " | ".join(f"{v:.3f}" for v in values)
                         + " |")
    effect = ab.get("effect_by_layer") or {}
    if effect:
        diffs = effect["p_plus_minus_p_minus"]
        order = sorted(range(len(diffs)), key=lambda i: -diffs[i])[:5]
        lines += ["", f"Largest effect p(+{effect['multiplier']:g}) − p(−{effect['multiplier']:g}) by layer: "
                  + ", ".join(f"layer {layers[i]}: {diffs[i]:+.3f}" for i in order) + "."]
    if s["default_layer"] in layers:
        row = sweep[layers.index(s["default_layer"])]
        lines += ["", f"At the default layer {s['default_layer']}: "
                  + ", ".join(f"α {m:g}: {v:.3f}" for m, v in zip(mults, row)) + "."]
    lines += ["", "Plots: `ab_heatmap.png` (layer x multiplier, the default outlined), `ab_controls.png`."]
    return lines


def _open_markdown(open_ended: dict | None) -> list[str]:
    lines: list[str] = []
    if open_ended:
        o = open_ended["settings"]
        lines += ["", f"## Open-ended ({o['questions']} questions of `{o['dataset']}`, layer {o['layer']}, "
                  f"{o['max_new_tokens']} new tokens, greedy, {o['seconds']:.0f} s)", "",
                  "| variant | α | refusal rate | distinct-3 share | perplexity | mean tokens |",
                  "|---|---|---|---|---|---|"]
        for name, rows in open_ended["summary"].items():
            for r in rows:
                if name != "vector" and r["multiplier"] == 0:
                    continue
                ppl = "–" if r["perplexity"] is None else f"{r['perplexity']:.2f}"
                lines.append(f"| {name} | {r['multiplier']:g} | {r['refusal_rate']:.2f} | {r['distinct3']:.3f} | "
                             f"{ppl} | {r['mean_tokens']:.1f} |")
        b = open_ended["breakdown"]
        described = []
        for side in ("positive", "negative"):
            if b.get(side):
                why = " and ".join(k for k in ("repetitive", "garbled") if b[side][k])
                described.append(f"α = {b[side]['multiplier']:g} ({why})")
            else:
                described.append(f"none on the {side} side in the tested range")
        lines += ["", "Text breaks down (distinct-3 < 0.85 × unsteered or perplexity > 3 × unsteered) at: "
                  + "; ".join(described) + "."]
        lines += ["", "Plot: `open_ended.png` (refusal rate, distinct-3 share and perplexity against α)."]
    return lines
