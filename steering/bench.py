"""python -m steering bench: the performance numbers of issue 5, measured side by side in one process.

Sections (all on by default; --only picks some):
  generation  three panes as one batch vs the same three one after another vs one unsteered row
              (same prompt, same token count: EOS is ignored), and time to the first streamed text
  hook        the steering hook at multiplier 0 vs no hook
  extraction  batched extraction (steering.extraction) vs the paper's one-pair loop (steering.reference),
              pairs per second on the same pairs, for both read modes
  load        model load: cold (GGUF dequantized into an empty cache dir) vs cached, in subprocesses
  memory      peak resident memory (ru_maxrss) of full precision vs 8-bit (and 4-bit), in subprocesses

Timings are medians of interleaved repeats, so a busy machine slows every variant alike.
`--synthetic-7b` instead measures the GPU fast path on a randomly initialised Llama-2-7B-shaped model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from steering.config import PROJECT_ROOT

SECTIONS = ("generation", "hook", "extraction", "load", "memory")
PROMPT = [{"role": "user", "content": "Tell me about the history of the printing press in a few paragraphs."}]
TARGETS = {"three_panes_vs_one": 1.5, "hook_overhead_pct": 3.0, "extraction_speedup": 3.0,
           "cached_load_s": 5.0, "first_text_s": 1.0, "compiled_tok_s_per_pane": 125.0,
           "eager_tok_s_per_pane": 40.0, "int8_peak_gib": 7.5}


# ---------------------------------------------------------------------------- helpers
def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _timed(fn: Callable[[], Any]) -> float:
    sync = _sync_fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def _timed_steps(run: Callable[[Callable[[list[str]], None]], Any]) -> dict[str, float]:
    """Time a generation that streams: total, time to the first text (setup + prefill), and decode ms/step."""
    sync = _sync_fn()
    stamps: list[float] = []
    sync()
    start = time.perf_counter()
    run(lambda texts: stamps.append(time.perf_counter()))
    sync()
    total = time.perf_counter() - start
    steps = max(len(stamps) - 1, 1)
    return {"total_s": total, "first_text_s": stamps[0] - start if stamps else total,
            "decode_ms_per_step": 1000 * (stamps[-1] - stamps[0]) / steps if stamps else 0.0}


def _median_steps(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: _median([x[key] for x in samples]) for key in samples[0]}


def _sync_fn() -> Callable[[], None]:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.synchronize
    return lambda: None


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run the variants in turn (A B C A B C ...) and return each one's times (warm-up runs dropped)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(warmup + repeats):
        for name, fn in variants.items():
            seconds = _timed(fn)
            if rep >= warmup:
                times[name].append(seconds)
    return times


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _vector_for(engine: Any, behavior: str) -> tuple[Any, int, str]:
    """The behavior's real vector at the model's default layer, or a random one of typical size."""
    import torch

    layer = engine.defaults.layer
    try:
        return engine.vectors_for(behavior).vector(layer), layer, f"{behavior} vector"
    except Exception:  # no vectors extracted yet: a random direction at 10% of the hidden norm
        generator = torch.Generator().manual_seed(0)
        vector = torch.randn(engine.lm.hidden_size, generator=generator)
        vector = vector / vector.norm() * 0.1 * engine.hidden_norm(layer)
        return vector, layer, "random vector"


# ---------------------------------------------------------------------------- generation
def bench_generation(model: Any, tokenizer: Any, vector: Any, layer: int, multiplier: float, tokens: int,
                     repeats: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Three panes in one batch vs three single rows vs one unsteered row, equal token counts."""
    from steering.generation import SamplingSettings, SteeringSpec, generate

    extra = extra or {}
    settings = SamplingSettings(max_new_tokens=tokens)
    steer = SteeringSpec(layer, vector)
    alphas = [multiplier, 0.0, -multiplier]
    streamed: list[int] = []

    def one() -> None:
        generate(model, tokenizer, [PROMPT], settings=settings, ignore_eos=True, **extra)

    def three_batched() -> None:  # what Engine.compare runs, streaming callback included
        generate(model, tokenizer, [PROMPT] * 3, multipliers=alphas, steer=steer, settings=settings,
                 ignore_eos=True, on_text=lambda texts: streamed.append(len(texts)), **extra)

    def three_sequential() -> None:
        for alpha in alphas:
            generate(model, tokenizer, [PROMPT], multipliers=[alpha], steer=steer, settings=settings,
                     ignore_eos=True, **extra)

    variants = {"one": one, "three_batched": three_batched, "three_sequential": three_sequential}
    from steering.cpu_linear import FewRowLinear, standard_linear

    if any(type(module) is FewRowLinear for module in model.modules()):  # the same runs with plain nn.Linear
        def plain(run: Callable[[], None]) -> Callable[[], None]:
            def wrapped() -> None:
                with standard_linear(model):
                    run()
            return wrapped

        variants.update(one_standard_linear=plain(one), three_batched_standard_linear=plain(three_batched))
    times = interleaved(variants, repeats)
    med = {name: _median(values) for name, values in times.items()}
    standard = {}
    if "one_standard_linear" in med:
        standard = {"one_standard_linear_s": med["one_standard_linear"],
                    "three_batched_standard_linear_s": med["three_batched_standard_linear"],
                    "three_panes_vs_one_standard_linear":
                        med["three_batched_standard_linear"] / med["one_standard_linear"]}
    return {
        **standard,
        "tokens": tokens, "repeats": repeats,
        "one_s": med["one"], "three_batched_s": med["three_batched"], "three_sequential_s": med["three_sequential"],
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
    from steering.generation import SamplingSettings

    firsts: list[float] = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        seen: list[float] = []
        engine.compare(PROMPT, vector, layer, multiplier, SamplingSettings(max_new_tokens=4),
                       on_text=lambda texts: seen.append(time.perf_counter() - start) if not seen else None)
        firsts.append(seen[0])
    return {"first_text_s": _median(firsts[1:]), "raw_s": firsts[1:]}


def bench_hook(model: Any, tokenizer: Any, vector: Any, layer: int, tokens: int, repeats: int) -> dict[str, Any]:
    """One row, the hook at multiplier 0 vs no hook at all (the hook's arithmetic is the only difference)."""
    from steering.generation import SamplingSettings, SteeringSpec, generate

    settings = SamplingSettings(max_new_tokens=tokens)
    variants = {
        "no_hook": lambda: generate(model, tokenizer, [PROMPT], settings=settings, ignore_eos=True),
        "hook_zero": lambda: generate(model, tokenizer, [PROMPT], multipliers=[0.0], settings=settings,
                                      steer=SteeringSpec(layer, vector), ignore_eos=True),
    }
    times = interleaved(variants, repeats)
    pairs = [h / n for h, n in zip(times["hook_zero"], times["no_hook"])]
    return {"tokens": tokens, "repeats": repeats, "no_hook_s": _median(times["no_hook"]),
            "hook_zero_s": _median(times["hook_zero"]),
            "hook_overhead_pct": 100 * (_median(times["hook_zero"]) / _median(times["no_hook"]) - 1),
            "paired_overhead_pct": 100 * (_median(pairs) - 1), "raw_s": times}


# ---------------------------------------------------------------------------- extraction
def bench_extraction(model: Any, tokenizer: Any, pairs: int, repeats: int, batch_size: int,
                     dataset: Path) -> dict[str, Any]:
    import torch

    from steering.datasets import load_ab_dataset
    from steering.extraction import extract_vectors
    from steering.layers import decoder_layers
    from steering.reference import reference_vectors

    items = load_ab_dataset(dataset)[:pairs]
    layers = list(range(len(decoder_layers(model))))
    out: dict[str, Any] = {"pairs": len(items), "layers": len(layers), "batch_size": batch_size,
                           "dataset": str(dataset.relative_to(PROJECT_ROOT) if dataset.is_relative_to(PROJECT_ROOT)
                                          else dataset)}
    for mode in ("letter", "answer-mean"):
        result: dict[str, Any] = {}

        def batched() -> None:
            result["batched"] = extract_vectors(model, tokenizer, items, layers, mode, batch_size=batch_size,
                                                progress=False)

        def reference() -> None:
            result["reference"] = reference_vectors(model, tokenizer, items, layers, mode)

        times = interleaved({"batched": batched, "reference": reference}, repeats)
        cosines = [float(torch.nn.functional.cosine_similarity(result["batched"][k], result["reference"][k], dim=0))
                   for k in layers]
        b, r = _median(times["batched"]), _median(times["reference"])
        out[mode] = {"batched_pairs_s": len(items) / b, "reference_pairs_s": len(items) / r, "speedup": r / b,
                     "min_cosine_vs_reference": min(cosines), "raw_s": times}
    return out


# ---------------------------------------------------------------------------- subprocess measurements
_LOAD_SNIPPET = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
import transformers.models.llama.modeling_llama
from steering.models import ModelSettings, embedded_model_dir, load_model
t1 = time.perf_counter()
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])  # ModelSettings(threads=) keeps it through load_model
generate_tokens = args.pop("generate_tokens", 0)
def _status(key):  # VmHWM / VmRSS in KiB; ru_maxrss would carry the parent's peak across fork + exec
    try:
        return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss_imports = _status("VmRSS")
