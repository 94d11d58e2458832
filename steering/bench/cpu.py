"""The CPU report's in-process sections: three panes batched vs one row, time to the first streamed text, the
hook's overhead; and run_cpu_bench, which runs the chosen sections on the configured model."""

from __future__ import annotations

import argparse
import gc
import os
import time
from typing import Any, Callable

from steering.bench.common import PROMPT, SECTIONS, TARGETS, log
from steering.bench.extraction import bench_extraction
from steering.bench.machine import machine_info
from steering.bench.timing import interleaved, median
from steering.bench.workers import bench_load, bench_memory

# torch and the model code are imported inside the functions (lazy), so `steering bench --help` stays fast.


def vector_for(engine: Any, behavior: str) -> tuple[Any, int, str]:
    """The behavior's real vector at the model's default layer, or a random one of typical size.

    Returns:
        (vector of shape (hidden_size,), layer, "<behavior> vector" or "random vector").
    """
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    import torch

    layer = engine.defaults.layer
    try:
        return engine.vectors_for(behavior).vector(layer), layer, f"{behavior} vector"
    except Exception:  # no vectors extracted yet: a random direction at 10% of the hidden norm
        generator = torch.Generator().manual_seed(0)
        vector = torch.randn(engine.lm.hidden_size, generator=generator)
        vector = vector / vector.norm() * 0.1 * engine.hidden_norm(layer)
        return vector, layer, "random vector"


