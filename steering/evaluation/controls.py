"""Controls for a steering vector: a random direction of the same norm, and the negated vector."""

from __future__ import annotations

import torch


def random_like(vector: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random direction (seeded Gaussian) with the same L2 norm as `vector`."""
    generator = torch.Generator().manual_seed(int(seed))
    direction = torch.randn(vector.shape[-1], generator=generator, dtype=torch.float32)
    return direction / direction.norm() * vector.detach().float().cpu().norm()


def control_vectors(vector: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The vector and its controls: 'random' (same norm, seeded) and 'negated' (-vector)."""
    v = vector.detach().float().cpu()
    return {"vector": v, "random": random_like(v, seed), "negated": -v}
