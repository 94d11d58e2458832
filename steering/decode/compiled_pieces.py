"""The CUDA-graph path's opt-in compiled pieces: each decoder block's RMSNorm and MLP run one-token steps through
one compiled forward per class (CompiledPieces; used by fast_path.FastPath(compile_pieces=True))."""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from steering.core.layers import decoder_layers

log = logging.getLogger(__name__)


class CompiledPieces:
    """The small per-block pieces of the decoding step compiled, for the CUDA-graph path: each decoder block's
    RMSNorm and MLP modules (classes named *RMSNorm / *MLP: Llama, Mistral, Qwen2, Gemma ...) run one-token
    steps through one compiled forward per class, shared by every block.

    A CUDA-graph step replays about 1,700 kernels on the 7B shape, and the ~1,500 small elementwise ones
    (RMSNorm's pow / mean / rsqrt / mul, SiLU x up) cost 1-3 us each whatever their size. Fused by inductor
    they take a fraction of that: on an H200 the default path went from 134 to 173 tok/s per pane (with the
    rotary embedding compiled too; results/bench/gpu-h200-profile.md), after about 10 s of compiling on the
    first request instead of a minute and a half for the whole model (H200, norms and MLP only: 154 tok/s
    per pane). Off by default: in fp16 the compiled reductions differ in the last bits with the batch size,
    so `steering test` answers at --batch-size 1 (3 rows) and 4 (12 rows) parted at near-ties of a random
    model on the H200 (scripts/gpu_check.py), which the plain CUDA-graph path passes. No inductor CUDA graphs (the
    CudaGraphSteps capture the whole step, compiled kernels included), no recompile per block (the module is
    an argument). Prompts (more than one position) run the plain forward. A compiler failure (no Triton, say)
    is logged once and the plain forward is used from then on.
    """

    SUFFIXES = ("RMSNorm", "MLP")

    def __init__(self, model: Any, backend: str = "inductor") -> None:
        self.backend = backend
        self.failed = False
        self.compiled: dict[type, Callable[..., Any]] = {}
        self.patched: list[Any] = []
        for block in decoder_layers(model):
            for module in block.modules():
                cls = type(module)
                if cls.__name__.endswith(self.SUFFIXES) and "forward" not in vars(module):
                    if cls not in self.compiled:
                        self.compiled[cls] = torch.compile(cls.forward, backend=backend, dynamic=False)
                    module.forward = self._forward(module, cls.forward, self.compiled[cls])
                    self.patched.append(module)

    def _forward(self, module: Any, plain: Callable[..., Any], compiled: Callable[..., Any]) -> Callable[..., Any]:
        def forward(hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not self.failed and hidden.dim() == 3 and hidden.shape[1] == 1:
                try:
                    return compiled(module, hidden, *args, **kwargs)
                except Exception as exc:  # noqa: BLE001 -- no compiler here: the plain forward, as before
                    self.failed = True
                    log.warning("compiled RMSNorm / MLP off, plain forward: %s: %s", type(exc).__name__, exc)
            return plain(module, hidden, *args, **kwargs)

        return forward

    def remove(self) -> None:
        """Give every patched module its class forward back."""
        for module in self.patched:
            vars(module).pop("forward", None)
        self.patched = []
