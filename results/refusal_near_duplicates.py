"""Held-out near-duplicates of the refusal sets, and the issue 9 targets without them (no model is run).

Lists every pair that steering.core.datasets.near_duplicate flags between a held-out set
(datasets/refusal/test_open_ended*.json) and any other refusal set (the tuning split, the A/B sets, the
extraction data), then recomputes the held-out rows of the shipped recipe (variant "vector" at -m, 0, +m) from
the shipped per-answer records (results/eval*/open_ended.json) twice: on all questions, and without the
held-out questions that near-duplicate a tuning question. Perplexity is exp of the median per-answer NLL, as
steering.evaluation.open_ended.summarize_answers computes it. Prints markdown tables.

    python results/refusal_near_duplicates.py

Run from the project root or anywhere; it reads only shipped files and writes nothing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "datasets" / "refusal"
HELD_OUT = {
    "test_open_ended.json": ROOT / "results" / "eval" / "open_ended.json",
    "test_open_ended_casual.json": ROOT / "results" / "eval-casual" / "open_ended.json",
    "test_open_ended_yesno.json": ROOT / "results" / "eval-yesno" / "open_ended.json",
}
TUNING = ("tune_open_ended.json", "tune_open_ended_casual.json", "tune_open_ended_yesno.json")
AB_FILES = ("generate.json", "generate_v2.json", "test_ab.json")


def question_sets() -> dict[str, list[str]]:
    """Every refusal set's questions (A/B items: the request part), by file name."""
    from steering.core.datasets import load_ab_dataset, load_open_ended

    sets = {name: [item.request for item in load_ab_dataset(DATA / name)] for name in AB_FILES}
    for name in (*HELD_OUT, *TUNING):
        sets[name] = load_open_ended(DATA / name)
    instructions = json.loads((DATA / "instructions.json").read_text(encoding="utf-8"))
    sets["instructions.json"] = [q for items in instructions.values() for q in items]
    return sets


def row(answers: list[dict]) -> dict:
    """Refusal rate, mean distinct-3, looping share and perplexity (exp of the median NLL) of some answers."""
    import numpy as np

    nlls = [a["nll"] for a in answers if a.get("nll") is not None]
    return {
        "n": len(answers),
        "refusal": float(np.mean([a["refusal"] for a in answers])),
        "distinct3": float(np.mean([a["distinct3"] for a in answers])),
        "loops": float(np.mean([a["loops"] for a in answers])),
        "perplexity": float(math.exp(np.median(nlls))) if nlls else None,
    }


def targets(minus: dict, base: dict, plus: dict) -> dict[str, bool]:
    """The issue 9 targets (README Results): refusal on each side, distinct-3 and perplexity against unsteered."""
    from steering.evaluation.coherence_rule import COHERENCE

    out = {
        "added >= 0.75": plus["refusal"] >= 0.75,
        "subtracted <= 0.05": minus["refusal"] <= 0.05,
        "distinct-3 >= 0.85 x": min(minus["distinct3"], plus["distinct3"])
        >= COHERENCE.min_distinct_ratio * base["distinct3"],
    }
    if None not in (minus["perplexity"], base["perplexity"], plus["perplexity"]):
        out["ppl <= 3 x"] = max(minus["perplexity"], plus["perplexity"]) <= (
            COHERENCE.max_perplexity_ratio * base["perplexity"]
        )
    return out


def main() -> int:
    from steering.core.datasets import near_duplicate_pairs

    sets = question_sets()
    print("## Held-out near-duplicates (steering.core.datasets.near_duplicate)\n")
    print("| held-out | question | other set | question |")
    print("|---|---|---|---|")
    dropped: dict[str, set[int]] = {name: set() for name in HELD_OUT}
    for name in HELD_OUT:
        for _, i, other, j in near_duplicate_pairs(name, sets):
            print(f"| {name}:{i} | {sets[name][i]} | {other}:{j} | {sets[other][j]} |")
            if other in TUNING:
                dropped[name].add(i)

    print("\n## Held-out targets, all questions vs without the near-duplicates of a tuning question\n")
    print(
        "| set | questions | n | refusal -m / 0 / +m | distinct-3 -m / 0 / +m | perplexity -m / 0 / +m "
        "| looping -m / 0 / +m | targets |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, path in HELD_OUT.items():
        run = json.loads(path.read_text(encoding="utf-8"))
        if run["settings"]["dataset"] != f"datasets/refusal/{name}":
            raise SystemExit(f"{path}: answers {run['settings']['dataset']}, expected datasets/refusal/{name}")
        m = float(run["settings"]["recipe"]["strength"])
        questions = sets[name]
        if len(set(questions)) != len(questions) or {a["question"] for a in run["answers"]} != set(questions):
            raise SystemExit(f"{path}: its questions are not those of datasets/refusal/{name}")
        for label, keep in (
            ("all", set(questions)),
            (
                f"without {sorted(dropped[name]) or 'none (no tuning near-duplicate)'}",
                {q for i, q in enumerate(questions) if i not in dropped[name]},
            ),
        ):
            rows = [
                row(
                    [
                        a
                        for a in run["answers"]
                        if a["variant"] == "vector" and a["multiplier"] == x and a["question"] in keep
                    ]
                )
                for x in (-m, 0.0, m)
            ]
            held = targets(*rows)
            cells = [
                " / ".join("–" if r[k] is None else f"{r[k]:.{p}f}" for r in rows)
                for k, p in (("refusal", 2), ("distinct3", 3), ("perplexity", 2), ("loops", 2))
            ]
            verdict = ", ".join(f"{k} {'holds' if ok else 'FAILS'}" for k, ok in held.items())
            print(f"| {name} | {label} | {rows[1]['n']} | " + " | ".join(cells) + f" | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
