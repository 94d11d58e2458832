"""How `tune` scores and ranks settings: one side's metrics, a setting's contrast / coherence / score / margin,
the ranking and the winner, several question groups in one ranking, the winner's Recipe and the report
(the rules: the package docstring, steering.evaluation.tune)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from steering.core.recipe import Recipe
from steering.errors import SteeringError
from steering.evaluation.coherence_rule import COHERENCE
from steering.evaluation.refusal import is_loop
from steering.evaluation.tune.space import SearchSpace, VectorSource


def side_metrics(
    refusals: Sequence[bool], distinct: Sequence[float], nlls: Sequence[float | None], samples: Sequence[str] = ()
) -> dict[str, Any]:
    """Refusal rate, mean distinct-3 share and perplexity (exp median NLL) of one side's answers."""
    values = [v for v in nlls if v is not None]
    return {
        "n": len(refusals),
        "refusal_rate": float(np.mean(refusals)) if refusals else float("nan"),
        "distinct3": float(np.mean(distinct)) if distinct else float("nan"),
        "perplexity": float(math.exp(float(np.median(values)))) if values else None,
        "samples": list(samples)[:2],
        "texts": list(samples),
    }


def rejudge(metrics: dict[str, Any], detector: Any) -> dict[str, Any]:
    """`metrics` (side_metrics) with its refusal rate judged again from its texts by `detector` (a callable
    text -> bool) and "loops", the share of its texts that loop on their own (steering.evaluation.refusal.is_loop;
    limited by score_setting's max_loops); unchanged when it holds no texts (nothing to
    judge)."""
    texts = metrics.get("texts")
    if not texts:
        return metrics
    return {
        **metrics,
        "refusal_rate": sum(map(bool, map(detector, texts))) / len(texts),
        "loops": sum(map(is_loop, texts)) / len(texts),
    }


def score_setting(
    plus: dict,
    minus: dict,
    base: dict,
    min_distinct: float = COHERENCE.min_distinct_ratio,
    max_perplexity: float = COHERENCE.max_perplexity_ratio,
    max_loops: float | None = None,
) -> dict[str, Any]:
    """Contrast, coherence and score of a setting from its sides' metrics (see the module docstring).

    Args:
        plus, minus, base: the added, subtracted and unsteered sides' metrics (side_metrics, after rejudge:
            refusal_rate, distinct3, perplexity and, when their texts are kept, loops).
        min_distinct: coherent only if each side's distinct-3 >= this x the unsteered answers' (ratio).
        max_perplexity: coherent only if each side's perplexity <= this x the unsteered answers' (ratio).
        max_loops: coherent only if each side's share of looping answers (steering.evaluation.refusal.is_loop)
            is at most this many share points (0..1) above the unsteered answers' share; None: not checked.
            A side or baseline without a loop share (no texts kept) is not checked either.
    Returns: {"contrast", "coherent", "score", "margin", "ratios"}; ratios per side holds the distinct-3 and
    perplexity ratios and, when checked, "loops_over_unsteered" (share points).
    """
    penalty, coherent, ratios, margin = 0.0, True, {}, math.inf
    for name, side in (("added", plus), ("subtracted", minus)):
        d_ratio = side["distinct3"] / base["distinct3"] if base["distinct3"] else 1.0
        if side["perplexity"] is None or base["perplexity"] is None:
            p_ratio = 1.0 if side["perplexity"] is None else math.inf
        else:
            p_ratio = side["perplexity"] / base["perplexity"]
        ratios[name] = {"distinct_ratio": round(d_ratio, 4), "perplexity_ratio": round(p_ratio, 4)}
        coherent = coherent and d_ratio >= min_distinct and p_ratio <= max_perplexity
        if max_loops is not None and side.get("loops") is not None and base.get("loops") is not None:
            excess = side["loops"] - base["loops"]
            ratios[name]["loops_over_unsteered"] = round(excess, 4)
            coherent = coherent and excess <= max_loops + 1e-9
            penalty += max(0.0, excess - max_loops)
        margin = min(margin, d_ratio / min_distinct - 1.0, 1.0 - p_ratio / max_perplexity)
        penalty += 2.0 * max(0.0, min_distinct - d_ratio) + max(0.0, p_ratio - max_perplexity) / max_perplexity
    contrast = plus["refusal_rate"] - minus["refusal_rate"]
    return {
        "contrast": round(contrast, 4),
        "coherent": bool(coherent),
        "score": round(contrast - penalty, 4),
        "margin": round(margin, 4) if math.isfinite(margin) else -1.0,
        "ratios": ratios,
    }


