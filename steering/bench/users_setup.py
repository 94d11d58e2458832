"""`bench --users`: what the users bench (users.run_users) runs on, the configured model and its behavior's vectors
or, with --synthetic-7b, the random Llama-2-7B-shaped fp16 model on the GPU; optionally the fast path's static
batch (`--fast-path`, `--compile`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from steering.bench.common import log
from steering.bench.cpu import vector_for
from steering.bench.machine import machine_info
from steering.bench.users import TARGETS, run_users
from steering.config import ModelSettings
from steering.synthetic import LLAMA2_7B, TINY, make_byte_tokenizer, random_llama

# torch and the model code are imported inside the functions (lazy), so `steering bench --help` stays fast.


def run_users_bench(args: Any, config: dict[str, Any], engine_factory: Any) -> dict[str, Any]:
    """`bench --users N ...`: the users table on the configured model, or (--synthetic-7b) on the random
    Llama-2-7B-shaped fp16 model on the GPU. Returns machine, model, steering and `users` (run_users)."""
    import torch

    results: dict[str, Any] = {"machine": machine_info(), "targets": TARGETS}
    if args.threads:
        from steering.device import set_threads

        set_threads(args.threads)
    if args.synthetic_7b:
        lm = synthetic_lm(args.layers_7b)
        layer, multiplier = min(13, lm.num_layers - 1), 4.0
        generator = torch.Generator().manual_seed(0)
        base = torch.randn(lm.hidden_size, generator=generator) * 0.5

        def vector_for_layer(layer: int) -> torch.Tensor:
            return base

        results["model"] = {"name": lm.name, "layers": lm.num_layers, "device": str(lm.device)}
        results["steering"] = {"layer": layer, "multiplier": multiplier, "vector": "random, norm ~11"}
    else:
        engine = engine_factory(args, config)
        lm = engine.lm
        behavior = args.behavior or config.behavior
        _, layer, kind = vector_for(engine, behavior)
        multiplier = engine.defaults.multiplier

        def vector_for_layer(layer: int) -> torch.Tensor:
            return _layer_vector(engine, behavior, layer)

        results["model"] = lm.describe()
        results["steering"] = {
            "layer": layer,
            "multiplier": multiplier,
            "vector": kind,
        }
    fast = None
    if getattr(args, "fast_path", False):
        from steering.decode.fast_path_setup import enable_fast_path

        compiled = bool(getattr(args, "compile", False))  # --compile: the buckets of 3 x N rows compiled first
        fast = getattr(lm, "fast_path", None) or enable_fast_path(lm, compiled, batch_buckets=(), generate_batches=())
        if fast.batch_steps is not None:
            results["steering"]["compile_s"] = round(fast.batch_steps.warm_rows([3 * n for n in args.users]), 1)
    results["steering"]["scheduler"] = "eager" if fast is None else "fast path (static cache)"
    results["users"] = run_users(
        lm, args.users, args.tokens, vector_for_layer, layer, multiplier, repeats=args.repeats or 3, fast_path=fast
    )
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _layer_vector(engine: Any, behavior: str, layer: int) -> Any:
    import torch

    try:
        return engine.vectors_for(behavior).vector(layer)
    except Exception:  # no vectors: a random direction at 10% of the hidden norm
        generator = torch.Generator().manual_seed(layer)
        vector = torch.randn(engine.lm.hidden_size, generator=generator)
        return vector / vector.norm() * 0.1 * engine.hidden_norm(layer)


def synthetic_lm(layers: int, tiny_cpu: bool = False) -> Any:
    """The random Llama-2-7B-shaped fp16 model on the GPU as a LoadedModel (byte-level chat tokenizer);
    tiny_cpu: a tiny float32 model of the same layout on the CPU (the tests check the code path with it)."""
    import torch

    from steering.models import LoadedModel

    if not tiny_cpu and not torch.cuda.is_available():
        raise SystemExit("--users with --synthetic-7b needs a CUDA GPU")
    shape = replace(TINY if tiny_cpu else LLAMA2_7B, layers=layers)
    device, dtype = ("cpu", torch.float32) if tiny_cpu else ("cuda", torch.float16)
    log(f"building a random Llama-2-7B-shaped model ({layers} layers, {dtype}) on {device}")
    model = random_llama(shape, device, dtype)  # no EOS: fixed lengths
    return LoadedModel(
        model=model,
        tokenizer=make_byte_tokenizer(),
        name="synthetic-llama-2-7b",
        slug="synthetic",
        dtype=dtype,
        device=torch.device(device),
        quantization=None,
        num_layers=layers,
        hidden_size=shape.hidden,
        load_seconds=0.0,
        settings=ModelSettings(name="synthetic"),
    )
