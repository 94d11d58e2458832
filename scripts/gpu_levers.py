"""Two levers for the CUDA-graph decoding step measured on their own (issue 12 section 2), 7B shape, fp16.

Sections (scripts/gpu_common.py: each recorded in the JSON report, a failing one does not stop the others):

* matmul_floor: the copy-bandwidth ceiling, then each decoding-step matrix product of the Llama-2-7B shape
  (q / o 4096x4096, fused q+k+v, up / down 11008, fused gate+up, lm_head 32000) for M = 1, 3, 16, 48 rows, timed in
  a CUDA graph over 8 weight copies (more than the L2 holds), in us and TB/s; and the whole step's matrix products
  for three rows, separate and fused, against the ceiling. This is the floor a step cannot go under with cuBLAS.
* liger: the CUDA-graph path (FastPath(cuda_graphs=True)), three panes, tok/s per pane, plain and with Liger
  Kernel's fused RMSNorm / SwiGLU / rotary Triton kernels (liger-kernel on PyPI, `apply_liger_kernel_to_llama`,
  an optional library, not a dependency), and with the q/k/v and gate/up projections fused on top
  (gpu_profile.fuse_projections); for each, how many of 12 rows decoded in one batch equal the same 3 rows
  decoded alone (48 greedy tokens: fp16 near-ties of random weights part rows with the batch shape).

    python scripts/gpu_levers.py --out OUT          # a CUDA GPU (liger: pip install liger-kernel first)
    python scripts/gpu_levers.py --out OUT --smoke  # checks the script on the CPU (tiny shapes, no Liger)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package, when it is not installed (the GPU machine)
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from gpu_common import Sections, json_saver, parse_args  # noqa: E402

SHAPES = {  # name: (out features, in features) of the Llama-2-7B decoding step's matrix products
    "q": (4096, 4096),
    "qkv_fused": (3 * 4096, 4096),
    "o": (4096, 4096),
    "up": (11008, 4096),
    "gate_up_fused": (2 * 11008, 4096),
    "down": (4096, 11008),
    "lm_head": (32000, 4096),
}


def graph_seconds(fn: Callable[[], None], replays: int = 20, calls: int = 10) -> float:
    """Seconds per call of `fn`, `calls` of them captured in one CUDA graph and replayed `replays` times."""
    graph, side = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    for _ in range(3):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / (replays * calls)


def matmul_floor(smoke: bool) -> dict[str, Any]:
    """The matmul_floor section (see the module docstring); in us per product and TB/s of weights read."""
    from steering.bench.machine import gpu_bandwidth

    if smoke:
        return {"skipped": "needs CUDA"}
    bandwidth = gpu_bandwidth()
    rows: dict[str, dict[str, Any]] = {}
    for name, (n_out, n_in) in SHAPES.items():
        weights = [torch.randn(n_out, n_in, dtype=torch.float16, device="cuda") for _ in range(8)]
        rows[name] = {}
        for m in (1, 3, 16, 48):
            x = torch.randn(m, n_in, dtype=torch.float16, device="cuda")
            seconds = graph_seconds(lambda x=x, ws=weights: [torch.nn.functional.linear(x, w) for w in ws]) / len(
                weights
            )
            rows[name][f"M={m}"] = {"us": round(seconds * 1e6, 2), "tb_s": round(n_out * n_in * 2 / seconds / 1e12, 3)}
    us = {name: rows[name]["M=3"]["us"] for name in rows}
    separate = 32 * (3 * us["q"] + us["o"] + 2 * us["up"] + us["down"]) + us["lm_head"]
    fused = 32 * (us["qkv_fused"] + us["o"] + us["gate_up_fused"] + us["down"]) + us["lm_head"]
    weight_bytes = (32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 32000 * 4096) * 2  # without the embedding
    ceiling_us = weight_bytes / bandwidth * 1e6
    return {
        "copy_tb_s": round(bandwidth / 1e12, 3),
        "products": rows,
        "step_matmuls_us_3_rows": {"separate": round(separate, 1), "fused": round(fused, 1)},
        "ceiling_us": round(ceiling_us, 1),
        "share_of_ceiling": {"separate": round(ceiling_us / separate, 3), "fused": round(ceiling_us / fused, 3)},
    }


def liger(smoke: bool, tokens: int) -> dict[str, Any]:
    """The liger section (see the module docstring): tok/s per pane and 12-vs-3 row agreement per variant."""
    import gpu_profile

    from steering.bench.timing import median, timed
    from steering.decode.fast_path import FastPath
    from steering.decode.generation import SamplingSettings, SteeringSpec

    model, tok = gpu_profile.build(smoke)
    steer = SteeringSpec(
        min(13, model.config.num_hidden_layers - 1),
        torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.5,
    )
    alphas, prompt, result = [2.0, 0.0, -2.0], gpu_profile.PROMPT, {}

    def variant(label: str) -> list[list[int]]:
        fast = FastPath(model, compile=False, cuda_graphs=not smoke, bucket=256)
        try:

            def once() -> Any:
                return fast.generate(
                    tok, [prompt] * 3, alphas, steer, SamplingSettings(max_new_tokens=tokens), ignore_eos=True
                )

            once()
            seconds = median([timed(once) for _ in range(3)])
            three = fast.generate(tok, [prompt] * 3, alphas, steer, SamplingSettings(max_new_tokens=48)).token_ids
            twelve = fast.generate(tok, [prompt] * 12, alphas * 4, steer, SamplingSettings(max_new_tokens=48)).token_ids
        finally:
            fast.steering.remove()
        same = sum(a == b for a, b in zip(three * 4, twelve))
        result[label] = {"tok_s_per_pane": round(tokens / seconds, 1), "rows_of_12_equal_alone": f"{same}/12"}
        print(label, result[label], flush=True)
        return three

    plain = variant("plain CUDA graphs")
    if smoke:
        return result
    from liger_kernel.transformers import apply_liger_kernel_to_llama

    apply_liger_kernel_to_llama(
        rope=True, swiglu=True, rms_norm=True, cross_entropy=False, fused_linear_cross_entropy=False, model=model
    )
    fused_kernels = variant("Liger RMSNorm + SwiGLU + rotary")
    result["liger_rows_equal_plain"] = [a == b for a, b in zip(plain, fused_kernels)]
    gpu_profile.fuse_projections(model)
    variant("Liger + fused q/k/v and gate/up projections")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the sections and write OUT/levers.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    args, out = parse_args(parser, argv)
    report: dict[str, Any] = {
        "device": "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "sections": {},
    }
    section = Sections(report["sections"], json_saver(report, out / "levers.json")).run
    section("matmul_floor", lambda: matmul_floor(args.smoke))
    section("liger", lambda: liger(args.smoke, 8 if args.smoke else args.tokens))
    return 0 if all(s["ok"] for s in report["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
