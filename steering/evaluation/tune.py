"""`python -m steering tune`: search method x layer(s) x operator x strength for the steering recipe,
on a tuning split of open-ended questions (never the test set), and write the winner into the
per-model defaults file vectors/<behavior>/<model-slug>.defaults.json (steering.core.recipe).

How a setting is scored
    A setting is a Recipe (vector file, anchor layer, band, operator of the added side, operator of
    the subtracted side, strength, unit). Its added rows (+strength) and subtracted rows (-strength)
    answer every tuning question (greedy, --max-new-tokens). Per side: the open-ended refusal rate
    (steering.evaluation.refusal.RefusalDetector, config evaluation.refusal_phrases), the mean distinct-3 share
    and the unsteered model's perplexity of the answers (exp of the median per-answer NLL,
    steering.evaluation.answer_nll), against the unsteered answers' values.
      contrast = refusal(added) - refusal(subtracted)
      coherent = on both sides distinct-3 >= 0.85 x unsteered and perplexity <= 3 x unsteered
                 (evaluation.breakdown_multiplier's rule; --min-distinct, --max-perplexity)
      score    = contrast - 2 x sum over sides of max(0, 0.85 - distinct ratio)
                          - sum over sides of max(0, perplexity ratio - 3) / 3
      margin   = the smallest relative slack to the coherence limits over both sides and both measures,
                 min(distinct ratio / min_distinct - 1, 1 - perplexity ratio / max_perplexity)
                 (< 0: over a limit)
    The winner is the coherent setting with the highest score; equal scores go to the larger coherence
    margin (the setting further from breaking down), then the smaller strength. When no setting is
    coherent: the highest score, with a warning.
    Separate subtracted-side strengths (--minus-strengths): every added-side strength is paired with every
    subtracted-side one (the recipe's `strength_minus`); without it both sides use the same strength.
    Several question files (--questions A B, e.g. the tuning split and its casual part): each file is a
    group, scored on its own against its own unsteered answers; a setting is coherent only when it is
    coherent on every group, and its contrast, score and margin are the smallest over the groups (a
    recipe has to work for every style of question, not on average). The rows' refusal / distinct-3 /
    perplexity columns are over all questions.

Cost
    The two sides are independent: the added rows depend on (vector, layers, plus operator, +strength)
    only, the subtracted ones on (vector, layers, minus operator, -strength) (ablation not on the
    strength at all), so each "side job" is generated once and shared by every setting that uses it.
    Rows of many jobs run in one generate() call (one SteeringPlan, per-row operators; jobs that would
    need two different vectors at one layer go to different calls), whole jobs per call.

Resumable
    Each finished side job is written (atomically) to a JSON cache next to the output
    (<model-slug>.tune-cache.json); a rerun with the same model, questions, answer length and system
    prompt skips the jobs already there. A different context starts a new cache.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from steering.errors import SteeringError

OPERATORS = ("add", "clamp", "ablate")
DEFAULT_STRENGTHS = {"multiplier": [1.0, 2.0, 4.0], "relative": [0.1, 0.2, 0.3]}
CACHE_VERSION = 1


# ============================================================================ the search space
@dataclass(frozen=True)
class VectorSource:
    """One vector file of the search: `path` as the recipe records it (None = the behavior's own file)."""

    path: str | None
    label: str  # how the report names it (file name + method)
    sha256: str
    method: str | None
    vectors: Any = field(compare=False, hash=False, repr=False)  # a VectorSet


@dataclass(frozen=True)
class SideJob:
    """The rows of one side of a setting: every question, steered by one operator at one strength."""

    source: int  # index into the search's vector sources
    layer: int
    band: int
    op: str
    strength: float  # signed, in `unit`; ablation: -1 (only the sign matters)
    unit: str
    shared: bool

    def key(self, sources: Sequence[VectorSource]) -> str:
        """The job's cache key: vector file hash, layer, band, shared/own vectors, operator, signed strength, unit.

        Args:
            sources: the search's vector sources (`source` indexes them).
        """
        strength = "-" if self.op == "ablate" else f"{self.strength:+g}"
        return (
            f"{sources[self.source].sha256[:16]}|L{self.layer}|b{self.band}|{'shared' if self.shared else 'own'}|"
            f"{self.op}|{strength}|{self.unit if self.op != 'ablate' else '-'}"
        )

    def recipe(self) -> Any:
        """The Recipe that generates this side's rows: `op` on the side of the strength's sign, "add" on the other
        (unused) side, |strength| in `unit` (steering.core.recipe.Recipe).
        """
        from steering.core.recipe import Recipe

        return Recipe(
            layer=self.layer,
            strength=abs(self.strength),
            unit=self.unit,
            band=self.band,
            plus=self.op if self.strength > 0 else "add",
            minus=self.op if self.strength < 0 else "add",
            shared_vector=self.shared,
        )


@dataclass
class SearchSpace:
    """What `tune` tries: every vector x layer x band x plus operator x minus operator x strength."""

    layers: list[int]
    bands: list[int] = field(default_factory=lambda: [1])
    plus: list[str] = field(default_factory=lambda: ["add", "clamp"])
    minus: list[str] = field(default_factory=lambda: ["add", "ablate"])
    strengths: list[float] = field(default_factory=lambda: list(DEFAULT_STRENGTHS["relative"]))
    unit: str = "relative"
    shared_vector: bool = True
    minus_strengths: list[float] | None = None  # subtracted-side strengths; None = the same as `strengths`

    def check(self, num_layers: int | None = None) -> SearchSpace:
        """One-line SteeringError naming the first bad entry."""
        from steering.core.recipe import UNITS

        if not self.layers:
            raise SteeringError("tune: no layers to search")
        for name, values in (("--plus", self.plus), ("--minus", self.minus)):
            if not values:
                raise SteeringError(f"tune: {name} needs at least one operator")
            bad = [v for v in values if v not in OPERATORS]
            if bad:
                raise SteeringError(f"tune: {name}: unknown operator '{bad[0]}' (expected {', '.join(OPERATORS)})")
        if not self.strengths:
            raise SteeringError("tune: no strengths to search")
        bad_s = [s for s in self.strengths if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0)]
        if bad_s:
            raise SteeringError(f"tune: --strengths must be finite numbers > 0, found {bad_s[0]}")
        if self.minus_strengths is not None:
            bad_m = [
                s for s in self.minus_strengths if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0)
            ]
            if bad_m or not self.minus_strengths:
                raise SteeringError(
                    f"tune: --minus-strengths must be finite numbers > 0, found {bad_m[0] if bad_m else 'none'}"
                )
        bad_b = [b for b in self.bands if b < 1]
        if bad_b or not self.bands:
            raise SteeringError(f"tune: --bands must be integers >= 1, found {bad_b[0] if bad_b else 'none'}")
        if self.unit not in UNITS:
            raise SteeringError(f"tune: --unit must be one of {', '.join(UNITS)}, found '{self.unit}'")
        for layer in self.layers:
            if layer < 0 or (num_layers is not None and layer >= num_layers):
                top = f"0..{num_layers - 1}" if num_layers is not None else ">= 0"
                raise SteeringError(f"tune: layer {layer} is out of range: the model has layers {top}")
        return self


