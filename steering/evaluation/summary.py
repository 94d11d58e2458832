"""The Markdown of `evaluate`: one behavior's summary.md (A/B table, open-ended table, breakdown, judge) and the
per-behavior table of `--behavior all` (behaviors.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steering.evaluation.coherence_rule import COHERENCE, LOOP_DISTINCT3, LOOP_MIN_TRIGRAMS
from steering.io.files import display_path


def _row_at(rows: list[dict], m: float) -> dict | None:
    return next((r for r in rows if abs(r["multiplier"] - m) < 1e-9), None)


def _folder_text(out: str | Path | None) -> str:
    """The table's output folder as the footnote names it (relative to the checkout when inside it)."""
    if out is None:
        return "results/eval"
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
        "(datasets/<behavior>/behavior.yaml). Breakdown: the smallest |α| with "
        f"{COHERENCE.breakdown_text()}. Per-behavior files: {_folder_text(out)}/<behavior>/ (summary.md, "
        "open_ended.json with every answer).",
    ]
    return "\n".join(lines) + "\n"


def summary_markdown(ab: dict | None, open_ended: dict | None, seconds: float, np: Any) -> str:
    """One behavior's summary.md: the settings, the A/B table and the open-ended table (either may be None)."""
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
            f"| variant | α | {o.get('score', 'refusal rate')} (judge) | distinct-3 share | looping answers | "
            "perplexity | mean tokens |",
            "|---|---|---|---|---|---|---|",
        ]
        ratio = 1.0  # the recipe's subtracted-side factor: its vector rows of negative α apply α x this
        if o.get("recipe"):
            from steering.core.recipe import Recipe

            recipe = Recipe.from_dict(o["recipe"])
            ratio = recipe.minus_ratio()
            lines[-2:-2] = [f"Recipe of the vector rows: {recipe.describe()}.", ""]
        for name, rows in open_ended["summary"].items():
            for r in rows:
                if name != "vector" and r["multiplier"] == 0:
                    continue
                ppl = "–" if r["perplexity"] is None else f"{r['perplexity']:.2f}"
                loops = "–" if r.get("loops") is None else f"{r['loops']:.2f}"  # "–": written before the measure
                alpha = f"{r['multiplier']:g}"
                if name == "vector" and r["multiplier"] < 0 and ratio != 1.0:
                    alpha += f" (applied {r['multiplier'] * ratio:g})"
                lines.append(
                    f"| {name} | {alpha} | {r['refusal_rate']:.2f} | {r['distinct3']:.3f} | "
                    f"{loops} | {ppl} | {r['mean_tokens']:.1f} |"
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
            f"Text breaks down ({COHERENCE.breakdown_text()}) at: " + "; ".join(described) + ".",
            "",
            "Distinct-3 share: the mean over the answers. Looping answers: the share of answers that loop on their "
            f"own (the answer's distinct-3 share < {LOOP_DISTINCT3:g}: more than half of its word trigrams repeat an "
            f"earlier one; fewer than {LOOP_MIN_TRIGRAMS} trigrams never count), which the mean hides; "
            "open_ended.json marks each answer (`loops`).",
        ]
        if ratio != 1.0:
            lines += [
                "",
                f"α is the app's slider value; the recipe steers its subtracted side at strength_minus / strength = "
                f'{ratio:.3g} × that ("applied"), the rows\' α in open_ended.json is the slider value.',
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
