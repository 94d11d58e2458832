"""Float32 linear layers for CPU decoding steps, written the way MKL runs them at memory speed.

A decoding step multiplies every weight matrix by one activation row per conversation. On the CPU,
float32 `F.linear(x, W)` with 2-4 rows takes 2-3x as long as with one row (MKL's small-M GEMM path),
while the same product written `(W @ x.T).T` streams each weight once, whatever the row count. A single
row goes through the two-column product too (the row twice): MKL's GEMV streams the weights slower.

Measured on the 2-core AMD EPYC (MKL 2024.2, 1 thread), all SmolLM2-135M weights once per step:
1 / 2 / 3 / 4 rows took 46 / 69 / 90 / 60 ms with F.linear and 28 / 28 / 44 / 46 ms this way;
from 6 rows on F.linear is as fast or faster, so prompts (many rows) keep it. See `python -m steering bench`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

MAX_ROWS = 4


class FewRowLinear(nn.Linear):
    """nn.Linear whose forward computes (W @ x.T).T for inputs of at most MAX_ROWS rows.

    Same parameters, same state dict: a model's nn.Linear modules are switched by changing their class.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b, as (W @ x.T).T when x has 1..MAX_ROWS rows on the CPU in the weight's dtype.

        Args:
            x: (..., in_features) tensor; rows = its size without the last dimension.

        Returns:
            (..., out_features) tensor, contiguous; other inputs (more rows, another dtype or device) go through
            nn.Linear.forward unchanged.
        """
        rows = x.numel() // x.shape[-1] if x.dim() >= 1 and x.shape[-1] else 0
        if not 1 <= rows <= MAX_ROWS or x.dtype != self.weight.dtype or x.device.type != "cpu":
            return super().forward(x)
        flat = x.reshape(rows, x.shape[-1])
        if rows == 1:
            flat = torch.cat([flat, flat])
        # contiguous: attention's fused CPU kernel needs a unit last stride, or it falls back to a slow path
        out = torch.mm(self.weight, flat.t()).t()[:rows].contiguous()
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], out.shape[-1])


def _plain_float32_cpu_linears(model: nn.Module) -> Iterator[nn.Linear]:
    for module in model.modules():  # exact type: 8-/4-bit layers subclass nn.Linear and keep their own forward
        if type(module) is nn.Linear and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu":
            yield module


def use_few_row_linear(model: nn.Module) -> int:
    """Switch the model's plain float32 CPU nn.Linear modules to FewRowLinear; returns how many."""
    modules = list(_plain_float32_cpu_linears(model))
    for module in modules:
        module.__class__ = FewRowLinear
    return len(modules)


@contextmanager
def standard_linear(model: Any) -> Iterator[int]:
    """Run the model with plain nn.Linear inside the block (the benchmark's comparison); restored after."""
    switched: list[nn.Module] = [module for module in model.modules() if type(module) is FewRowLinear]
    for module in switched:
        module.__class__ = nn.Linear
    try:
        yield len(switched)
    finally:
        for module in switched:
            module.__class__ = FewRowLinear