@dataclass(frozen=True)
class Setting:
    """One candidate recipe = one added-side job and one subtracted-side job."""

    source: int
    layer: int
    band: int
    plus: str
    minus: str
    strength: float
    strength_minus: float | None = None  # the subtracted side's own strength (None: `strength`)


def side_jobs(space: SearchSpace, n_sources: int) -> tuple[list[Setting], dict[Setting, tuple[SideJob, SideJob]]]:
    """Every setting of the space and the two side jobs it needs (shared between settings)."""
    settings: list[Setting] = []
    jobs: dict[Setting, tuple[SideJob, SideJob]] = {}
    for source in range(n_sources):
        for layer in space.layers:
            for band in space.bands:
                for strength in space.strengths:
                    for plus in space.plus:
                        for minus in space.minus:
                            # ablation does not depend on the strength: one setting, whatever --minus-strengths
                            downs = (
                                [None]
                                if minus == "ablate" or space.minus_strengths is None
                                else [float(m) for m in space.minus_strengths]
                            )
                            for down_s in downs:
                                setting = Setting(source, layer, band, plus, minus, float(strength), down_s)
                                up = SideJob(
                                    source, layer, band, plus, float(strength), space.unit, space.shared_vector
                                )
                                amount = float(strength) if down_s is None else down_s
                                down = SideJob(
                                    source,
                                    layer,
                                    band,
                                    minus,
                                    -1.0 if minus == "ablate" else -amount,
                                    space.unit,
                                    space.shared_vector,
                                )
                                settings.append(setting)
                                jobs[setting] = (up, down)
    return settings, jobs


