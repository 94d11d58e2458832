"""The A/B part of one behavior's evaluation run (steering.evaluation.run): the sweep over layers x
multipliers plus the vector, a random and a negated control at the control layer (the paper's A/B measure,
Rimsky et al. 2023, arXiv 2312.06681, section 4), and its files ab_sweep.json, ab_heatmap.png and
ab_controls.png."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from steering import evaluation as ev
from steering.config import Config
from steering.core.limits import model_context_length
from steering.core.prompts import pad_token_id
from steering.evaluation import reliability as rel
from steering.evaluation.run_setup import RunSetup, log
from steering.io.files import display_path, write_json


def run_ab(args: Any, config: Config, run: RunSetup, items: list, ab_path: Path) -> tuple[dict | None, Any]:
    """The A/B sweep and its controls, written to run.out; with --no-ab, the folder's previous ab_sweep.json.

    Args:
        args: the `evaluate` flags (--no-ab, --batch-size).
        config: the loaded config.yaml tree (limits.max_prompt_tokens).
        run: the settled run (steering.evaluation.run_setup.prepare_run).
        items: the A/B questions (ABItem); ab_path: their file, as recorded.

    Returns:
        (the ab_sweep.json payload, or None when skipped with no earlier one for this model; the per-question
        steerability at the control layer, steering.evaluation.reliability.summarize, or None).
    """
    lm, out = run.lm, run.out
    out.mkdir(parents=True, exist_ok=True)
    if args.no_ab:
        return _previous_ab(out / "ab_sweep.json", lm.name), None
    layers, layer, multipliers = run.layers, run.layer, run.multipliers
    specs = [(at, run.vset.vector(at)) for at in layers] + [
        (layer, run.vector),
        (layer, run.controls["random"]),
        (layer, run.controls["negated"]),
    ]
    prompts = ev.ab_prompts(
        lm.tokenizer,
        items,
        run.system_prompt,
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
    payload = {
        "settings": {
            **run.common,
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
        "effect_by_layer": _effect_by_layer(sweep, multipliers, run.default_m),
    }
    write_json(out / "ab_sweep.json", payload, indent=1)
    ev.save_figure(
        ev.plot_heatmap(
            sweep,
            layers,
            multipliers,
            default=(run.default_layer, run.default_m),
            title=f"{lm.name} · {run.behavior} · A/B p(match), {len(items)} questions",
        ),
        out / "ab_heatmap.png",
    )
    ev.save_figure(ev.plot_ab_curves(curves, multipliers, layer), out / "ab_controls.png")
    reliability = None
    if len(set(multipliers)) > 1:  # per question: p(match) against alpha, the vector at the control layer
        reliability = rel.summarize(multipliers, ab.p[n].T, "p(matching letter)")
    log(f"A/B sweep: {ab_seconds:.1f} s; wrote {out / 'ab_sweep.json'}, ab_heatmap.png, ab_controls.png")
    return payload, reliability


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
