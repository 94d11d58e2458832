"""Judge the stored answers of an `evaluate` run again with the refusal card's current judge (issue 9).

`python -m steering evaluate` keeps every answer in open_ended.json. Greedy decoding is deterministic, so
when only the JUDGE changed (datasets/refusal/behavior.yaml, e.g. its `veto:`), running evaluate again
reproduces the same texts and only the refusal flags move. This script re-scores those texts with the
current judge (steering.evaluation.refusal.RefusalDetector.from_config: phrases + veto) and rewrites the
folder's open_ended.json, open_ended.png, reliability.json / reliability.png (the open-ended part; the A/B
part is kept) and summary.md (with the A/B section from ab_sweep.json when present). It checks first that
the stored run used the current recipe, and prints every answer whose verdict changed.

    OMP_NUM_THREADS=1 python results/refusal_rejudge.py results/eval-casual

Also for results/refusal_minus_side.py outputs (--minus-side FILE): their rows are judged again too.
Run from the project root. A full `evaluate` (README commands) gives the same files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="an evaluate output folder (its open_ended.json)")
    parser.add_argument("--minus-side", nargs="*", default=[], help="refusal_minus_side.py outputs to re-judge")
    args = parser.parse_args(argv)

    import numpy as np

    from steering import evaluation as ev
    from steering.evaluation.summary import summary_markdown
    from steering.config import load_config
    from steering.core.recipe import Recipe
    from steering.evaluation import reliability as rel
    from steering.evaluation.open_ended import Answer
    from steering.evaluation.refusal import RefusalDetector
    from steering.io.files import write_json, write_text

    folder = Path(args.folder)
    config = load_config()
    detector = RefusalDetector.from_config(config)
    payload = json.loads((folder / "open_ended.json").read_text(encoding="utf-8"))
    s = payload["settings"]
    stored = Recipe.from_dict(s["recipe"])
    answers, changed = [], []
    for row in payload["answers"]:
        verdict = detector(row["text"])
        if verdict != row["refusal"]:
            changed.append((row["variant"], row["multiplier"], row["refusal"], verdict, row["text"]))
        row["refusal"] = row["shows_behavior"] = verdict
        answers.append(
            Answer(
                row["question"],
                row["variant"],
                row["multiplier"],
                row["text"],
                row["tokens"],
                verdict,
                row["distinct3"],
                row["nll"],
            )
        )
    positive = sorted({a.multiplier for a in answers if a.variant == "vector" and a.multiplier > 0})
    open_multipliers = sorted({a.multiplier for a in answers if a.variant == "vector"} | {0.0})
    variants = {name: (open_multipliers if name == "vector" else [0.0] + positive) for name in payload["summary"]}
    payload["summary"] = ev.summarize_answers(answers, variants)
    payload["breakdown"] = ev.breakdown_multiplier(payload["summary"]["vector"])
    s["judge"] = detector.to_dict()
    s["refusal_phrases"] = list(detector.phrases)
    s["rejudged"] = (
        f"answers generated {s['created']} by `evaluate` (recipe {stored.describe()}); refusal flags re-scored by "
        "python results/refusal_rejudge.py with the card's current judge"
    )
    write_json(folder / "open_ended.json", payload, indent=1)
    ev.save_figure(
        ev.plot_open_ended(
            payload["summary"],
            s["layer"],
            breakdown=payload["breakdown"],
            score_label=s.get("score", "refusal rate"),
            title=f"{s['model']} · refusal · open-ended answers at layer {s['layer']} "
            f"({s['questions']} questions, {s['max_new_tokens']} tokens)",
        ),
        folder / "open_ended.png",
    )
    reliability = {}
    rel_path = folder / "reliability.json"
    old_rel = json.loads(rel_path.read_text(encoding="utf-8")) if rel_path.exists() else {}
    if "A/B" in old_rel:
        d = dict(old_rel["A/B"])
        d["wrong_way_ci"] = tuple(d["wrong_way_ci"])
        reliability["A/B"] = rel.Reliability(**d)
    open_m, _, scores = rel.open_ended_scores(answers, "vector")
    reliability["open-ended"] = rel.summarize(open_m, scores, s.get("score", "refusal rate"))
    write_json(
        rel_path,
        {"settings": old_rel.get("settings", {}), **{k: r.to_dict() for k, r in reliability.items()}},
        indent=1,
    )
    ev.save_figure(
        rel.plot_histograms(reliability, f"{s['model']} · refusal · per-prompt steerability"),
        folder / "reliability.png",
    )
    ab_path = folder / "ab_sweep.json"
    ab = json.loads(ab_path.read_text(encoding="utf-8")) if ab_path.exists() else None
    text = summary_markdown(ab, payload, s["seconds"] + ((ab or {}).get("settings", {}).get("seconds") or 0), np)
    text += "\n".join(rel.markdown(reliability)) + "\n"
    text += f"\nJudge re-applied to the stored answers: {s['rejudged']}.\n"
    write_text(folder / "summary.md", text)
    for path in args.minus_side:
        side = json.loads(Path(path).read_text(encoding="utf-8"))
        for row in side["answers"]:
            verdict = detector(row["text"])
            if verdict != row["refusal"]:
                changed.append(("minus-side " + Path(path).name, row["applied"], row["refusal"], verdict, row["text"]))
            row["refusal"] = verdict
        side["sides"]["subtracted"]["refusal_rate"] = round(float(np.mean([r["refusal"] for r in side["answers"]])), 4)
        side["settings"]["rejudged"] = "refusal flags re-scored by python results/refusal_rejudge.py"
        write_json(Path(path), side, indent=1)
    for variant, m, old, new, t in changed:
        print(f"{variant} {m:+g}: {old} -> {new}: {t[:160]!r}")
    for name, rows in payload["summary"].items():
        for r in rows:
            print(
                f"{name:8s} {r['multiplier']:+5g}  refusal {r['refusal_rate']:.3f}  d3 {r['distinct3']:.3f}  "
                f"ppl {r['perplexity']:.2f}"
            )
    o = reliability["open-ended"]
    print(
        f"wrong way {o.wrong_way}/{o.n} ({o.wrong_way_share:.0%}, CI {o.wrong_way_ci[0]:.0%}-{o.wrong_way_ci[1]:.0%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