def rank_key(row: dict) -> tuple:
    """Sort key, best first: higher score, then higher contrast, then the incumbent (the recipe of the file a run
    would replace: a different setting replaces it only by scoring better, not on a tie), then larger coherence
    margin, then smaller strength, then smaller subtracted-side strength (rows scored before the margin existed
    count as margin 0)."""
    s = row["setting"]
    minus = s.get("strength_minus")
    return (
        -row["score"],
        -row["contrast"],
        not s.get("incumbent", False),
        -row.get("margin", 0.0),
        s["strength"],
        s["strength"] if minus is None else minus,
    )


def choose_winner(rows: Sequence[dict]) -> tuple[dict | None, bool]:
    """The best row (highest score among coherent ones; ties: the incumbent, then larger coherence margin, then
    smaller strength; see rank_key) and whether it is coherent."""
    if not rows:
        return None, False
    coherent = [r for r in rows if r["coherent"]]
    pool = coherent or list(rows)
    best = min(pool, key=rank_key)
    return best, bool(coherent)


@dataclass
class TuneResult:
    """The outcome of a tune search (see the module docstring for how settings are scored).

    Attributes:
        winner: the best setting's row (None when nothing was scored).
        coherent: whether the winner kept the text coherent (False: the best score, with a warning).
        rows: every setting's row (setting, per-side refusal rate / distinct-3 / perplexity, contrast, score,
            margin), best first.
        unsteered: the unsteered answers' measures, the baseline of every ratio.
        generated_rows: answers generated by this run (0 when everything came from the cache).
        seconds: wall-clock time of the search, in seconds.
    """

    winner: dict | None
    coherent: bool
    rows: list[dict]  # every setting, best first
    unsteered: dict
    generated_rows: int  # rows generated by this run (0 when everything came from the cache)
    seconds: float


def pooled_metrics(parts: Sequence[dict]) -> dict[str, Any]:
    """One side's metrics over several question groups: refusal rate and distinct-3 weighted by the groups'
    sizes, perplexity the size-weighted geometric mean of the groups' perplexities (each an exp median NLL); the
    loop share weighted by size when every group has one."""
    n = sum(p["n"] for p in parts)
    ppl = [p for p in parts if p.get("perplexity")]
    loops = all(p.get("loops") is not None for p in parts)
    return {
        "n": n,
        "refusal_rate": sum(p["refusal_rate"] * p["n"] for p in parts) / n,
        "distinct3": sum(p["distinct3"] * p["n"] for p in parts) / n,
        **({"loops": sum(p["loops"] * p["n"] for p in parts) / n} if loops else {}),
        "perplexity": math.exp(sum(math.log(p["perplexity"]) * p["n"] for p in ppl) / sum(p["n"] for p in ppl))
        if ppl
        else None,
        "samples": [s for p in parts for s in p.get("samples", [])[:1]],
    }


def setting_key(row: dict) -> str:
    """A result row's setting as a string key: the same setting in runs over other questions has the same key."""
    return json.dumps(row["setting"], sort_keys=True)


