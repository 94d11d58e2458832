"""`run_tune`: generate the side jobs not in the cache (whole jobs per generate() call), score every setting of
the search space and rank them (steering.evaluation.tune.scoring)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from steering.core.hooks import SteeringPlan
from steering.decode import generation  # generation.generate, looked up per call (tests count the calls)
from steering.errors import SteeringError
from steering.evaluation.coherence import answer_nll
from steering.evaluation.coherence_rule import COHERENCE
from steering.evaluation.refusal import distinct_ngram_share
from steering.evaluation.tune.cache import load_cache, save_cache
from steering.evaluation.tune.scoring import (
    TuneResult,
    choose_winner,
    rank_key,
    rejudge,
    score_setting,
    side_metrics,
)
from steering.evaluation.tune.space import SearchSpace, SideJob, VectorSource, side_jobs


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
    min_distinct: float = COHERENCE.min_distinct_ratio,
    max_perplexity: float = COHERENCE.max_perplexity_ratio,
    progress: bool = True,
    max_loops: float | None = None,
) -> TuneResult:
    """Score every setting of `space` on `questions` (cached side jobs reused) and rank them.

    Args:
        engine: a steering.engine.Engine (its model, tokenizer and hidden-state norms are used).
        questions: the tuning questions.
        sources: the vector files to try.
        space: layers x bands x operators x strengths (checked against the model).
        settings: SamplingSettings of the answers (greedy, short).
        detector: the judge (a RefusalDetector or steering.core.judges.Judge): text -> bool.
        cache_path / context: the resumable cache and what it must match.
        batch_rows: about how many rows one generate() call takes (whole jobs: at least one job).
        min_distinct / max_perplexity / max_loops: the coherence limits (score_setting).
        progress: show a tqdm progress bar of the answers generated.
    Returns: TuneResult, rows sorted best first.
    """
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
    relative = space.unit == "relative" or any(job.unit == "relative" for job in jobs)  # an incumbent's own unit
    norm = engine.hidden_norm if relative else None

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
                result = generation.generate(
                    lm.model, lm.tokenizer, convs, settings=settings, system_prompt=system_prompt
                )
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
                result = generation.generate(
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
    base = rejudge(cache["unsteered"], detector)  # the cache keeps every answer: judged by this run's judge
    rows = []
    for setting in all_settings:
        up, down = needs[setting]
        plus, minus = rejudge(cache[keys[up]], detector), rejudge(cache[keys[down]], detector)
        scored = score_setting(plus, minus, base, min_distinct, max_perplexity, max_loops)
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
                    **({} if setting.minus_window is None else {"minus_window": setting.minus_window}),
                    "unit": setting.unit or space.unit,
                    **({} if setting.shared is None else {"shared_vector": setting.shared}),
                    **({"incumbent": True} if setting.incumbent else {}),
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