# ============================================================================ scoring
def side_metrics(
    refusals: Sequence[bool], distinct: Sequence[float], nlls: Sequence[float | None], samples: Sequence[str] = ()
) -> dict[str, Any]:
    """Refusal rate, mean distinct-3 share and perplexity (exp median NLL) of one side's answers."""
    import numpy as np

    values = [v for v in nlls if v is not None]
    return {
        "n": len(refusals),
        "refusal_rate": float(np.mean(refusals)) if refusals else float("nan"),
        "distinct3": float(np.mean(distinct)) if distinct else float("nan"),
        "perplexity": float(math.exp(float(np.median(values)))) if values else None,
        "samples": list(samples)[:2],
    }


def score_setting(
    plus: dict, minus: dict, base: dict, min_distinct: float = 0.85, max_perplexity: float = 3.0
) -> dict[str, Any]:
    """Contrast, coherence and score of a setting from its sides' metrics (see the module docstring)."""
    penalty, coherent, ratios, margin = 0.0, True, {}, math.inf
    for name, side in (("added", plus), ("subtracted", minus)):
        d_ratio = side["distinct3"] / base["distinct3"] if base["distinct3"] else 1.0
        if side["perplexity"] is None or base["perplexity"] is None:
            p_ratio = 1.0 if side["perplexity"] is None else math.inf
        else:
            p_ratio = side["perplexity"] / base["perplexity"]
        ratios[name] = {"distinct_ratio": round(d_ratio, 4), "perplexity_ratio": round(p_ratio, 4)}
        coherent = coherent and d_ratio >= min_distinct and p_ratio <= max_perplexity
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
    """Sort key, best first: higher score, then higher contrast, then larger coherence margin, then smaller
    strength, then smaller subtracted-side strength (rows scored before the margin existed count as margin 0)."""
    s = row["setting"]
    minus = s.get("strength_minus")
    return (
        -row["score"],
        -row["contrast"],
        -row.get("margin", 0.0),
        s["strength"],
        s["strength"] if minus is None else minus,
    )


def choose_winner(rows: Sequence[dict]) -> tuple[dict | None, bool]:
    """The best row (highest score among coherent ones; ties: larger coherence margin, then smaller strength;
    see rank_key) and whether it is coherent."""
    if not rows:
        return None, False
    coherent = [r for r in rows if r["coherent"]]
    pool = coherent or list(rows)
    best = min(pool, key=rank_key)
    return best, bool(coherent)


# ============================================================================ the cache
def load_cache(path: Path, context: dict[str, Any]) -> dict[str, Any]:
    """The cached side jobs for this context ({} when the file is missing or made for another context)."""
    import json

    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        print(f"tune: {path} is not a readable cache; starting a new one", file=sys.stderr)
        return {}
    if not isinstance(data, dict) or data.get("context") != context or not isinstance(data.get("jobs"), dict):
        print(
            f"tune: {path} was made for other settings (model, questions, answer length); starting a new one",
            file=sys.stderr,
        )
        return {}
    return dict(data["jobs"])


def save_cache(path: Path, context: dict[str, Any], jobs: dict[str, Any]) -> None:
    """Write the finished side jobs to the tune cache (atomically, steering.io.files.write_json).

    Args:
        path: the cache file (<model slug>.tune-cache.json by default).
        context: what the answers depend on (model, dtype, questions hash, answer length, system prompt, judge
            phrases); load_cache ignores a cache made for another context.
        jobs: {SideJob.key: that job's answers and scores}.

    Raises:
        OSError: the file cannot be written.
    """
    from steering.io.files import write_json

    write_json(path, {"version": CACHE_VERSION, "context": context, "jobs": jobs}, indent=1)


# ============================================================================ the search
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


