"""One behavior's evaluation run (`python -m steering evaluate`, whose command line is steering/cli/evaluate.py):
the A/B sweep over layers x multipliers with the random and negated controls, the open-ended answers with
their judge score and coherence, per-prompt reliability, and the files they go into (OUTPUTS in --out)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from steering import evaluation as ev
from steering.config import Config
from steering.core.layers import check_layer
from steering.core.limits import model_context_length
from steering.core.prompts import pad_token_id
from steering.decode.generation import SamplingSettings
from steering.evaluation import reliability as rel
from steering.evaluation.summary import summary_markdown
from steering.io.files import display_path, write_json, write_text

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


def log(message: str) -> None:
    """One progress line on stderr (the results go to files and stdout)."""
    print(message, file=sys.stderr, flush=True)


def default_multipliers(m: float) -> list[float]:
    """The A/B sweep's default multipliers around the default strength m: -2m -m -m/2 0 m/2 m 2m (m = 1 when 0)."""
    m = abs(m) or 1.0
    return [-2 * m, -m, -m / 2, 0.0, m / 2, m, 2 * m]


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
    """
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
    multipliers = args.multipliers or default_multipliers(default_m)
    m = abs(default_m) or 1.0
    open_multipliers = sorted(set(args.open_multipliers or args.multipliers or [-2 * m, -m, 0.0, m, 2 * m]))
    system_prompt = prepared["system_prompt"]
    controls = ev.control_vectors(vector, seed=args.seed)
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    if questions:  # every open-ended question's token budget (config limits:, the context) before any work
        engine.check_request([[{"role": "user", "content": q}] for q in questions], settings, system_prompt)
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
    ab_plan = (
        "A/B: skipped (--no-ab)"
        if args.no_ab
        else f"{len(items)} A/B questions x {len(layers)} layers x {len(multipliers)} multipliers"
    )
    log(
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
            max_tokens=config.limits.max_prompt_tokens,
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
                on_progress=lambda d, n: log(f"A/B: {d}/{n} questions"),
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
                "dataset": display_path(ab_path),
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
        log(f"A/B sweep: {ab_seconds:.1f} s; wrote {out / 'ab_sweep.json'}, ab_heatmap.png, ab_controls.png")

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
                on_progress=lambda d, n: log(f"open-ended: {d}/{n} answers"),
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
                "dataset": display_path(open_path),
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
        log(f"open-ended: {open_seconds:.1f} s; wrote {out / 'open_ended.json'}, open_ended.png")
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
    text = summary_markdown(ab_payload, open_payload, total, np)
    if reliability:
        text += "\n".join(rel.markdown(reliability)) + "\n"
    write_text(out / "summary.md", text)
    print(text, end="")
    log(f"wrote {out / 'summary.md'} ({total:.0f} s in all)")
    return {"behavior": behavior, "ab": ab_payload, "open_ended": open_payload, "out": out}


def _previous_ab(path: Path, model: str) -> dict | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if payload.get("settings", {}).get("model") == model else None


def _rounded(values: Any) -> Any:
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
