"""Timing helpers: medians of interleaved repeats (a busy machine slows every variant alike), with a device
synchronisation around each timed call on CUDA."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

# torch and the model code are imported inside the functions (lazy), so `steering bench --help` stays fast.


def median(values: Sequence[float]) -> float:
    """The median of `values` as a float."""
    return float(statistics.median(values))


def sync_fn() -> Callable[[], None]:
    """torch.cuda.synchronize when CUDA is in use, else a no-op."""
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.synchronize
    return lambda: None


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes (device synchronised before and after)."""
    sync = sync_fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def timed_steps(run: Callable[[Callable[[list[str]], None]], Any]) -> dict[str, float]:
    """Time a generation that streams: total, time to the first text (setup + prefill), and decode ms/step.

    Args:
        run: calls the generation with the given on_text callback.

    Returns:
        {"total_s", "first_text_s" (seconds), "decode_ms_per_step" (milliseconds)}.
    """
    sync = sync_fn()
    stamps: list[float] = []
    sync()
    start = time.perf_counter()
    run(lambda texts: stamps.append(time.perf_counter()))
    sync()
    total = time.perf_counter() - start
    steps = max(len(stamps) - 1, 1)
    return {
        "total_s": total,
        "first_text_s": stamps[0] - start if stamps else total,
        "decode_ms_per_step": 1000 * (stamps[-1] - stamps[0]) / steps if stamps else 0.0,
    }


def median_steps(samples: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over timed_steps samples."""
    return {key: median([x[key] for x in samples]) for key in samples[0]}


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run the variants in turn (A B C A B C ...) and return each one's times (warm-up runs dropped)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(warmup + repeats):
        for name, fn in variants.items():
            seconds = timed(fn)
            if rep >= warmup:
                times[name].append(seconds)
    return times