def _batches(
    jobs: Sequence[SideJob], per_call: int, vector_id: Callable[[SideJob, int], Any], num_layers: int
) -> list[list[SideJob]]:
    """Whole jobs per generate() call, at most `per_call` jobs, never two vectors at one layer."""
    batches: list[tuple[list[SideJob], dict[int, Any]]] = []
    for job in jobs:
        layers = job.recipe().layers(num_layers)
        for batch, used in batches:
            if len(batch) < per_call and all(
                used.get(layer, vector_id(job, layer)) == vector_id(job, layer) for layer in layers
            ):
                batch.append(job)
                used.update({layer: vector_id(job, layer) for layer in layers})
                break
        else:
            batches.append(([job], {layer: vector_id(job, layer) for layer in layers}))
    return [batch for batch, _ in batches]


def run_tune(
    engine: Any,
    questions: Sequence[str],
    sources: Sequence[VectorSource],
    space: SearchSpace,
    settings: Any,
    detector: Any,
    cache_path: Path,
    context: dict[str, Any],
    system_prompt: str | None = None,
    batch_rows: int = 64,
    min_distinct: float = 0.85,
    max_perplexity: float = 3.0,
    progress: bool = True,
) -> TuneResult:
    """Score every setting of `space` on `questions` (cached side jobs reused) and rank them.

    Args:
        engine: a steering.engine.Engine (its model, tokenizer and hidden-state norms are used).
        questions: the tuning questions.
        sources: the vector files to try.
        space: layers x bands x operators x strengths (checked against the model).
        settings: SamplingSettings of the answers (greedy, short).
        detector: a RefusalDetector.
        cache_path / context: the resumable cache and what it must match.
        batch_rows: about how many rows one generate() call takes (whole jobs: at least one job).
    Returns: TuneResult, rows sorted best first.
    """
    from tqdm.auto import tqdm

    from steering.core.hooks import SteeringPlan
    from steering.decode.generation import generate
    from steering.evaluation import answer_nll
    from steering.evaluation.refusal import distinct_ngram_share

    lm = engine.lm
    space.check(lm.num_layers)
    if not questions:
        raise SteeringError("tune: no tuning questions")
    all_settings, needs = side_jobs(space, len(sources))
    jobs = list(dict.fromkeys(job for pair in needs.values() for job in pair))
    keys = {job: job.key(sources) for job in jobs}
    cache = load_cache(cache_path, context)
    pending = [job for job in jobs if keys[job] not in cache]
    want_base = "unsteered" not in cache
    started = time.perf_counter()
    norm = engine.hidden_norm if space.unit == "relative" else None

    def vector_id(job: SideJob, layer: int) -> tuple[int, int]:
        return job.source, job.layer if job.shared else layer

    def score_rows(texts: list[str], ids: list[list[int]], qs: list[str]) -> tuple[list, list, list]:
        with lm.lock:
            nlls = answer_nll(lm.model, lm.tokenizer, qs, ids, system_prompt, batch_size=max(8, batch_rows))
        return [detector(t) for t in texts], [distinct_ngram_share(t) for t in texts], nlls

    n_q = len(questions)
    per_call = max(1, batch_rows // n_q)
    batches = _batches(pending, per_call, vector_id, lm.num_layers)
    total_rows = len(pending) * n_q + (n_q if want_base else 0)
    generated = 0
    convs = [[{"role": "user", "content": q}] for q in questions]
    with tqdm(total=total_rows, desc="tune", unit="answer", disable=not progress) as bar:
        if want_base:
            with lm.lock:
                result = generate(lm.model, lm.tokenizer, convs, settings=settings, system_prompt=system_prompt)
            refusals, distinct, nlls = score_rows(result.texts, result.token_ids, list(questions))
            cache["unsteered"] = side_metrics(refusals, distinct, nlls, result.texts)
            save_cache(cache_path, context, cache)
            generated += n_q
            bar.update(n_q)
        for batch in batches:
            plans = []
            for job in batch:
                plan = job.recipe().plan(
                    sources[job.source].vectors, [job.strength] * n_q, lm.num_layers, hidden_norm=norm
                )
                plans.append(plan)
            plan = SteeringPlan.stack(plans)
            with lm.lock:
                result = generate(
                    lm.model,
                    lm.tokenizer,
                    convs * len(batch),
                    settings=settings,
                    system_prompt=system_prompt,
                    steer=plan,
                )
            refusals, distinct, nlls = score_rows(result.texts, result.token_ids, list(questions) * len(batch))
            for j, job in enumerate(batch):
                part = slice(j * n_q, (j + 1) * n_q)
                cache[keys[job]] = side_metrics(refusals[part], distinct[part], nlls[part], result.texts[part])
            save_cache(cache_path, context, cache)  # resumable: every finished call is kept
            generated += len(batch) * n_q
            bar.update(len(batch) * n_q)
    base = cache["unsteered"]
    rows = []
    for setting in all_settings:
        up, down = needs[setting]
        plus, minus = cache[keys[up]], cache[keys[down]]
        scored = score_setting(plus, minus, base, min_distinct, max_perplexity)
        rows.append(
            {
                "setting": {
                    "vector": sources[setting.source].label,
                    "layer": setting.layer,
                    "band": setting.band,
                    "plus": setting.plus,
                    "minus": setting.minus,
                    "strength": setting.strength,
                    "strength_minus": setting.strength_minus,
                    "unit": space.unit,
                },
                "source": setting.source,
                **scored,
                "added": plus,
                "subtracted": minus,
            }
        )
    rows.sort(key=rank_key)
    winner, coherent = choose_winner(rows)
    return TuneResult(winner, coherent, rows, base, generated, time.perf_counter() - started)


def pooled_metrics(parts: Sequence[dict]) -> dict[str, Any]:
    """One side's metrics over several question groups: refusal rate and distinct-3 weighted by the groups'
    sizes, perplexity the size-weighted geometric mean of the groups' perplexities (each an exp median NLL)."""
    n = sum(p["n"] for p in parts)
    ppl = [p for p in parts if p.get("perplexity")]
    return {
        "n": n,
        "refusal_rate": sum(p["refusal_rate"] * p["n"] for p in parts) / n,
        "distinct3": sum(p["distinct3"] * p["n"] for p in parts) / n,
        "perplexity": math.exp(sum(math.log(p["perplexity"]) * p["n"] for p in ppl) / sum(p["n"] for p in ppl))
        if ppl
        else None,
        "samples": [s for p in parts for s in p.get("samples", [])[:1]],
    }


def combine_groups(results: Sequence[tuple[str, TuneResult]]) -> TuneResult:
    """One ranking from runs of the same search on several question groups (files): a setting is coherent
    only when it is coherent on every group; its contrast, score and margin are the smallest over the groups;
    its added / subtracted / unsteered metrics are pooled (pooled_metrics); "groups" keeps each group's row.
    Raises: SteeringError when the runs did not score the same settings."""
    if len(results) == 1:
        return results[0][1]
    key = lambda row: json.dumps(row["setting"], sort_keys=True)  # noqa: E731
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
    from steering.core.recipe import Recipe

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
        shared_vector=space.shared_vector,
        strength_minus=None if minus is None or minus == s["strength"] else minus,
    )


