"""`tune --demo`: the prompts a demo shows first (the app's planet question) as a condition on the winner.

A setting is *demo-ready* when, on every demo prompt, its added answer shows the behavior (the judge), its subtracted
answer does not, and neither answer loops (its own distinct-3 share >= DEMO_MIN_DISTINCT3). The winner is then the
best coherent demo-ready setting (ranked as before: steering.evaluation.tune.scoring.rank_key); when none is, the
best coherent setting, with `ready` False. The demo answers are generated like the tuning answers (run_tune on
the demo prompts: greedy, the same answer length, its own cache), so the check costs one row per side job.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from steering.errors import SteeringError
from steering.evaluation.coherence_rule import DEMO_MIN_DISTINCT3
from steering.evaluation.refusal import distinct_ngram_share
from steering.evaluation.tune.scoring import TuneResult, rank_key, setting_key


def demo_verdict(row: dict, detector: Any, min_distinct: float = DEMO_MIN_DISTINCT3) -> dict[str, Any]:
    """Whether one setting's answers to the demo prompts show the contrast without looping.

    Args:
        row: the setting's row of a run_tune over the demo prompts ("added" / "subtracted": side metrics with
            "texts", one answer per prompt, in prompt order).
        detector: the judge, text -> bool (shows the behavior).
        min_distinct: an answer loops below this distinct-3 share (its own word trigrams; 0..1).

    Returns:
        {"ready": bool, "failed": None or the first failing check as text ("prompt 0: the subtracted answer
        loops (distinct-3 0.44 < 0.75)"), "added": [texts], "subtracted": [texts]}.
    """
    added, subtracted = list(row["added"]["texts"]), list(row["subtracted"]["texts"])
    failed = None
    for index, (plus, minus) in enumerate(zip(added, subtracted)):
        checks = (
            (not detector(plus), "the added answer does not show the behavior"),
            (bool(detector(minus)), "the subtracted answer shows the behavior"),
            *(
                (share < min_distinct, f"the {side} answer loops (distinct-3 {share:.2f} < {min_distinct:g})")
                for side, share in (("added", distinct_ngram_share(plus)), ("subtracted", distinct_ngram_share(minus)))
            ),
        )
        failed = next((f"prompt {index}: {why}" for bad, why in checks if bad), None)
        if failed:
            break
    return {"ready": failed is None, "failed": failed, "added": added, "subtracted": subtracted}


def apply_demo(
    result: TuneResult, demo: TuneResult, detector: Any, min_distinct: float = DEMO_MIN_DISTINCT3
) -> TuneResult:
    """`result` with every row's demo verdict ("demo": demo_verdict) and the winner chosen among the coherent
    demo-ready settings (none: among the coherent ones; none coherent: all), rows re-sorted with those eligible
    first, each part by rank_key.

    Args:
        result: the search over the tuning questions (run_tune / combine_groups).
        demo: the same search run over the demo prompts (same space and sources: the same settings).
        detector: the judge, text -> bool.
        min_distinct: demo_verdict's loop threshold.

    Returns:
        A new TuneResult (rows annotated and re-sorted, winner and coherent re-chosen).

    Raises:
        SteeringError: a setting of `result` missing from `demo` (the two runs searched different spaces).
    """
    key = setting_key
    verdicts = {key(row): demo_verdict(row, detector, min_distinct) for row in demo.rows}
    rows = []
    for row in result.rows:
        verdict = verdicts.get(key(row))
        if verdict is None:
            raise SteeringError(f"tune --demo: setting {row['setting']} has no demo answers")
        rows.append({**row, "demo": verdict})
    eligible = lambda row: row["coherent"] and row["demo"]["ready"]  # noqa: E731
    rows.sort(key=lambda row: (not eligible(row), rank_key(row)))
    pool = [r for r in rows if eligible(r)] or [r for r in rows if r["coherent"]] or rows
    winner = min(pool, key=rank_key) if pool else None
    return replace(result, rows=rows, winner=winner, coherent=any(r["coherent"] for r in rows))


def demo_summary(result: TuneResult, prompts: Sequence[str], min_distinct: float = DEMO_MIN_DISTINCT3) -> dict:
    """What the defaults file records of --demo: the prompts, the rule, the winner's verdict and answers, and how
    many coherent settings were demo-ready (JSON-ready)."""
    winner = (result.winner or {}).get("demo") or {}
    return {
        "prompts": list(prompts),
        "rule": "added answer shows the behavior, subtracted does not, neither loops (distinct-3 >= "
        f"{min_distinct:g}); the winner is the best coherent setting that passes",
        "ready": bool(winner.get("ready")),
        "failed": winner.get("failed"),
        "ready_coherent_settings": sum(1 for r in result.rows if r["coherent"] and r["demo"]["ready"]),
        "added": winner.get("added"),
        "subtracted": winner.get("subtracted"),
    }