_, cached_before = embedded_model_dir() if args.get("name", "smollm2-135m-instruct") == "smollm2-135m-instruct" and args.pop("check_cache", False) else (None, None)
t2 = time.perf_counter()
lm = load_model(ModelSettings(**args))
t3 = time.perf_counter()
if generate_tokens:
    from steering.generation import SamplingSettings, SteeringSpec, generate
    vector = torch.randn(lm.hidden_size) * 0.1
    generate(lm.model, lm.tokenizer, [[{"role": "user", "content": "Tell me about the sea."}]] * 3,
             multipliers=[2.0, 0.0, -2.0], steer=SteeringSpec(lm.num_layers // 3, vector),
             settings=SamplingSettings(max_new_tokens=generate_tokens), ignore_eos=True)
t4 = time.perf_counter()
print("BENCH_JSON " + json.dumps({"imports_s": t1 - t0, "check_s": t2 - t1, "load_s": t3 - t2,
      "load_seconds_reported": lm.load_seconds, "generate_s": t4 - t3, "cached_before": cached_before,
      "rss_imports_mib": rss_imports / 1024, "peak_rss_mib": _status("VmHWM") / 1024, "rss_end_mib": _status("VmRSS") / 1024,
      "quantization": lm.quantization, "dtype": str(lm.dtype)}))
"""


def _subprocess(args: dict[str, Any], env_extra: dict[str, str] | None = None, timeout: int = 900) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", _LOAD_SNIPPET, json.dumps(args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(PROJECT_ROOT))
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def bench_load(repeats: int, threads: int) -> dict[str, Any]:
    """Cold: dequantize the GGUF into an empty cache dir; cached: the same dir afterwards."""
    with tempfile.TemporaryDirectory(prefix="steering-bench-cache-") as cache:
        env = {"LLAMA_STEERING_CACHE": cache}
        cold = _subprocess({"device": "cpu", "threads": threads, "check_cache": True}, env)
        cached = [_subprocess({"device": "cpu", "threads": threads, "check_cache": True}, env) for _ in range(repeats)]
    errors = [r["error"] for r in [cold] + cached if "error" in r]
    if errors:
        return {"error": errors[0]}
    return {"cold_s": cold["check_s"] + cold["load_s"], "cold_cached_before": cold["cached_before"],
            "cached_s": _median([r["load_s"] for r in cached]),
            "cached_cached_before": all(r["cached_before"] for r in cached),
            "imports_s": _median([r["imports_s"] for r in cached]), "repeats": repeats,
            "raw_cached_s": [r["load_s"] for r in cached]}


def bench_memory(threads: int, tokens: int) -> dict[str, Any]:
    """Peak RSS (VmHWM: ru_maxrss of this process) of loading + generating 3 rows: full precision vs 8-bit, 4-bit."""
    out: dict[str, Any] = {"generate_tokens": tokens}
    for name, flags in (("full", {}), ("int8", {"load_in_8bit": True}), ("nf4", {"load_in_4bit": True})):
        out[name] = _subprocess({"device": "cpu", "threads": threads, "generate_tokens": tokens, **flags})
    return out


# ---------------------------------------------------------------------------- the CPU report
def run_cpu_bench(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    import torch

    from steering.cli import _engine

    if args.threads:
        from steering.models import set_threads

        set_threads(args.threads)
    only = set(args.only or SECTIONS)
    results: dict[str, Any] = {"machine": machine_info(), "targets": TARGETS}
    engine = None
    if only & {"generation", "hook", "extraction"}:
        engine = _engine(args, config)
        lm = engine.lm
        results["model"] = lm.describe()
        vector, layer, vector_kind = _vector_for(engine, args.behavior)
        multiplier = engine.defaults.multiplier
        results["steering"] = {"layer": layer, "multiplier": multiplier, "vector": vector_kind}
        if "generation" in only:
            _log(f"generation: {args.tokens} tokens x {args.repeats} repeats")
            results["generation"] = bench_generation(lm.model, lm.tokenizer, vector, layer, multiplier, args.tokens,
                                                     args.repeats,
                                                     extra=engine.fast_path.generate_kwargs() if engine.fast_path else None)
            results["generation"].update(bench_first_text(engine, vector, layer, multiplier, args.repeats))
        if "hook" in only:
            _log("hook overhead at multiplier 0")
            results["hook"] = bench_hook(lm.model, lm.tokenizer, vector, layer, args.tokens, args.hook_repeats)
        if "extraction" in only:
            _log(f"extraction: {args.pairs} pairs")
            dataset = PROJECT_ROOT / config["datasets_dir"] / args.behavior / "generate.json"
            results["extraction"] = bench_extraction(lm.model, lm.tokenizer, args.pairs, args.extract_repeats,
                                                     int(config["extraction"]["batch_size"]), dataset)
    threads = torch.get_num_threads()
    if engine is not None and engine.lm.name != "smollm2-135m-instruct":
        only -= {"load", "memory"}  # the subprocess measurements use the embedded model
    del engine
    gc.collect()
    if "load" in only:
        _log("model load: cold vs cached (subprocesses)")
        results["load"] = bench_load(args.load_repeats, threads)
    if "memory" in only:
        _log("peak memory: full precision vs 8-bit vs 4-bit (subprocesses)")
        results["memory"] = bench_memory(threads, 8)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _met(value: float | None, target: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "NOT met"


def format_cpu_table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"machine: {m.get('cpu', '?')}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"load average {m.get('load_average_at_start')} -> {m.get('load_average_at_end')}"]
    if "model" in r:
        lines.append(f"model: {r['model']}; steering: {r['steering']}")
    lines += ["", "| measurement | value | target | |", "| --- | --- | --- | --- |"]
    g = r.get("generation")
    if g:
        lines += [
            f"| one unsteered row, {g['tokens']} tokens | {g['one_s']:.2f} s ({g['ms_per_token_one']:.1f} ms/token) | | |",
            f"| three panes, one batch | {g['three_batched_s']:.2f} s ({g['ms_per_token_three_batched']:.1f} ms/token) | | |",
            f"| three rows one after another | {g['three_sequential_s']:.2f} s | | |",
            f"| three panes / one row | {g['three_panes_vs_one']:.2f}x | <= 1.5x | {_met(g['three_panes_vs_one'], 1.5)} |",
            f"| three sequential / one row | {g['sequential_vs_one']:.2f}x | | |",
        ]
        if "one_standard_linear_s" in g:
            lines.append(f"| same with plain nn.Linear (no steering/cpu_linear.py): one row / three panes / ratio "
                         f"| {g['one_standard_linear_s']:.2f} s / {g['three_batched_standard_linear_s']:.2f} s / "
                         f"{g['three_panes_vs_one_standard_linear']:.2f}x | | |")
        lines += [
            f"| first streamed text (Engine.compare) | {g['first_text_s']:.3f} s | <= 1 s | {_met(g['first_text_s'], 1.0)} |",
        ]
    h = r.get("hook")
    if h:
        lines.append(f"| hook at multiplier 0 vs no hook | {h['hook_overhead_pct']:+.1f}% (paired {h['paired_overhead_pct']:+.1f}%) "
                     f"| <= 3% | {_met(h['hook_overhead_pct'], 3.0)} |")
    e = r.get("extraction")
    if e:
        for mode in ("letter", "answer-mean"):
            x = e[mode]
            lines.append(f"| extraction {mode}, {e['pairs']} pairs x {e['layers']} layers | batched {x['batched_pairs_s']:.1f} "
                         f"pairs/s vs paper loop {x['reference_pairs_s']:.1f} pairs/s = {x['speedup']:.2f}x "
                         f"(cos >= {x['min_cosine_vs_reference']:.4f}) | >= 3x | {_met(x['speedup'], 3.0, True)} |")
    ld = r.get("load")
    if ld and "error" not in ld:
        lines += [f"| model load, cold (GGUF dequantize) | {ld['cold_s']:.2f} s | | |",
                  f"| model load, cached | {ld['cached_s']:.2f} s (imports {ld['imports_s']:.1f} s not counted) | <= 5 s "
                  f"| {_met(ld['cached_s'], 5.0)} |"]
    elif ld:
        lines.append(f"| model load | error: {ld['error']} | | |")
    mem = r.get("memory")
    if mem:
        for name in ("full", "int8", "nf4"):
            x = mem[name]
            if "error" in x:
                lines.append(f"| peak RSS, {name} | error: {x['error'][:120]} | | |")
            else:
                lines.append(f"| peak RSS, {name} ({x['quantization'] or x['dtype']}), load + {mem['generate_tokens']} "
                             f"tokens x 3 rows | peak {x['peak_rss_mib']:.0f} MiB, at the end {x.get('rss_end_mib', 0):.0f} MiB "
                             f"(after imports {x['rss_imports_mib']:.0f} MiB) | | |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the GPU report (synthetic 7B)
def make_byte_tokenizer() -> Any:
    """A byte-level chat tokenizer (as in tests/conftest.py): only chat formatting needs a tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens({"eos_token": "<|end|>", "pad_token": "<pad>",
                            "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>"]})
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return tok