def report_markdown(result: TuneResult, top: int = 15) -> str:
    """The best settings as a markdown table (plus the unsteered row)."""
    b = result.unsteered
    ppl = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        "| vector | layer | band | + op | − op | strength | refusal + | refusal − | distinct-3 + / − | "
        "perplexity + / − | coherent | score | margin |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows[:top]:
        s, a, m = r["setting"], r["added"], r["subtracted"]
        strength = (
            f"{s['strength']:g}" if s.get("strength_minus") is None else f"{s['strength']:g} / {s['strength_minus']:g}"
        )
        lines.append(
            f"| {s['vector']} | {s['layer']} | {s['band']} | {s['plus']} | {s['minus']} | {strength} "
            f"{'×norm' if s['unit'] == 'relative' else '×v'} | {a['refusal_rate']:.2f} | "
            f"{m['refusal_rate']:.2f} | {a['distinct3']:.2f} / {m['distinct3']:.2f} | "
            f"{ppl(a['perplexity'])} / {ppl(m['perplexity'])} | {'yes' if r['coherent'] else 'no'} | "
            f"{r['score']:+.2f} | {r['margin']:+.3f} |"
        )
    lines.append(
        f"| unsteered | | | | | | {b['refusal_rate']:.2f} | | {b['distinct3']:.2f} | {ppl(b['perplexity'])} | | | |"
    )
    return "\n".join(lines) + "\n"


