"""The benchmark's subprocess measurements, run as ``python -m steering.bench.worker KIND JSON``.

A fresh process per measurement, so a model load starts cold (imports, cache) and peak memory is this
process's own. Prints one line ``BENCH_JSON {...}`` with the results; steering.bench.workers starts it and
reads that line.

Kinds:
  load   load the embedded model (ModelSettings from JSON, plus "threads", "check_cache" and
         "generate_tokens"): import, cache-check and load seconds, RSS after imports, peak and at the end;
         with generate_tokens, also a three-row steered generation of that many tokens.
  quant  load a saved model folder with bitsandbytes flags ("path", "flags", "device", "tokens",
         "repeats"): load seconds, GPU memory, tok/s per pane of a three-row steered generation.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before torch and transformers are imported (the load measurement's imports_s)

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from typing import Any, Callable  # noqa: E402

from steering.bench.common import PROMPT  # noqa: E402

MARKER = "BENCH_JSON "


def _status(key: str) -> int:
    """VmHWM / VmRSS in KiB; ru_maxrss would carry the parent's peak across fork + exec."""
    try:
        return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def load(args: dict[str, Any]) -> dict[str, Any]:
    """Time the imports, the cache check and load_model; optionally generate three steered rows."""
    # lazy: load() times these imports; bench.workers imports this module for MARKER
    import torch
    import transformers  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: F401

    from steering.config import ModelSettings
    from steering.embedded import embedded_model_dir
    from steering.models import load_model

    t1 = time.perf_counter()
    torch.set_num_threads(args["threads"])  # ModelSettings(threads=) keeps it through load_model
    generate_tokens = args.pop("generate_tokens", 0)
    rss_imports = _status("VmRSS")
    check = args.get("name", "smollm2-135m-instruct") == "smollm2-135m-instruct" and args.pop("check_cache", False)
    _, cached_before = embedded_model_dir() if check else (None, None)
    t2 = time.perf_counter()
    lm = load_model(ModelSettings(**args))
    t3 = time.perf_counter()
    if generate_tokens:
        # lazy: torch, only with generate_tokens
        from steering.decode.generation import SamplingSettings, SteeringSpec, generate

        vector = torch.randn(lm.hidden_size) * 0.1
        generate(
            lm.model,
            lm.tokenizer,
            [[{"role": "user", "content": "Tell me about the sea."}]] * 3,
            multipliers=[2.0, 0.0, -2.0],
            steer=SteeringSpec(lm.num_layers // 3, vector),
            settings=SamplingSettings(max_new_tokens=generate_tokens),
            ignore_eos=True,
        )
    t4 = time.perf_counter()
    return {
        "imports_s": t1 - _T0,
        "check_s": t2 - t1,
        "load_s": t3 - t2,
        "load_seconds_reported": lm.load_seconds,
        "generate_s": t4 - t3,
        "cached_before": cached_before,
        "rss_imports_mib": rss_imports / 1024,
        "peak_rss_mib": _status("VmHWM") / 1024,
        "rss_end_mib": _status("VmRSS") / 1024,
        "quantization": lm.quantization,
        "dtype": str(lm.dtype),
    }


def quant(a: dict[str, Any]) -> dict[str, Any]:
    """Load a saved model quantized (bitsandbytes flags) and time a three-row steered generation."""
    # lazy: torch (bench.workers imports this module for MARKER)
    import torch

    from steering.config import ModelSettings
    from steering.decode.generation import SamplingSettings, SteeringSpec, generate
    from steering.models import load_model

    cuda = a["device"] == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    lm = load_model(
        ModelSettings(name=a["path"], device=a["device"], dtype="float16" if cuda else "float32", **a["flags"])
    )
    load_s = time.perf_counter() - t
    weights = torch.cuda.memory_allocated() if cuda else 0
    sync: Callable[[], None] = torch.cuda.synchronize if cuda else (lambda: None)
    vector = torch.randn(lm.hidden_size) * 0.5

    def run(n: int) -> None:
        generate(
            lm.model,
            lm.tokenizer,
            [PROMPT] * 3,
            multipliers=[2.0, 0.0, -2.0],
            steer=SteeringSpec(min(13, lm.num_layers - 1), vector),
            settings=SamplingSettings(max_new_tokens=n),
            ignore_eos=True,
        )

    run(4)
    sync()
    times = []
    for _ in range(a["repeats"]):
        t = time.perf_counter()
        run(a["tokens"])
        sync()
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "load_s": load_s,
        "weights_gib": weights / 2**30,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0,
        "tok_s_per_pane": a["tokens"] / times[len(times) // 2],
        "tokens": a["tokens"],
        "quantization": lm.quantization,
    }


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"load": load, "quant": quant}


def main(argv: list[str]) -> int:
    """`python -m steering.bench.worker KIND JSON`: run one measurement, print its BENCH_JSON line."""
    if len(argv) != 2 or argv[0] not in KINDS:
        print(f"usage: python -m steering.bench.worker {{{','.join(KINDS)}}} JSON", file=sys.stderr)
        return 2
    print(MARKER + json.dumps(KINDS[argv[0]](json.loads(argv[1]))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