def llama7b_config(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    values = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                  tie_word_embeddings=False)
    values.update(overrides)
    return LlamaConfig(**values)


def _gpu_bandwidth() -> float:
    import torch

    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / 10
    del x, y
    return 2 * 2 * 1024**3 / seconds  # read + write


_QUANT_SNIPPET = r"""
import json, sys, time, torch
from steering.models import ModelSettings, load_model
from steering.generation import SamplingSettings, SteeringSpec, generate
a = json.loads(sys.argv[1])
cuda = a["device"] == "cuda"
if cuda:
    torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
lm = load_model(ModelSettings(name=a["path"], device=a["device"], dtype="float16" if cuda else "float32", **a["flags"]))
load_s = time.perf_counter() - t
weights = torch.cuda.memory_allocated() if cuda else 0
sync = torch.cuda.synchronize if cuda else (lambda: None)
prompt = [{"role": "user", "content": "Tell me about the history of the printing press in a few paragraphs."}]
vector = torch.randn(lm.hidden_size) * 0.5
def run(n):
    generate(lm.model, lm.tokenizer, [prompt] * 3, multipliers=[2.0, 0.0, -2.0], steer=SteeringSpec(min(13, lm.num_layers - 1), vector),
             settings=SamplingSettings(max_new_tokens=n), ignore_eos=True)
run(4)
sync()
times = []
for _ in range(a["repeats"]):
    t = time.perf_counter(); run(a["tokens"]); sync(); times.append(time.perf_counter() - t)
times.sort()
print("BENCH_JSON " + json.dumps({"load_s": load_s, "weights_gib": weights / 2**30,
      "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
      "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0,
      "tok_s_per_pane": a["tokens"] / times[len(times) // 2], "tokens": a["tokens"], "quantization": lm.quantization}))
"""