# ============================================================================ the command
def register(sub: Any) -> None:
    """Add the `tune` sub-command to the CLI parser (steering/cli/__init__.py)."""
    from steering.cli.common import add_behavior_command
    from steering.cli.common import parse_float as _float

    p = add_behavior_command(
        sub,
        "tune",
        "search vector x layer(s) x operator x strength on the tuning "
        "questions and write the winner to vectors/<behavior>/<model>.defaults.json",
    )
    p.add_argument(
        "--questions",
        nargs="+",
        help="tuning question file(s) (default: datasets/<behavior>/tune_open_ended.json); with several, "
        "each is a group and a setting must hold on every group",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=24,
        help="use N questions spread evenly over each file (default 24; more than the file has: all)",
    )
    p.add_argument("--vectors", nargs="+", help="vector files (methods) to try (default: the behavior's file)")
    p.add_argument("--layers", type=int, nargs="+", help="anchor layers (default: the model's layer -2, 0, +2)")
    p.add_argument("--bands", type=int, nargs="+", default=[1], help="band widths (default 1)")
    p.add_argument("--plus", nargs="+", default=["add", "clamp"], help="added-side operators (add clamp ablate)")
    p.add_argument("--minus", nargs="+", default=["add", "ablate"], help="subtracted-side operators")
    p.add_argument(
        "--strengths", type=_float, nargs="+", help="strengths (default: relative 0.1 0.2 0.3; multiplier 1 2 4)"
    )
    p.add_argument(
        "--minus-strengths",
        type=_float,
        nargs="+",
        help="subtracted-side strengths, each paired with every --strengths value (the recipe's "
        "strength_minus; default: the same as --strengths)",
    )
    p.add_argument("--unit", default="relative", help="relative (x the hidden-state norm, default) or multiplier")
    p.add_argument(
        "--own-vectors",
        action="store_true",
        help="in a band, each layer its own vector (default: the anchor layer's at every layer)",
    )
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer length while tuning (default 32)")
    p.add_argument("--batch-rows", type=int, default=64, help="about how many answers per generate call")
    p.add_argument("--min-distinct", type=_float, default=0.85, help="coherent: distinct-3 >= this x unsteered")
    p.add_argument("--max-perplexity", type=_float, default=3.0, help="coherent: perplexity <= this x unsteered")
    p.add_argument("--out", help="defaults file (default: vectors/<behavior>/<model-slug>.defaults.json)")
    p.add_argument("--cache", help="cache file (default: next to --out, <model-slug>.tune-cache.json)")
    p.add_argument("--dry-run", action="store_true", help="report only; do not write the defaults file")
    p.add_argument("--system-prompt")
    p.set_defaults(func=cmd_tune)


