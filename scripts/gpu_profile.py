"""Where the decoding time goes on the GPU fast path (issue 12 section 2), on a random Llama-2-7B-shaped model.

Sections (each recorded in the JSON report, a failing one does not stop the others):

* ceiling: the device-to-device copy bandwidth and the tok/s it allows (fp16 weights read once per step);
* variants: the CUDA-graph path (FastPath(cuda_graphs=True)), three panes, tok/s per pane, for static cache
  length buckets (how far the cache reaches past prompt + new tokens) and attention kernels (SDPA, eager);
  and with the q/k/v and gate/up projections fused into one matrix product each (weights shared as views);
* profile: torch.profiler's per-kernel table of the static-cache decoding steps (the kernels a CUDA graph
  replays) and the GPU-busy share of a graphed step;
* logits: the CUDA-graph path's per-step logits against the eager path's (steered rows, greedy), up to the
  first token where they part, with the eager top-2 margin there (a near-tie of random weights, or a bug);
* compile_start (`--compile-start`): the compiled path's warm-up time and tok/s per pane; run twice with the
  same TORCHINDUCTOR_CACHE_DIR, the second run measures a start with the compiler's caches on disk;
  `--fused` fuses the projections first (the compiled path with fewer, larger matrix products).

    python scripts/gpu_profile.py --out OUT [--tokens 128]      # a CUDA GPU
    python scripts/gpu_profile.py --out OUT --compile-start     # the compiled path's start only
    python scripts/gpu_profile.py --out OUT --smoke             # a tiny model on the CPU (checks the script)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from gpu_common import Sections, json_saver, parse_args  # noqa: E402

PROMPT = [{"role": "user", "content": "Tell me about the history of the printing press in a few paragraphs."}]


def build(smoke: bool) -> tuple[Any, Any]:
    """The random Llama-2-7B-shaped model (fp16, CUDA; or tiny float32 on the CPU) and a byte tokenizer."""
    from steering.synthetic import LLAMA2_7B, TINY, make_byte_tokenizer, random_llama

    if smoke:
        model = random_llama(TINY, "cpu", torch.float32)
    else:
        model = random_llama(LLAMA2_7B, "cuda", torch.float16)
    return model, make_byte_tokenizer()


def fuse_projections(model: Any) -> Callable[[], None]:
    """Fuse each block's q/k/v and gate/up projections into one matrix product each (an experiment).

    The fused weight is one tensor; the original Linear modules' weights become views of it (no extra
    memory). q_proj computes all three and hands k and v to the next two calls (transformers' Llama calls
    q, k, v in that order on the same input; gate before up likewise). Returns a function that undoes it.
    """
    undo = []
    for layer in model.model.layers:
        for parent, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj")), (layer.mlp, ("gate_proj", "up_proj"))):
            mods = [getattr(parent, n) for n in names]
            fused = torch.cat([m.weight.data for m in mods], 0)
            sizes = [m.weight.shape[0] for m in mods]
            offset = 0
            for m, size in zip(mods, sizes):
                m.weight.data = fused[offset : offset + size]
                offset += size
            held: list[torch.Tensor] = []

            def first(x: torch.Tensor, fused: torch.Tensor = fused, sizes: list = sizes, held: list = held) -> Any:
                parts = torch.nn.functional.linear(x, fused).split(sizes, dim=-1)
                held[:] = list(parts[1:])
                return parts[0]

            def later(x: torch.Tensor, held: list = held) -> Any:
                return held.pop(0)

            for m, fn in zip(mods, [first] + [later] * (len(mods) - 1)):
                m.forward = fn
                undo.append(m)

    def restore() -> None:
        for m in undo:
            del m.forward

    return restore


def compile_pieces(backend: str = "inductor") -> Callable[[], None]:
    """Compile the small per-block pieces of transformers' Llama for one-token steps (an experiment): RMSNorm,
    the MLP (SiLU(gate) x up, down) and the rotary embedding, each one compiled function shared by every block
    (no inductor CUDA graphs: the fast path captures the whole step). Prefill shapes keep the plain code.
    Returns a function that undoes it."""
    from transformers.models.llama import modeling_llama as ml

    originals = (ml.LlamaRMSNorm.forward, ml.LlamaMLP.forward, ml.apply_rotary_pos_emb)
    norm = torch.compile(originals[0], backend=backend, dynamic=False)
    mlp = torch.compile(originals[1], backend=backend, dynamic=False)
    rotary = torch.compile(originals[2], backend=backend, dynamic=False)

    def norm_forward(self: Any, x: torch.Tensor) -> Any:
        return norm(self, x) if x.shape[1] == 1 else originals[0](self, x)

    def mlp_forward(self: Any, x: torch.Tensor) -> Any:
        return mlp(self, x) if x.shape[1] == 1 else originals[1](self, x)

    def rotary_apply(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *args: Any) -> Any:
        return rotary(q, k, cos, sin, *args) if q.shape[2] == 1 else originals[2](q, k, cos, sin, *args)

    ml.LlamaRMSNorm.forward, ml.LlamaMLP.forward, ml.apply_rotary_pos_emb = norm_forward, mlp_forward, rotary_apply

    def restore() -> None:
        ml.LlamaRMSNorm.forward, ml.LlamaMLP.forward, ml.apply_rotary_pos_emb = originals

    return restore


def main(argv: list[str] | None = None) -> int:  # noqa: C901 (one section after another)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-start", action="store_true", help="only the compiled path's start-up time")
    parser.add_argument("--pieces-only", action="store_true", help="stop after the compiled-pieces experiment")
    parser.add_argument("--fused", action="store_true", help="with --compile-start: fuse the projections first")
    parser.add_argument("--tag", default="", help="suffix of the report's file name")
    args, out = parse_args(parser, argv)

    from steering.bench.timing import median, timed
    from steering.decode.decoder import EagerDecoder
    from steering.decode.fast_path import FastPath
    from steering.decode.generation import SamplingSettings, SteeringSpec, generate

    report: dict[str, Any] = {"device": "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(0)}
    report["torch"] = torch.__version__
    began = time.perf_counter()
    model, tok = build(args.smoke)
    report["build_s"] = time.perf_counter() - began
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    hidden = model.config.hidden_size
    steer = SteeringSpec(min(13, model.config.num_hidden_layers - 1), torch.randn(hidden) * 0.5)
    alphas = [2.0, 0.0, -2.0]
    settings = SamplingSettings(max_new_tokens=args.tokens)
    sections: dict[str, Any] = {}
    report["sections"] = sections

    section = Sections(sections, json_saver(report, out / f"profile{args.tag}.json")).run

    if args.compile_start:

        def compile_start() -> dict[str, Any]:
            import os

            if args.fused:
                fuse_projections(model)
            fast = FastPath(model, compile=True, backend="eager" if args.smoke else "inductor")
            seconds = fast.warm_up(tok, batches=(3, 1))
            per_pane = [
                timed(lambda: fast.generate(tok, [PROMPT] * 3, alphas, steer, settings, ignore_eos=True))
                for _ in range(args.repeats)
            ]
            return {
                "warm_up_s": seconds,
                "tok_s_per_pane": args.tokens / median(per_pane),
                "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                "fused_projections": args.fused,
            }

        section("compile_start", compile_start)
        return 0

    def ceiling() -> dict[str, Any]:
        from steering.bench.machine import gpu_bandwidth

        bandwidth = 1e11 if args.smoke else gpu_bandwidth()
        return {"copy_gb_s": bandwidth / 1e9, "weights_gib": weight_bytes / 2**30, "tok_s": bandwidth / weight_bytes}

    section("ceiling", ceiling)

    def run_graphs(bucket: int, attn: str, label: str) -> dict[str, Any]:
        model.set_attn_implementation(attn)
        fast = FastPath(model, compile=False, cuda_graphs=not args.smoke, bucket=bucket)
        try:

            def once() -> Any:
                return fast.generate(tok, [PROMPT] * 3, alphas, steer, settings, ignore_eos=True)

            once()
            times = [timed(once) for _ in range(args.repeats)]
            one = fast.generate(tok, [PROMPT], [0.0], steer, SamplingSettings(max_new_tokens=8), ignore_eos=True)
            del one
            prompt_len = len(
                tok(tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False))["input_ids"]
            )
            return {
                "label": label,
                "bucket": bucket,
                "attention": attn,
                "cache_length": fast.cache_length(prompt_len + args.tokens),
                "prompt_tokens": prompt_len,
                "tok_s_per_pane": args.tokens / median(times),
                "raw_s": times,
            }
        finally:
            fast.steering.remove()
            model.set_attn_implementation("sdpa")

    variants: list[dict[str, Any]] = []

    def variant_runs() -> dict[str, Any]:
        for bucket, attn in ((256, "sdpa"), (64, "sdpa"), (16, "sdpa"), (256, "eager"), (1024, "sdpa")):
            try:
                variants.append(run_graphs(bucket, attn, f"graphs bucket {bucket} {attn}"))
            except BaseException as exc:
                variants.append({"bucket": bucket, "attention": attn, "error": f"{type(exc).__name__}: {exc}"})
            print(variants[-1], flush=True)
        return {"runs": variants}

    section("graph_variants", variant_runs)

    def fused() -> dict[str, Any]:
        reference = FastPath(model, compile=False, cuda_graphs=not args.smoke, bucket=64)
        plain = reference.generate(tok, [PROMPT] * 3, alphas, steer, SamplingSettings(max_new_tokens=32)).token_ids
        reference.steering.remove()
        restore = fuse_projections(model)
        try:
            got = run_graphs(64, "sdpa", "graphs bucket 64 sdpa, fused qkv + gate/up")
            fast = FastPath(model, compile=False, cuda_graphs=not args.smoke, bucket=64)
            same = fast.generate(tok, [PROMPT] * 3, alphas, steer, SamplingSettings(max_new_tokens=32)).token_ids
            fast.steering.remove()
            got["first_32_tokens_equal_unfused_rows"] = [a == b for a, b in zip(same, plain)]
            return got
        finally:
            restore()

    section("fused_projections", fused)

    def pieces() -> dict[str, Any]:
        restore = compile_pieces("eager" if args.smoke else "inductor")
        try:
            start = time.perf_counter()
            got = run_graphs(256, "sdpa", "graphs + compiled RMSNorm / MLP / rotary (one-token steps)")
            got["first_run_incl_compile_s"] = time.perf_counter() - start
            fast = FastPath(model, compile=False, cuda_graphs=not args.smoke, bucket=256)
            same = fast.generate(tok, [PROMPT] * 3, alphas, steer, SamplingSettings(max_new_tokens=32)).token_ids
            fast.steering.remove()
        finally:
            restore()
        reference = FastPath(model, compile=False, cuda_graphs=not args.smoke, bucket=256)
        plain = reference.generate(tok, [PROMPT] * 3, alphas, steer, SamplingSettings(max_new_tokens=32)).token_ids
        reference.steering.remove()
        got["first_32_tokens_equal_plain_graphs_rows"] = [a == b for a, b in zip(same, plain)]
        return got

    section("compiled_pieces", pieces)
    if args.pieces_only:
        return 0

    def profile() -> dict[str, Any]:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([] if args.smoke else [ProfilerActivity.CUDA])
        n = 16
        result: dict[str, Any] = {"steps": n}
        for graphs in (False, True):
            fast = FastPath(model, compile=False, cuda_graphs=graphs and not args.smoke, bucket=64)
            try:
                fast.generate(tok, [PROMPT] * 3, alphas, steer, SamplingSettings(max_new_tokens=n), ignore_eos=True)
                if not args.smoke:
                    torch.cuda.synchronize()
                with torch_profile(activities=activities) as prof:
                    start = time.perf_counter()
                    fast.generate(tok, [PROMPT] * 3, alphas, steer, SamplingSettings(max_new_tokens=n), ignore_eos=True)
                    if not args.smoke:
                        torch.cuda.synchronize()
                    wall = time.perf_counter() - start
                events = prof.key_averages()
                name = "graphs" if graphs else "static_eager_steps"
                sort = "cpu_time_total" if args.smoke else "cuda_time_total"
                table = events.table(sort_by=sort, row_limit=30, max_name_column_width=70)
                (out / f"profile_{name}.txt").write_text(table)
                device_us = sum(
                    getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in events
                )
                kernels = sum(
                    e.count
                    for e in events
                    if getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CUDA")
                )
                result[name] = {
                    "wall_s": wall,
                    "device_time_s": device_us / 1e6,
                    "device_kernels": kernels,
                    "top": table.splitlines()[:40],
                }
            finally:
                fast.steering.remove()
        return result

    section("profile", profile)

    def logits() -> dict[str, Any]:
        def recorder(step: Callable[..., Any], store: list[torch.Tensor]) -> Callable[..., Any]:
            def call(**kwargs: Any) -> Any:
                output = step(**kwargs)
                store.append(output.logits[:, -1].float().clone())
                return output

            return call

        tokens = 64
        plan = dict(multipliers=alphas, steer=steer, settings=SamplingSettings(max_new_tokens=tokens), ignore_eos=True)
        eager_logits: list[torch.Tensor] = []
        eager = generate(model, tok, [PROMPT] * 3, decoder=EagerDecoder(model, recorder(model, eager_logits)), **plan)
        fast = FastPath(model, compile=False, cuda_graphs=not args.smoke, bucket=64)
        graph_logits: list[torch.Tensor] = []
        try:
            kwargs = fast.generate_kwargs()
            kwargs["decoder"] = fast.decoder(recorder(fast.decode_step, graph_logits))
            graphed = generate(model, tok, [PROMPT] * 3, **kwargs, **plan)
        finally:
            fast.steering.remove()
        rows = []
        for row in range(3):
            a, b = eager.token_ids[row], graphed.token_ids[row]
            part = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
            upto = part if part is not None else min(len(a), len(b))
            # logits of decoding step s predict token s + 1 (token 0 comes from the prefill)
            diffs = [float((e[row] - g[row]).abs().max()) for e, g in zip(eager_logits[:upto], graph_logits[:upto])]
            scale = float(eager_logits[0][row].abs().max())
            entry: dict[str, Any] = {
                "alpha": alphas[row],
                "first_differing_token": part,
                "max_abs_logit_diff_before": max(diffs) if diffs else 0.0,
                "mean_abs_logit_diff_before": sum(diffs) / max(len(diffs), 1),
                "logit_scale": scale,
            }
            if part is not None and part >= 1 and part - 1 < len(eager_logits):
                top = eager_logits[part - 1][row].topk(2).values
                entry["eager_top2_margin_at_split"] = float(top[0] - top[1])
                entry["logit_diff_at_split"] = float(
                    (eager_logits[part - 1][row] - graph_logits[part - 1][row]).abs().max()
                )
            rows.append(entry)
        return {"tokens": tokens, "rows": rows}

    section("logits_graphs_vs_eager", logits)
    if not args.smoke:
        report["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    report["total_s"] = time.perf_counter() - began
    (out / f"profile{args.tag}.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
