"""Choosing and setting up a LoadedModel's fast path (fast_path.FastPath): whether its weights allow CUDA graphs
and the compiler (one GPU, 16/32 bits), and enable_fast_path, which makes, warms up and keeps `lm.fast_path`
(the Engine's warm_up and `bench --users --fast-path` call it).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from steering.decode.fast_path import FastPath

__all__ = ["enable_fast_path", "graphs_supported", "model_devices"]

log = logging.getLogger(__name__)


def model_devices(model: Any) -> set[str]:
    """The devices a model's weights sit on: its accelerate `hf_device_map` values (a `device_map` load),
    else the device of its first parameter. E.g. {"0", "1"} for a model split over two GPUs."""
    mapping = getattr(model, "hf_device_map", None)
    if isinstance(mapping, dict) and mapping:
        return {str(device) for device in mapping.values()}
    param = next(iter(model.parameters()), None)
    return {str(param.device)} if param is not None else set()


def graphs_supported(lm: Any) -> bool:
    """CUDA graphs and the compiler: a CUDA model in 16/32 bits (bitsandbytes layers sync with the host) on one
    GPU (a model split over several GPUs by `device_map` runs the eager path: the fast path keeps its steering
    tensors and graphs on one device)."""
    return lm.device.type == "cuda" and lm.quantization is None and len(model_devices(lm.model)) <= 1


def enable_fast_path(
    lm: Any,
    compile: bool = True,
    backend: str | None = None,
    batch_buckets: Sequence[int] = (4,),
    generate_batches: Sequence[int] = (3, 1),
) -> FastPath:
    """The LoadedModel's FastPath (made, warmed up and kept as `lm.fast_path` on the first call).

    Used by the Engine: `model.compile` true gives static cache + torch.compile with
    `model.compile_backend` (default inductor, with CUDA graphs). Inductor is used on CUDA with a
    16/32-bit model only; elsewhere it is skipped (logged): static cache and persistent hooks only,
    which give the same tokens as the eager path. A lighter backend ("eager": graph capture without code
    generation, "aot_eager") compiles anywhere, e.g. for tests on the CPU. `compile=False` (the Engine's
    default on CUDA, `model.cuda_graphs`) replays CUDA graphs of the eager decoding step, captured on
    first use. A second Engine on the same model reuses its fast path (one set of hooks per model); a
    different setting replaces it (the old hooks are removed). Compiled, the static batch's step is compiled at
    start for `batch_buckets` rows (compiled_batch.py), FastPath.generate for `generate_batches` (inductor).
    """
    backend = backend or getattr(lm.settings, "compile_backend", None) or "inductor"
    one_device = len(model_devices(lm.model)) <= 1
    plain_ok = lm.quantization is None and one_device
    use_compiler = compile and (graphs_supported(lm) if backend == "inductor" else plain_ok)
    if compile and not use_compiler:
        log.warning(
            "model.compile: torch.compile with %s is used on CUDA with a 16/32-bit model only; "
            "running %s with a static cache, without the compiler",
            backend,
            lm.describe(),
        )
    cuda_graphs = not compile and graphs_supported(lm)
    existing = getattr(lm, "fast_path", None)
    if existing is not None:
        if (existing.compiled, existing._backend, existing.graphs is not None) == (use_compiler, backend, cuda_graphs):
            return existing
        existing.steering.remove()
    lm.fast_path = None
    fast = FastPath(lm.model, compile=use_compiler, backend=backend, cuda_graphs=cuda_graphs)
    try:
        with lm.lock:
            if use_compiler and backend == "inductor":  # a minute of compiling before the first user, not during
                fast.warm_up(lm.tokenizer, generate_batches)
            if fast.batch_steps is not None:  # the scheduler's batch buckets, compiled before the first user
                fast.batch_steps.warm_up(batch_buckets, (fast.bucket,))
    except BaseException:
        fast.steering.remove()  # no hooks left behind on the model
        raise
    lm.fast_path = fast
    return fast