def run_gpu_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Eager vs static cache + torch.compile on a random Llama-2-7B-shaped fp16 model; 8-bit and nf4."""
    import torch

    from steering.fast_path import FastPath
    from steering.generation import SamplingSettings, SteeringSpec, generate

    from steering.models import check_transformers

    check_transformers()
    smoke = bool(getattr(args, "smoke", False))  # a tiny shape on the CPU: checks the code path, not speed
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("--synthetic-7b needs a CUDA GPU")
    device = "cpu" if smoke else "cuda"
    torch.manual_seed(0)
    results: dict[str, Any] = {"machine": machine_info(), "targets": TARGETS}
    tokens, repeats = args.tokens, args.repeats
    layers = args.layers_7b
    config = llama7b_config(num_hidden_layers=layers)
    if smoke:
        config = llama7b_config(num_hidden_layers=layers, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                num_key_value_heads=4, vocab_size=512)
    tokenizer = make_byte_tokenizer()
    _log(f"building a random Llama-2-7B-shaped model ({layers} layers, fp16) on the GPU")
    from transformers import LlamaForCausalLM

    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.float32 if smoke else torch.float16).eval()
    model.requires_grad_(False)
    model.config.eos_token_id = None
    model.generation_config.eos_token_id = None
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = 1e11 if smoke else _gpu_bandwidth()
    datasheet = {"H100": 3.35e12, "H200": 4.8e12}
    gpu = "cpu (smoke)" if smoke else torch.cuda.get_device_name(0)
    sheet = next((v for k, v in datasheet.items() if k in gpu), None)
    results["model"] = {"layers": layers, "params": sum(p.numel() for p in model.parameters()),
                        "weights_gib": weight_bytes / 2**30}
    results["ceiling"] = {"copy_bandwidth_gb_s": bandwidth / 1e9, "datasheet_bandwidth_gb_s": (sheet or 0) / 1e9,
                          "tok_s_at_copy_bandwidth": bandwidth / weight_bytes,
                          "tok_s_at_datasheet_bandwidth": (sheet / weight_bytes) if sheet else None}
    vector = torch.randn(config.hidden_size) * 0.5
    steer = SteeringSpec(min(13, layers - 1), vector)
    settings = SamplingSettings(max_new_tokens=tokens)
    prompt3 = [PROMPT] * 3

    def eager3(on_text: Callable[[list[str]], None] = lambda texts: None) -> Any:
        return generate(model, tokenizer, prompt3, multipliers=[2.0, 0.0, -2.0], steer=steer, settings=settings,
                        ignore_eos=True, on_text=on_text)

    _log("eager, batch of three")
    eager3()
    eager_steps = [_timed_steps(eager3) for _ in range(repeats)]
    eager_times = [x["total_s"] for x in eager_steps]
    eager_tokens = eager3().token_ids
    results["eager"] = {"tokens": tokens, "tok_s_per_pane": tokens / _median(eager_times), "raw_s": eager_times,
                        **_median_steps(eager_steps)}

    _log("static cache + CUDA graphs, no compiler (the default on CUDA)")
    graphed = FastPath(model, compile=False, cuda_graphs=not smoke)

    def graphed3(on_text: Callable[[list[str]], None] = lambda texts: None, batch: int = 3) -> Any:
        return graphed.generate(tokenizer, [PROMPT] * batch, multipliers=[2.0, 0.0, -2.0][:batch], steer=steer,
                                settings=settings, ignore_eos=True, on_text=on_text)

    start = time.perf_counter()
    graphed3()  # first use: one eager step, one capture, then replays
    first_use = time.perf_counter() - start
    graph_steps = [_timed_steps(graphed3) for _ in range(repeats)]
    graph_one = [_timed(lambda: graphed3(batch=1)) for _ in range(repeats)]
    graph_tokens = graphed3().token_ids
    results["cuda_graphs"] = {
        "tokens": tokens, "tok_s_per_pane": tokens / _median([x["total_s"] for x in graph_steps]),
        "tok_s_single_row": tokens / _median(graph_one), "first_generation_s": first_use,
        "captures_s": list(graphed.graphs.capture_seconds) if graphed.graphs else [],
        "greedy_tokens_equal_to_eager": [sum(a == b for a, b in zip(x, y)) / len(x)
                                         for x, y in zip(eager_tokens, graph_tokens)],
        **_median_steps(graph_steps)}
    graphed.steering.remove()
    del graphed
    _log(f"CUDA graphs {results['cuda_graphs']['tok_s_per_pane']:.1f} tok/s/pane")

    _log("fast path: hooks, static cache, torch.compile warm-up")
    fast = FastPath(model, compile=True, backend="eager" if smoke else "inductor")
    start = time.perf_counter()
    fast.warm_up(tokenizer, batches=(3, 1))
    warm_s = time.perf_counter() - start
    graphs = fast.graph_count()

    def compiled(alphas: Sequence[float], batch: int = 3,
                 on_text: Callable[[list[str]], None] = lambda texts: None) -> Any:
        return fast.generate(tokenizer, [PROMPT] * batch, multipliers=list(alphas)[:batch], steer=steer,
                             settings=settings, ignore_eos=True, on_text=on_text)

    compiled([2.0, 0.0, -2.0])
    comp_steps = [_timed_steps(lambda on_text: compiled([2.0, 0.0, -2.0], on_text=on_text)) for _ in range(repeats)]
    comp_times = [x["total_s"] for x in comp_steps]
    comp_tokens = compiled([2.0, 0.0, -2.0]).token_ids
    one_times = [_timed(lambda: compiled([0.0], batch=1)) for _ in range(repeats)]
    for alpha in (0.5, 4.0, -3.0):  # the slider moves: no recompile
        compiled([alpha, 0.0, -alpha])
    import steering.generation as generation

    generation.LOOKAHEAD = False  # the same loops with a host sync before queuing each step
    sync_comp = [_timed(lambda: compiled([2.0, 0.0, -2.0])) for _ in range(repeats)]
    sync_eager = [_timed(eager3) for _ in range(repeats)]
    generation.LOOKAHEAD = None
    same = [sum(a == b for a, b in zip(x, y)) / len(x) for x, y in zip(eager_tokens, comp_tokens)]
    results["compiled"] = {
        "tokens": tokens, "warm_up_s": warm_s, "tok_s_per_pane": tokens / _median(comp_times),
        "tok_s_single_row": tokens / _median(one_times), "three_panes_vs_one": _median(comp_times) / _median(one_times),
        "graphs_after_warm_up": graphs, "graphs_after_alpha_changes": fast.graph_count(),
        "greedy_tokens_equal_to_eager": same, "raw_s": comp_times,
        "tok_s_per_pane_without_lookahead": tokens / _median(sync_comp), **_median_steps(comp_steps),
    }
    results["eager"]["tok_s_per_pane_without_lookahead"] = tokens / _median(sync_eager)
    _log(f"eager {results['eager']['tok_s_per_pane']:.1f} tok/s/pane, compiled {results['compiled']['tok_s_per_pane']:.1f}")
    fast.steering.remove()
    if not args.skip_quantized:
        folder = Path(args.work_dir or tempfile.mkdtemp(prefix="llama7b-random-"))
        _log(f"saving the random model to {folder} for the 8-bit / 4-bit loaders")
        del fast
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        del model
        gc.collect()
        torch.cuda.empty_cache()
        quantized = (("nf4", {"load_in_4bit": True}, tokens), ("int8", {"load_in_8bit": True}, 32))
        for name, flags, n in (quantized[:1] if smoke else quantized):
            _log(f"{name} in a subprocess")
            env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.run([sys.executable, "-c", _QUANT_SNIPPET, json.dumps(
                {"path": str(folder), "flags": flags, "tokens": n, "repeats": 3, "device": device})], capture_output=True, text=True,
                env=env, timeout=900, cwd=str(PROJECT_ROOT))
            lines = [x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")]
            results[name] = json.loads(lines[0][11:]) if lines else {"error": (proc.stderr or proc.stdout)[-600:]}
    return results


def format_gpu_table(r: dict[str, Any]) -> str:
    m, c = r["machine"], r["ceiling"]
    lines = [f"GPU: {m.get('gpu')}, torch {m['torch']}, transformers {m.get('transformers')}; random Llama-2-7B shape "
             f"({r['model']['layers']} layers, {r['model']['params'] / 1e9:.2f} B params, fp16 {r['model']['weights_gib']:.1f} GiB)",
             "", "| measurement | value | target | |", "| --- | --- | --- | --- |"]
    e, k, g = r["eager"], r["compiled"], r.get("cuda_graphs")
    lines += [
        f"| eager, batch of three: tok/s per pane | {e['tok_s_per_pane']:.1f} | >= 40 | {_met(e['tok_s_per_pane'], 40, True)} |",
    ]
    if g:
        lines += [
            f"| static cache + CUDA graphs, no compiler (default on CUDA), batch of three: tok/s per pane "
            f"| {g['tok_s_per_pane']:.1f} | | |",
            f"| CUDA graphs: one row tok/s; first generation (warm-up + capture) | {g['tok_s_single_row']:.1f}; "
            f"{g['first_generation_s']:.2f} s (captures {', '.join(f'{x:.2f}' for x in g['captures_s'])} s) | | |",
            f"| CUDA graphs: greedy tokens equal to eager (per row) "
            f"| {', '.join(f'{x:.0%}' for x in g['greedy_tokens_equal_to_eager'])} | | |",
        ]
    steps = [(name, x) for name, x in (("eager", e), ("CUDA graphs", g), ("compiled", k)) if x and "decode_ms_per_step" in x]
    if steps:
        lines.append("| time to first text (setup + prefill) / decoding ms per step: "
                     + ", ".join(name for name, _ in steps) + " | "
                     + "; ".join(f"{x['first_text_s'] * 1000:.0f} ms / {x['decode_ms_per_step']:.2f} ms" for _, x in steps)
                     + " | | |")
    lines += [
        f"| static cache + torch.compile, batch of three: tok/s per pane | {k['tok_s_per_pane']:.1f} | >= 125 "
        f"| {_met(k['tok_s_per_pane'], 125, True)} |",
        f"| static cache + torch.compile, one row: tok/s | {k['tok_s_single_row']:.1f} | | |",
        f"| compiled: three panes / one row (time) | {k['three_panes_vs_one']:.2f}x | | |",
        f"| same, host sync before queuing each step (no lookahead): eager / compiled tok/s per pane "
        f"| {e.get('tok_s_per_pane_without_lookahead', 0):.1f} / {k.get('tok_s_per_pane_without_lookahead', 0):.1f} | | |",
        f"| compile warm-up at start (batches 3 and 1) | {k['warm_up_s']:.0f} s | | |",
        f"| graphs after warm-up / after 3 alpha changes | {k['graphs_after_warm_up']} / {k['graphs_after_alpha_changes']} "
        f"| no recompile | {'met' if k['graphs_after_warm_up'] == k['graphs_after_alpha_changes'] else 'NOT met'} |",
        f"| greedy tokens equal to eager (per row, fp16) | {', '.join(f'{x:.0%}' for x in k['greedy_tokens_equal_to_eager'])} | | |",
        f"| memory-bandwidth ceiling (fp16 weights / bandwidth) | {c['tok_s_at_copy_bandwidth']:.0f} tok/s at measured copy "
        f"{c['copy_bandwidth_gb_s']:.0f} GB/s" + (f"; {c['tok_s_at_datasheet_bandwidth']:.0f} tok/s at datasheet "
                                                  f"{c['datasheet_bandwidth_gb_s']:.0f} GB/s" if c.get('tok_s_at_datasheet_bandwidth') else "")
        + " | | |",
    ]
    for name, label in (("int8", "8-bit LLM.int8"), ("nf4", "4-bit nf4")):
        x = r.get(name)
        if x is None:
            continue
        if "error" in x:
            lines.append(f"| {label} | error: {x['error'][-200:]} | | |")
            continue
        target = f"<= 7.5 GiB | {_met(x['peak_allocated_gib'], 7.5)}" if name == "int8" else "|"
        lines.append(f"| {label}: peak GPU memory (allocated; reserved) | {x['peak_allocated_gib']:.2f} GiB; "
                     f"{x['peak_reserved_gib']:.2f} GiB (weights {x['weights_gib']:.2f}) | {target} |")
        lines.append(f"| {label}: eager batch of three, tok/s per pane ({x['tokens']} tokens) | {x['tok_s_per_pane']:.1f} | | |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def cmd_bench(args: argparse.Namespace, config: dict[str, Any]) -> int:
    if args.synthetic_7b:
        results = run_gpu_bench(args)
        table = format_gpu_table(results)
    else:
        results = run_cpu_bench(args, config)
        table = format_cpu_table(results)
    print(table)
    if args.json:
        from steering.files import write_text

        path = Path(args.json)
        write_text(path, json.dumps(results, indent=2, default=str) + "\n")
        write_text(path.with_suffix(".md"), table + "\n")
        print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


def register(sub: Any) -> None:
    from steering.cli import _add_model_flags

    p = sub.add_parser("bench", help="performance: batched panes, hook overhead, extraction, load, memory")
    _add_model_flags(p)
    p.add_argument("--json", help="also write the results here (and the table next to it as .md)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help=f"sections to run (default: all of {', '.join(SECTIONS)})")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per generation (EOS ignored)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of each generation variant")
    p.add_argument("--hook-repeats", type=int, default=9)
    p.add_argument("--pairs", type=int, default=48, help="A/B pairs for the extraction benchmark")
    p.add_argument("--extract-repeats", type=int, default=3)
    p.add_argument("--load-repeats", type=int, default=3)
    p.add_argument("--behavior", default=None)
    p.add_argument("--synthetic-7b", action="store_true",
                   help="GPU: random Llama-2-7B-shaped fp16 model, eager vs compiled fast path, 8-bit, nf4")
    p.add_argument("--layers-7b", type=int, default=32, help="decoder layers of the synthetic model (32 = 7B)")
    p.add_argument("--skip-quantized", action="store_true", help="--synthetic-7b without the 8-bit / 4-bit runs")
    p.add_argument("--work-dir", help="--synthetic-7b: folder for the saved random model")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # --synthetic-7b code path, tiny, CPU
    p.set_defaults(func=cmd_bench)