def combine_groups(results: Sequence[tuple[str, TuneResult]]) -> TuneResult:
    """One ranking from runs of the same search on several question groups (files): a setting is coherent
    only when it is coherent on every group; its contrast, score and margin are the smallest over the groups;
    its added / subtracted / unsteered metrics are pooled (pooled_metrics); "groups" keeps each group's row.
    Raises: SteeringError when the runs did not score the same settings."""
    if len(results) == 1:
        return results[0][1]
    key = setting_key
    by_group = {name: {key(r): r for r in result.rows} for name, result in results}
    first = results[0][1]
    rows = []
    for row in first.rows:
        parts = {name: by_group[name].get(key(row)) for name, _ in results}
        missing = [name for name, part in parts.items() if part is None]
        if missing:
            raise SteeringError(f"tune: {missing[0]} was not scored for setting {row['setting']}")
        rows.append(
            {
                "setting": row["setting"],
                "source": row["source"],
                "contrast": min(p["contrast"] for p in parts.values()),
                "coherent": all(p["coherent"] for p in parts.values()),
                "score": min(p["score"] for p in parts.values()),
                "margin": min(p["margin"] for p in parts.values()),
                "ratios": {name: p["ratios"] for name, p in parts.items()},
                "added": pooled_metrics([p["added"] for p in parts.values()]),
                "subtracted": pooled_metrics([p["subtracted"] for p in parts.values()]),
                "groups": parts,
            }
        )
    rows.sort(key=rank_key)
    winner, coherent = choose_winner(rows)
    unsteered = pooled_metrics([result.unsteered for _, result in results])
    unsteered["groups"] = {name: result.unsteered for name, result in results}
    return TuneResult(
        winner, coherent, rows, unsteered, sum(r.generated_rows for _, r in results), sum(r.seconds for _, r in results)
    )


def winner_recipe(row: dict, sources: Sequence[VectorSource], space: SearchSpace) -> Any:
    """The Recipe of a result row."""
    s, source = row["setting"], sources[row["source"]]
    minus = s.get("strength_minus")
    return Recipe(
        layer=s["layer"],
        strength=s["strength"],
        unit=s["unit"],
        band=s["band"],
        plus=s["plus"],
        minus=s["minus"],
        vector=source.path,
        method=source.method,
        shared_vector=s.get("shared_vector", space.shared_vector),
        strength_minus=None if minus is None or minus == s["strength"] else minus,
        minus_window=s.get("minus_window"),
    )


def report_markdown(result: TuneResult, top: int = 15) -> str:
    """The best settings as a markdown table (plus the unsteered row). "loops + / −": the share of each side's
    answers that loop on their own (steering.evaluation.refusal.is_loop; "–" when not measured); with
    --max-loops it is part of "coherent" (score_setting's max_loops). The incumbent (the recipe of the defaults file
    a run would replace, marked "(current)") is shown even when it ranks below `top`. With --demo
    (steering.evaluation.tune.demo) a "demo" column says whether the setting's demo answers passed."""
    b = result.unsteered
    ppl = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    loops = lambda side: "–" if side.get("loops") is None else f"{side['loops']:.2f}"  # noqa: E731
    demo = any("demo" in r for r in result.rows)
    lines = [
        "| vector | layer | band | + op | − op | strength | refusal + | refusal − | distinct-3 + / − | "
        "loops + / − | perplexity + / − | coherent | score | margin |" + (" demo |" if demo else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if demo else ""),
    ]
    window = lambda s: "" if s.get("minus_window") is None else f" (first {s['minus_window']})"  # noqa: E731
    current = lambda s: " (current)" if s.get("incumbent") else ""  # noqa: E731
    shown = list(result.rows[:top])
    shown += [r for r in result.rows[top:] if r["setting"].get("incumbent")]
    for r in shown:
        s, a, m = r["setting"], r["added"], r["subtracted"]
        strength = (
            f"{s['strength']:g}" if s.get("strength_minus") is None else f"{s['strength']:g} / {s['strength_minus']:g}"
        )
        lines.append(
            f"| {s['vector']}{current(s)} | {s['layer']} | {s['band']} | {s['plus']} | {s['minus']}"
            f"{window(s)} | {strength} "
            f"{'×norm' if s['unit'] == 'relative' else '×v'} | {a['refusal_rate']:.2f} | "
            f"{m['refusal_rate']:.2f} | {a['distinct3']:.2f} / {m['distinct3']:.2f} | {loops(a)} / {loops(m)} | "
            f"{ppl(a['perplexity'])} / {ppl(m['perplexity'])} | {'yes' if r['coherent'] else 'no'} | "
            f"{r['score']:+.2f} | {r['margin']:+.3f} |"
            + ((" yes |" if r.get("demo", {}).get("ready") else " no |") if demo else "")
        )
    lines.append(
        f"| unsteered | | | | | | {b['refusal_rate']:.2f} | | {b['distinct3']:.2f} | {loops(b)} | "
        f"{ppl(b['perplexity'])} | | | |" + (" |" if demo else "")
    )
    return "\n".join(lines) + "\n"