def _spread(items: list, limit: int) -> list:
    """`limit` items spread evenly over the list (all of them for limit >= len)."""
    if limit >= len(items):
        return list(items)
    return [items[(i * len(items)) // limit] for i in range(limit)]


def cmd_tune(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """`tune`: search layer x band x operator x strength for a behavior's recipe and write the winner.

    Scores every setting on a tuning split of open-ended questions (never the test set), as the module
    docstring describes, prints the table and writes vectors/<behavior>/<model slug>.defaults.json (or --out)
    unless --dry-run. The operators: CAA addition (Rimsky et al. 2023, arXiv 2312.06681, section 3), projection
    clamp, and directional ablation (Arditi et al. 2024, arXiv 2406.11717, section 2.4).

    Args:
        args: parsed flags of `tune` (--layers, --bands, --plus, --minus, --strengths, --minus-strengths,
            --unit, --questions, --vectors, --limit, --max-new-tokens, --out, --cache, --dry-run, ...).
        config: the loaded config.yaml tree.

    Returns:
        0 once the table is printed (and the defaults file written).

    Raises:
        SteeringError: a bad flag, behavior name, search space, questions or vector file (checked before the
            model loads), or nothing scored.
    """
    from steering.cli import _engine  # looked up at run time: tests replace steering.cli._engine
    from steering.cli.common import display_path as _display_path
    from steering.cli.common import system_prompt as _system_prompt
    from steering.config import data_dir
    from steering.core.datasets import file_sha256, load_open_ended
    from steering.core.limits import Limits, check_behavior_name

    check_behavior_name(args.behavior)
    limits = Limits.from_config(config)
    for value, flag, low in (
        (args.limit, "--limit", 1),
        (args.max_new_tokens, "--max-new-tokens", 1),
        (args.batch_rows, "--batch-rows", 1),
    ):
        if value < low:
            raise SteeringError(f"{flag} must be at least {low}, got {value}")
    if args.max_new_tokens > limits.max_new_tokens:
        raise SteeringError(f"--max-new-tokens {args.max_new_tokens} is over the limit of {limits.max_new_tokens}")
    unit = args.unit
    if unit not in DEFAULT_STRENGTHS:
        raise SteeringError(f"tune: --unit must be one of {', '.join(DEFAULT_STRENGTHS)}, found '{unit}'")
    strengths = args.strengths or DEFAULT_STRENGTHS.get(unit, [])
    space = SearchSpace(
        layers=list(args.layers or []) or [0],
        bands=list(args.bands),
        plus=list(args.plus),
        minus=list(args.minus),
        strengths=list(strengths),
        unit=unit,
        shared_vector=not args.own_vectors,
        minus_strengths=list(args.minus_strengths) if args.minus_strengths else None,
    )
    space.check()  # before the slow model load
    question_paths = (
        [Path(q) for q in args.questions]
        if args.questions
        else [data_dir(config, "datasets_dir") / args.behavior / "tune_open_ended.json"]
    )
    if len({path.resolve() for path in question_paths}) < len(question_paths):
        raise SteeringError("--questions: a file is named twice")
    groups = []  # (name, questions) per file
    for path in question_paths:
        part = _spread(load_open_ended(path, limits), args.limit)
        if not part:
            raise SteeringError(f"{path}: no questions")
        groups.append((_display_path(path), part))
    questions_path = question_paths[0]
    for path in args.vectors or []:
        if not Path(path).exists():
            raise SteeringError(f"--vectors: {path}: file not found")

    import torch  # noqa: F401  (after the checks: a bad flag never waits for torch)

    from steering.core.behaviors import judge_for
    from steering.core.recipe import defaults_path
    from steering.decode.generation import SamplingSettings
    from steering.evaluation.refusal import RefusalDetector
    from steering.io.vector_files import vector_path

    try:  # the behavior card's judge (steering.core.behaviors.judge_for; refusal: config's refusal_phrases override it)
        detector = (
            RefusalDetector.from_config(config) if args.behavior == "refusal" else judge_for(config, args.behavior)
        )
    except ValueError as exc:
        raise SteeringError(f"config evaluation.refusal_phrases: {exc}") from None
    engine = _engine(args, config)
    lm = engine.lm
    if not args.layers:
        anchor = engine.config_defaults.layer
        space.layers = sorted({min(max(anchor + d, 0), lm.num_layers - 1) for d in (-2, 0, 2)})
    space.check(lm.num_layers)
    sources = []
    own = vector_path(engine.vectors_dir, args.behavior, lm.slug)
    for path in [Path(p) for p in args.vectors] if args.vectors else [own]:
        vset = engine.load_vector_file(path) if args.vectors else engine.vectors_for(args.behavior)
        is_own = path.resolve() == own.resolve()
        method = vset.metadata.get("method") or vset.metadata.get("read_mode")
        label = f"{path.name}" + (f" ({method})" if method else "")
        sources.append(VectorSource(None if is_own else _recipe_path(path), label, file_sha256(path), method, vset))
    out = Path(args.out) if args.out else defaults_path(engine.vectors_dir, args.behavior, lm.slug)
    if out.exists() and out.is_dir():
        raise SteeringError(f"--out {out}: is a folder")
    cache_path = (
        Path(args.cache) if args.cache else out.with_name(out.name.replace(".defaults.json", "") + ".tune-cache.json")
    )
    system_prompt = _system_prompt(args, config)
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    n_settings = len(side_jobs(space, len(sources))[0])
    results, hashes = [], []
    for index, (path, (name, part)) in enumerate(zip(question_paths, groups)):
        # each file its own cache (the first: --cache, so a one-file run keeps earlier caches usable)
        group_cache = cache_path if index == 0 else cache_path.with_name(f"{cache_path.stem}.{path.stem}.json")
        context = {
            "model": lm.name,
            "dtype": str(lm.dtype),
            "questions_sha256": _questions_hash(part),
            "max_new_tokens": args.max_new_tokens,
            "system_prompt": system_prompt,
            "refusal_phrases": list(detector.phrases),
        }
        hashes.append(context["questions_sha256"])
        print(
            f"# {lm.describe()}\n# tune: {len(part)} questions of {name}, {n_settings} settings; "
            f"cache {_display_path(group_cache)}",
            file=sys.stderr,
        )
        results.append(
            (
                name,
                run_tune(
                    engine,
                    part,
                    sources,
                    space,
                    settings,
                    detector,
                    group_cache,
                    context,
                    system_prompt,
                    batch_rows=args.batch_rows,
                    min_distinct=args.min_distinct,
                    max_perplexity=args.max_perplexity,
                ),
            )
        )
    result = combine_groups(results)
    print(report_markdown(result), end="")
    if result.winner is None:
        raise SteeringError("tune: nothing was scored")
    recipe = winner_recipe(result.winner, sources, space)
    note = "" if result.coherent else " (no setting kept the text coherent: best score shown)"
    print(
        f"\nwinner: {result.winner['setting']['vector']}, {recipe.describe()}; refusal "
        f"{result.winner['added']['refusal_rate']:.2f} (+) / {result.winner['subtracted']['refusal_rate']:.2f} (−), "
        f"unsteered {result.unsteered['refusal_rate']:.2f}{note}"
    )
    for name, part in (result.winner.get("groups") or {}).items():
        print(
            f"  {name}: score {part['score']:+.2f}, contrast {part['contrast']:.2f}, "
            f"{'coherent' if part['coherent'] else 'NOT coherent'}, margin {part['margin']:+.3f}"
        )
    print(f"({result.generated_rows} answers generated, {result.seconds:.0f} s)", file=sys.stderr)
    if args.dry_run:
        return 0
    from steering.core.recipe import save_defaults

    save_defaults(
        out,
        recipe,
        {
            "model": lm.name,
            "behavior": args.behavior,
            "chosen_by": "python -m steering tune",
            "coherent": result.coherent,
            "tuning": {
                "questions": _display_path(questions_path) if len(groups) == 1 else [g for g, _ in groups],
                "questions_used": sum(len(part) for _, part in groups),
                "questions_sha256": hashes[0] if len(groups) == 1 else hashes,
                "max_new_tokens": args.max_new_tokens,
                "decoding": "greedy",
                "min_distinct": args.min_distinct,
                "max_perplexity": args.max_perplexity,
                "search": {
                    "vectors": [s.label for s in sources],
                    "layers": space.layers,
                    "bands": space.bands,
                    "plus": space.plus,
                    "minus": space.minus,
                    "strengths": space.strengths,
                    **({"minus_strengths": space.minus_strengths} if space.minus_strengths else {}),
                    "unit": space.unit,
                    "shared_vector": space.shared_vector,
                },
            },
            "scores": {k: result.winner[k] for k in ("contrast", "coherent", "score", "margin", "ratios")}
            | {
                "added": _short(result.winner["added"]),
                "subtracted": _short(result.winner["subtracted"]),
                "unsteered": _short(result.unsteered),
            }
            | (
                {
                    "groups": {
                        name: {
                            "scores": {k: part[k] for k in ("contrast", "coherent", "score", "margin")},
                            "added": _short(part["added"]),
                            "subtracted": _short(part["subtracted"]),
                            "unsteered": _short(result.unsteered["groups"][name]),
                        }
                        for name, part in result.winner["groups"].items()
                    }
                }
                if "groups" in result.winner
                else {}
            ),
            "top": [
                {
                    **r["setting"],
                    "score": r["score"],
                    "contrast": r["contrast"],
                    "margin": r["margin"],
                    "coherent": r["coherent"],
                }
                for r in result.rows[:10]
            ],
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    print(f"wrote {_display_path(out)}")
    return 0


def _recipe_path(path: Path) -> str:
    """How a recipe names a vector file: relative to the home folder (config.home()) when inside it."""
    from steering.config import home

    try:
        return str(path.resolve().relative_to(home().resolve()))
    except ValueError:
        return str(path.resolve())


def _short(metrics: dict) -> dict:
    return {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if k not in ("samples", "groups")
    }


def _questions_hash(questions: Sequence[str]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(list(questions), ensure_ascii=False).encode()).hexdigest()
