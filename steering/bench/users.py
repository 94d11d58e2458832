"""`bench --users 1 2 4`: several users at once through the scheduler (steering/decode/scheduler.py), issue 12 item 4.

Each user sends one request of three panes (+alpha, 0, -alpha) with its own prompt, layer, multiplier, seed
and sampling (even users greedy, odd users sampled at temperature 0.8, top-p 0.9), all at the same moment;
EOS is ignored, so every pane generates exactly `tokens` tokens. Per user count it reports, as medians
over interleaved rounds (`--repeats`, default 3) with the spread, the aggregate
tok/s (all panes' tokens / wall time from the first submit to the last answer), the per-user tok/s (a
user's 3 x tokens / its own time to the last token), p50 / p95 time to the first token and to the last
token, the scheduler's largest batch, and each user's tokens checked against the same request run alone
(rows identical, and the share of token positions that agree).

Runs (users_setup.run_users_bench) on the configured model (CPU or `--device cuda`) or, with --synthetic-7b,
on the random Llama-2-7B-shaped fp16 model on the GPU (users 1 / 4 / 16). The scheduler batches on the eager path
(DynamicCache) by default; with `--fast-path` in the fast path's static caches (steering/decode/static_batch.py:
CUDA graphs captured per batch bucket on a GPU; the static cache without graphs on a CPU), the reference then
being the same path alone.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from steering.bench.common import log
from steering.bench.timing import median
from steering.errors import SteeringError

# torch and the model code are imported inside the functions (lazy), so `steering bench --help` stays fast.

PROMPTS = [
    "Tell me about the history of the printing press in a few paragraphs.",
    "How do I bake bread at home?",
    "Explain how a bicycle stays upright.",
    "What should I see on a first trip to Rome?",
    "Write a short story about a lighthouse keeper.",
    "Why is the sky blue?",
    "Give me three tips for learning a new language.",
    "How does a refrigerator work?",
    "What is the difference between weather and climate?",
    "Describe a good morning routine.",
    "How do vaccines train the immune system?",
    "Write a poem about autumn leaves.",
    "What makes a good team leader?",
    "How do airplanes fly?",
    "Explain compound interest with an example.",
    "What are black holes?",
]
TARGETS = {"cpu_4_users_vs_1": 2.0, "gpu_16_users_vs_1": 8.0, "gpu_p95_first_token_s_16": 1.0}


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np  # numpy too stays out of `steering bench --help` (the comment above)

    return float(np.percentile(np.asarray(values, dtype=float), q))


def user_requests(
    lm: Any, count: int, tokens: int, vector_for_layer: Any, base_layer: int, multiplier: float
) -> list[Any]:
    """`count` users' requests (scheduler.Request), each with its own prompt, layer, multiplier and seed.

    Args:
        lm: the LoadedModel (num_layers). vector_for_layer: layer -> (hidden_size,) vector.
        base_layer: user 0's layer; others use base_layer - 1, base_layer, base_layer + 1 in turn.
        multiplier: user 0's alpha; user k uses alpha x (1, 0.5, 1.5, ...)[k % 3].
    """
    from steering.core.hooks import SteeringPlan
    from steering.decode.generation import SamplingSettings
    from steering.decode.scheduler import Request

    requests = []
    for k in range(count):
        layer = min(max(base_layer + (0, -1, 1)[k % 3], 0), lm.num_layers - 1)
        alpha = multiplier * (1.0, 0.5, 1.5)[k % 3]
        settings = (
            SamplingSettings(max_new_tokens=tokens, seed=k)
            if k % 2 == 0
            else SamplingSettings(max_new_tokens=tokens, temperature=0.8, top_p=0.9, seed=k)
        )
        conversation = [{"role": "user", "content": PROMPTS[k % len(PROMPTS)]}]
        plan = SteeringPlan.addition(layer, vector_for_layer(layer), [alpha, 0.0, -alpha])
        requests.append(Request([conversation] * 3, plan, settings, ignore_eos=True))
    return requests


def _sample(lm: Any, requests: Sequence[Any], reference: Sequence[Any], fast_path: Any = None) -> dict[str, Any]:
    """One timed sample: all `requests` submitted at once through a fresh Scheduler (closed afterwards; on
    `fast_path`'s static caches when given); times, the largest batch and each row checked against `reference`
    (its token ids alone)."""
    from steering.decode.scheduler import Scheduler

    count = len(requests)
    scheduler = Scheduler(lm, max_requests=count, max_waiting=count, fast_path=fast_path)
    try:
        start = time.perf_counter()
        tickets = [scheduler.submit(r) for r in requests]
        results = [t.wait() for t in tickets]
    finally:
        scheduler.close()
    wall = max(t.finished for t in tickets) - start  # type: ignore[operator]
    first = [t.first_token - t.submitted for t in tickets]  # type: ignore[operator]
    last = [t.finished - t.submitted for t in tickets]  # type: ignore[operator]
    rows = identical = agree = positions = 0
    for result, expected in zip(results, reference):
        for got, want in zip(result.token_ids, expected):
            rows += 1
            identical += got == want
            positions += max(len(got), len(want))
            agree += sum(a == b for a, b in zip(got, want))
    produced = sum(sum(r.new_tokens) for r in results)
    return {
        "users": count,
        "wall_s": wall,
        "tokens_generated": produced,
        "aggregate_tok_s": produced / wall,
        "per_user_tok_s": sum(sum(r.new_tokens) / s for r, s in zip(results, last)) / count,
        "first_token_p50_s": _percentile(first, 50),
        "first_token_p95_s": _percentile(first, 95),
        "last_token_p50_s": _percentile(last, 50),
        "last_token_p95_s": _percentile(last, 95),
        "most_requests_in_batch": scheduler.stats.most_requests,
        "steps": scheduler.stats.steps,
        "rows_identical": identical,
        "rows": rows,
        "agree": agree,
        "positions": positions,
    }


MEDIAN_KEYS = (
    "wall_s",
    "aggregate_tok_s",
    "per_user_tok_s",
    "first_token_p50_s",
    "first_token_p95_s",
    "last_token_p50_s",
    "last_token_p95_s",
    "steps",
)


def run_users(
    lm: Any,
    user_counts: Sequence[int],
    tokens: int,
    vector_for_layer: Any,
    base_layer: int,
    multiplier: float,
    repeats: int = 3,
    fast_path: Any = None,
) -> dict[str, Any]:
    """The users table: for each count, all users submit at once; medians over interleaved repeats; every
    output checked against the same request alone.

    The counts are interleaved: round r runs every count once, in the order of `user_counts` rotated by r
    (1 2 4, 2 4 1, 4 1 2, ...), so a load change on a shared machine hits every count alike and no count always
    runs first. Each count's numbers are the medians over the rounds; the spread (min / max over the rounds) of
    the aggregate tok/s and of the speed-up (each round's own ratio to its 1-user sample) is kept too.

    Args:
        lm: a steering.models.LoadedModel (any device; generation runs on the eager path).
        user_counts: e.g. (1, 2, 4) on a CPU, (1, 4, 16) on a GPU.
        tokens: new tokens per pane (EOS ignored).
        vector_for_layer: layer -> steering vector (hidden_size,).
        base_layer, multiplier: user 0's layer and alpha (see user_requests).
        repeats: timed rounds (each runs every count once), >= 1.
        fast_path: a fast_path.FastPath: the scheduler batches in its static caches (CUDA graphs per bucket on
            a GPU), the reference runs that path alone; None: the eager path.

    Returns:
        {"tokens", "panes_per_user", "repeats", "runs": [{users, the MEDIAN_KEYS (medians), aggregate_tok_s_min,
        aggregate_tok_s_max, speedup_min, speedup_max (None without a 1-user count), tokens_generated (per
        sample), most_requests_in_batch (largest over the rounds), rows_identical, rows, positions_agree (over
        all rounds), samples: each round's numbers}], "speedup": {count: median aggregate / median aggregate of
        1 user}}.
    """
    from steering.decode.scheduler import Scheduler

    if repeats < 1:
        raise SteeringError(f"--repeats: expected at least 1 round, got {repeats}")
    counts = list(dict.fromkeys(user_counts))
    most = max(counts)
    requests = user_requests(lm, most, tokens, vector_for_layer, base_layer, multiplier)
    log(f"users: warm-up, then each of {most} users alone (the reference)")
    warm = Scheduler(lm, max_requests=1, fast_path=fast_path)
    try:
        warm.run(user_requests(lm, 1, 2, vector_for_layer, base_layer, multiplier)[0])
        reference = [warm.run(r).token_ids for r in requests]
    finally:
        warm.close()
    samples: dict[int, list[dict[str, Any]]] = {c: [] for c in counts}
    for round_ in range(repeats):
        order = counts[round_ % len(counts) :] + counts[: round_ % len(counts)]
        for count in order:
            log(f"users: round {round_ + 1}/{repeats}, {count} at once, {tokens} tokens per pane")
            samples[count].append(_sample(lm, requests[:count], reference[:count], fast_path))
    runs = []
    for count in counts:
        got = samples[count]
        run: dict[str, Any] = {"users": count}
        run.update({key: median([g[key] for g in got]) for key in MEDIAN_KEYS})
        run["aggregate_tok_s_min"] = min(g["aggregate_tok_s"] for g in got)
        run["aggregate_tok_s_max"] = max(g["aggregate_tok_s"] for g in got)
        if 1 in samples:
            ratios = [g["aggregate_tok_s"] / o["aggregate_tok_s"] for g, o in zip(got, samples[1])]
            run["speedup_min"], run["speedup_max"] = min(ratios), max(ratios)
        else:
            run["speedup_min"] = run["speedup_max"] = None
        run["tokens_generated"] = got[0]["tokens_generated"]
        run["most_requests_in_batch"] = max(g["most_requests_in_batch"] for g in got)
        run["rows_identical"] = sum(g["rows_identical"] for g in got)
        run["rows"] = sum(g["rows"] for g in got)
        run["positions_agree"] = sum(g["agree"] for g in got) / max(sum(g["positions"] for g in got), 1)
        run["samples"] = got
        runs.append(run)
    one = next((r["aggregate_tok_s"] for r in runs if r["users"] == 1), None)
    speedup = {str(r["users"]): r["aggregate_tok_s"] / one for r in runs} if one else {}
    path = "eager" if fast_path is None else "static cache" + (", CUDA graphs" if fast_path.graphs is not None else "")
    if fast_path is not None and fast_path.batch_steps is not None:
        steps = fast_path.batch_steps
        path += f", compiled ({steps.compiled_steps} compiled steps, {steps.plain_steps} plain)"
    return {"tokens": tokens, "panes_per_user": 3, "repeats": repeats, "runs": runs, "speedup": speedup, "path": path}
