"""The GPU report (`bench --synthetic-7b`): a randomly initialised Llama-2-7B-shaped fp16 model, eager vs static
cache + CUDA graphs vs static cache + torch.compile, with and without lookahead, and the 8-bit / 4-bit loaders
in subprocesses (steering.bench.worker)."""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from steering.bench.common import PROMPT, TARGETS, log
from steering.bench.machine import gpu_bandwidth, machine_info
from steering.bench.timing import median, median_steps, timed, timed_steps
from steering.bench.workers import run_worker
from steering.synthetic import LLAMA2_7B, TINY, make_byte_tokenizer, random_llama


def run_gpu_bench(
    tokens: int,
    repeats: int,
    layers: int = 32,
    skip_quantized: bool = False,
    work_dir: str | None = None,
    tiny_cpu: bool = False,
) -> dict[str, Any]:
    """Eager vs static cache + torch.compile on a random Llama-2-7B-shaped fp16 model; 8-bit and nf4.

    Args:
        tokens: new tokens per generation (EOS ignored); repeats: timed runs of each variant.
        layers: decoder layers of the synthetic model (32 = Llama-2-7B).
        skip_quantized: leave out the 8-bit and 4-bit runs (they save the model to `work_dir` first).
        work_dir: folder for the saved random model (default: a new temporary folder).
        tiny_cpu: a tiny model of the same layout in float32 on the CPU, compile backend "eager": checks the
            code path (the tests use it), not the speed.

    Returns:
        machine, targets, model, ceiling (memory-bandwidth bound), eager, cuda_graphs, compiled and, unless
        skipped, int8 / nf4 results (steering.bench.tables.format_gpu_table prints them).

    Raises:
        SystemExit: without tiny_cpu, when there is no CUDA GPU.
    """
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    import torch

    from steering.decode.fast_path import FastPath
    from steering.decode.generation import SamplingSettings, SteeringSpec, generate
    from steering.models import check_transformers

    check_transformers()
    smoke = tiny_cpu
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("--synthetic-7b needs a CUDA GPU")
    device = "cpu" if smoke else "cuda"
    results: dict[str, Any] = {"machine": machine_info(), "targets": TARGETS}
    shape = replace(TINY if smoke else LLAMA2_7B, layers=layers)
    tokenizer = make_byte_tokenizer()
    log(f"building a random Llama-2-7B-shaped model ({layers} layers, fp16) on the GPU")
    model = random_llama(shape, device, torch.float32 if smoke else torch.float16)  # no EOS: fixed lengths
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = 1e11 if smoke else gpu_bandwidth()
    datasheet = {"H100": 3.35e12, "H200": 4.8e12}
    gpu = "cpu (smoke)" if smoke else torch.cuda.get_device_name(0)
    sheet = next((v for k, v in datasheet.items() if k in gpu), None)
    results["model"] = {
        "layers": layers,
        "params": sum(p.numel() for p in model.parameters()),
        "weights_gib": weight_bytes / 2**30,
    }
    results["ceiling"] = {
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "datasheet_bandwidth_gb_s": (sheet or 0) / 1e9,
        "tok_s_at_copy_bandwidth": bandwidth / weight_bytes,
        "tok_s_at_datasheet_bandwidth": (sheet / weight_bytes) if sheet else None,
    }
    vector = torch.randn(shape.hidden) * 0.5
    steer = SteeringSpec(min(13, layers - 1), vector)
    settings = SamplingSettings(max_new_tokens=tokens)
    prompt3 = [PROMPT] * 3

    def eager3(on_text: Callable[[list[str]], None] = lambda texts: None, lookahead: bool | None = None) -> Any:
        return generate(
            model,
            tokenizer,
            prompt3,
            multipliers=[2.0, 0.0, -2.0],
            steer=steer,
            settings=settings,
            ignore_eos=True,
            on_text=on_text,
            lookahead=lookahead,
        )

    log("eager, batch of three")
    eager3()
    eager_steps = [timed_steps(eager3) for _ in range(repeats)]
    eager_times = [x["total_s"] for x in eager_steps]
    eager_tokens = eager3().token_ids
    results["eager"] = {
        "tokens": tokens,
        "tok_s_per_pane": tokens / median(eager_times),
        "raw_s": eager_times,
        **median_steps(eager_steps),
    }

    log("static cache + CUDA graphs, no compiler (the default on CUDA)")
    graphed = FastPath(model, compile=False, cuda_graphs=not smoke)

    def graphed3(on_text: Callable[[list[str]], None] = lambda texts: None, batch: int = 3) -> Any:
        return graphed.generate(  # noqa: F821 (bound above; deleted only after its last call)
            tokenizer,
            [PROMPT] * batch,
            multipliers=[2.0, 0.0, -2.0][:batch],
            steer=steer,
            settings=settings,
            ignore_eos=True,
            on_text=on_text,
        )

    start = time.perf_counter()
    graphed3()  # first use: one eager step, one capture, then replays
    first_use = time.perf_counter() - start
    graph_steps = [timed_steps(graphed3) for _ in range(repeats)]
    graph_one = [timed(lambda: graphed3(batch=1)) for _ in range(repeats)]
    graph_tokens = graphed3().token_ids
    results["cuda_graphs"] = {
        "tokens": tokens,
        "tok_s_per_pane": tokens / median([x["total_s"] for x in graph_steps]),
        "tok_s_single_row": tokens / median(graph_one),
        "first_generation_s": first_use,
        "captures_s": list(graphed.graphs.capture_seconds) if graphed.graphs else [],
        "greedy_tokens_equal_to_eager": [
            sum(a == b for a, b in zip(x, y)) / len(x) for x, y in zip(eager_tokens, graph_tokens)
        ],
        **median_steps(graph_steps),
    }
    graphed.steering.remove()
    del graphed
    log(f"CUDA graphs {results['cuda_graphs']['tok_s_per_pane']:.1f} tok/s/pane")

    log("fast path: hooks, static cache, torch.compile warm-up")
    fast = FastPath(model, compile=True, backend="eager" if smoke else "inductor")
    start = time.perf_counter()
    fast.warm_up(tokenizer, batches=(3, 1))
    warm_s = time.perf_counter() - start
    graphs = fast.graph_count()

    def compiled(
        alphas: Sequence[float],
        batch: int = 3,
        on_text: Callable[[list[str]], None] = lambda texts: None,
        lookahead: bool | None = None,
    ) -> Any:
        return fast.generate(
            tokenizer,
            [PROMPT] * batch,
            multipliers=list(alphas)[:batch],
            steer=steer,
            settings=settings,
            ignore_eos=True,
            on_text=on_text,
            lookahead=lookahead,
        )

    compiled([2.0, 0.0, -2.0])
    comp_steps = [timed_steps(lambda on_text: compiled([2.0, 0.0, -2.0], on_text=on_text)) for _ in range(repeats)]
    comp_times = [x["total_s"] for x in comp_steps]
    comp_tokens = compiled([2.0, 0.0, -2.0]).token_ids
    one_times = [timed(lambda: compiled([0.0], batch=1)) for _ in range(repeats)]
    for alpha in (0.5, 4.0, -3.0):  # the slider moves: no recompile
        compiled([alpha, 0.0, -alpha])
    # the same loops with a host sync before queuing each step (tokens.TokenReader without lookahead)
    sync_comp = [timed(lambda: compiled([2.0, 0.0, -2.0], lookahead=False)) for _ in range(repeats)]
    sync_eager = [timed(lambda: eager3(lookahead=False)) for _ in range(repeats)]
    same = [sum(a == b for a, b in zip(x, y)) / len(x) for x, y in zip(eager_tokens, comp_tokens)]
    results["compiled"] = {
        "tokens": tokens,
        "warm_up_s": warm_s,
        "tok_s_per_pane": tokens / median(comp_times),
        "tok_s_single_row": tokens / median(one_times),
        "three_panes_vs_one": median(comp_times) / median(one_times),
        "graphs_after_warm_up": graphs,
        "graphs_after_alpha_changes": fast.graph_count(),
        "greedy_tokens_equal_to_eager": same,
        "raw_s": comp_times,
        "tok_s_per_pane_without_lookahead": tokens / median(sync_comp),
        **median_steps(comp_steps),
    }
    results["eager"]["tok_s_per_pane_without_lookahead"] = tokens / median(sync_eager)
    log(
        f"eager {results['eager']['tok_s_per_pane']:.1f} tok/s/pane, "
        f"compiled {results['compiled']['tok_s_per_pane']:.1f}"
    )
    fast.steering.remove()
    if not skip_quantized:
        folder = Path(work_dir or tempfile.mkdtemp(prefix="llama7b-random-"))
        log(f"saving the random model to {folder} for the 8-bit / 4-bit loaders")
        del fast
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        del model
        gc.collect()
        torch.cuda.empty_cache()
        quantized = (("nf4", {"load_in_4bit": True}, tokens), ("int8", {"load_in_8bit": True}, 32))
        for name, flags, n in quantized[:1] if smoke else quantized:
            log(f"{name} in a subprocess")
            results[name] = run_worker(
                "quant", {"path": str(folder), "flags": flags, "tokens": n, "repeats": 3, "device": device}, quiet=False
            )
    return results