def bench_generation(
    model: Any,
    tokenizer: Any,
    vector: Any,
    layer: int,
    multiplier: float,
    tokens: int,
    repeats: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Three panes in one batch vs three single rows vs one unsteered row, equal token counts (EOS ignored).

    Args:
        vector: the steering vector, shape (hidden_size,); layer: its decoder layer; multiplier: alpha of the
            steered panes (+alpha, 0, -alpha).
        tokens: new tokens per generation; repeats: timed rounds (one warm-up round before).
        extra: keyword arguments for generate() (the fast path's, when the engine has one).

    Returns:
        Median seconds per variant, ms per token, ratios (three_panes_vs_one ...), raw times.
    """
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    from steering.decode.generation import SamplingSettings, SteeringSpec, generate

    extra = extra or {}
    settings = SamplingSettings(max_new_tokens=tokens)
    steer = SteeringSpec(layer, vector)
    alphas = [multiplier, 0.0, -multiplier]
    streamed: list[int] = []

    def one() -> None:
        generate(model, tokenizer, [PROMPT], settings=settings, ignore_eos=True, **extra)

    def three_batched() -> None:  # what Engine.compare runs, streaming callback included
        generate(
            model,
            tokenizer,
            [PROMPT] * 3,
            multipliers=alphas,
            steer=steer,
            settings=settings,
            ignore_eos=True,
            on_text=lambda texts: streamed.append(len(texts)),
            **extra,
        )

    def three_sequential() -> None:
        for alpha in alphas:
            generate(
                model,
                tokenizer,
                [PROMPT],
                multipliers=[alpha],
                steer=steer,
                settings=settings,
                ignore_eos=True,
                **extra,
            )

    variants = {"one": one, "three_batched": three_batched, "three_sequential": three_sequential}
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    from steering.decode.cpu_linear import FewRowLinear, standard_linear

    if any(type(module) is FewRowLinear for module in model.modules()):  # the same runs with plain nn.Linear

        def plain(run: Callable[[], None]) -> Callable[[], None]:
            def wrapped() -> None:
                with standard_linear(model):
                    run()

            return wrapped

        variants.update(one_standard_linear=plain(one), three_batched_standard_linear=plain(three_batched))
    times = interleaved(variants, repeats)
    med = {name: median(values) for name, values in times.items()}
    standard = {}
    if "one_standard_linear" in med:
        standard = {
            "one_standard_linear_s": med["one_standard_linear"],
            "three_batched_standard_linear_s": med["three_batched_standard_linear"],
            "three_panes_vs_one_standard_linear": med["three_batched_standard_linear"] / med["one_standard_linear"],
        }
    return {
        **standard,
        "tokens": tokens,
        "repeats": repeats,
        "one_s": med["one"],
        "three_batched_s": med["three_batched"],
        "three_sequential_s": med["three_sequential"],
        "ms_per_token_one": 1000 * med["one"] / tokens,
        "ms_per_token_three_batched": 1000 * med["three_batched"] / tokens,
        "three_panes_vs_one": med["three_batched"] / med["one"],
        "sequential_vs_one": med["three_sequential"] / med["one"],
        "tok_s_per_pane_batched": tokens / med["three_batched"],
        "tok_s_one": tokens / med["one"],
        "raw_s": times,
    }


def bench_first_text(engine: Any, vector: Any, layer: int, multiplier: float, repeats: int) -> dict[str, Any]:
    """Seconds from calling Engine.compare to its first on_text callback (the first streamed token)."""
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    from steering.decode.generation import SamplingSettings

    firsts: list[float] = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        seen: list[float] = []
        engine.compare(
            PROMPT,
            vector,
            layer,
            multiplier,
            SamplingSettings(max_new_tokens=4),
            on_text=lambda texts: seen.append(time.perf_counter() - start) if not seen else None,  # noqa: B023 (the closure runs within this iteration)
        )
        firsts.append(seen[0])
    return {"first_text_s": median(firsts[1:]), "raw_s": firsts[1:]}


def bench_hook(model: Any, tokenizer: Any, vector: Any, layer: int, tokens: int, repeats: int) -> dict[str, Any]:
    """One row, the hook at multiplier 0 vs no hook at all (the hook's arithmetic is the only difference)."""
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    from steering.decode.generation import SamplingSettings, SteeringSpec, generate

    settings = SamplingSettings(max_new_tokens=tokens)
    variants = {
        "no_hook": lambda: generate(model, tokenizer, [PROMPT], settings=settings, ignore_eos=True),
        "hook_zero": lambda: generate(
            model,
            tokenizer,
            [PROMPT],
            multipliers=[0.0],
            settings=settings,
            steer=SteeringSpec(layer, vector),
            ignore_eos=True,
        ),
    }
    times = interleaved(variants, repeats)
    pairs = [h / n for h, n in zip(times["hook_zero"], times["no_hook"])]
    return {
        "tokens": tokens,
        "repeats": repeats,
        "no_hook_s": median(times["no_hook"]),
        "hook_zero_s": median(times["hook_zero"]),
        "hook_overhead_pct": 100 * (median(times["hook_zero"]) / median(times["no_hook"]) - 1),
        "paired_overhead_pct": 100 * (median(pairs) - 1),
        "raw_s": times,
    }


def run_cpu_bench(
    args: argparse.Namespace, config: dict[str, Any], engine_factory: Callable[..., Any]
) -> dict[str, Any]:
    """The sections of args.only (default: all) on the configured model; load and memory in subprocesses.

    Args:
        args: the bench command's flags (steering.bench.cli.register).
        config: the loaded config.yaml.
        engine_factory: (args, config) -> Engine, the CLI's model loader (called only when an in-process
            section runs).

    Returns:
        The results: machine, targets, model, steering and one entry per section run.
    """
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    import torch

    if args.threads:
        from steering.device import set_threads

        set_threads(args.threads)
    only = set(args.only or SECTIONS)
    results: dict[str, Any] = {"machine": machine_info(), "targets": TARGETS}
    engine = None
    if only & {"generation", "hook", "extraction"}:
        engine = engine_factory(args, config)
        lm = engine.lm
        results["model"] = lm.describe()
        vector, layer, vector_kind = vector_for(engine, args.behavior)
        multiplier = engine.defaults.multiplier
        results["steering"] = {"layer": layer, "multiplier": multiplier, "vector": vector_kind}
        if "generation" in only:
            log(f"generation: {args.tokens} tokens x {args.repeats} repeats")
            results["generation"] = bench_generation(
                lm.model,
                lm.tokenizer,
                vector,
                layer,
                multiplier,
                args.tokens,
                args.repeats,
                extra=engine.fast_path.generate_kwargs() if engine.fast_path else None,
            )
            results["generation"].update(bench_first_text(engine, vector, layer, multiplier, args.repeats))
        if "hook" in only:
            log("hook overhead at multiplier 0")
            results["hook"] = bench_hook(lm.model, lm.tokenizer, vector, layer, args.tokens, args.hook_repeats)
        if "extraction" in only:
            log(f"extraction: {args.pairs} pairs")
            dataset = config.datasets_dir / args.behavior / "generate.json"
            results["extraction"] = bench_extraction(
                lm.model,
                lm.tokenizer,
                args.pairs,
                args.extract_repeats,
                config.extraction.batch_size,
                dataset,
            )
    threads = torch.get_num_threads()
    if engine is not None and engine.lm.name != "smollm2-135m-instruct":
        only -= {"load", "memory"}  # the subprocess measurements use the embedded model
    del engine
    gc.collect()
    if "load" in only:
        log("model load: cold vs cached (subprocesses)")
        results["load"] = bench_load(args.load_repeats, threads)
    if "memory" in only:
        log("peak memory: full precision vs 8-bit vs 4-bit (subprocesses)")
        results["memory"] = bench_memory(threads, 8)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results
