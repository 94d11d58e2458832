"""The steering operators: ONE formula, `apply_steering`, used by the eager hooks (steering/core/hooks.py), the fast
path's persistent hooks (steering/decode/fast_path.py) and the evaluation (steering/evaluation/ab.py).

For a decoder block's output h (batch, seq, hidden), a vector v with unit direction u = v / |v| and
per-row tensors add, project, target (batch,):

    h' = h + active * (add * v + project * (target - h.u) * u)

where `active` (batch, seq) is 1 at the positions a row is steered (absolute position >= steer_from[row]).

* add only (project = 0): Contrastive Activation Addition, h + multiplier * v (Rimsky et al. 2023,
  arXiv 2312.06681) -- bit for bit what this hook computed before the other operators existed.
* project = 1, target = t: projection clamp, the component of h along u is set to t (the rest of h is
  kept); a "projection cap" in published steering demos.
* project = 1, target = 0: directional ablation, the component along u is removed (Arditi et al. 2024,
  "Refusal in language models is mediated by a single direction", section 3).

Everything is per row and branch-free (no data-dependent Python control flow), so the same arithmetic
compiles and is captured in CUDA graphs; a row with add = project = 0 is left exactly unchanged.

What happens at each steered layer is a SteeringPlan (steering/core/plan.py); steering.core.hooks
applies one with forward hooks.
"""

from __future__ import annotations

import torch

OPERATORS = ("add", "clamp", "ablate")


def unit_vector(vector: torch.Tensor) -> torch.Tensor:
    """u = v / |v| (computed in float32, returned in v's dtype); a zero vector gives a zero u (no projection).

    Args: vector (..., hidden). Returns: tensor of the same shape and dtype.
    """
    v = vector.detach().float()
    norm = v.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, v / norm.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(v)).to(
        vector.dtype
    )


def steering_active(positions: torch.Tensor, steer_from: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The (batch, seq) mask of steered positions: 1 where positions >= steer_from[row], else 0.

    Args: positions (batch or 1, seq) absolute token positions (the model's position_ids); steer_from
    (batch,) first steered position of each row. Returns: (batch, seq) tensor of `dtype`.
    """
    return (positions.to(steer_from.device) >= steer_from[:, None]).to(dtype)


def apply_steering(
    hidden: torch.Tensor,
    vector: torch.Tensor,
    unit: torch.Tensor,
    add: torch.Tensor,
    project: torch.Tensor,
    target: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """h' = h + active * (add * v + project * (target - h.u) * u), per row; see the module docstring.

    Args:
        hidden: (batch, seq, hidden) a block's output.
        vector: (hidden,) the steering vector v, in hidden's dtype and device; or (batch, hidden), one vector
            per row (the static-cache scheduler's rows of several users in one batch).
        unit: u = v / |v| (unit_vector(v)), v's shape, dtype and device.
        add: (batch,) multiple of v added (CAA multiplier), hidden's dtype.
        project: (batch,) 0 or 1 (or in between: a partial move toward the target), any float dtype.
        target: (batch,) the value the component along u is moved to, in hidden-state units.
        active: (batch, seq) 1 at steered positions, 0 elsewhere (steering_active).
    Returns: the steered (batch, seq, hidden) tensor, hidden's dtype. Rows with add = project = 0
    (and positions with active = 0) are returned exactly unchanged. The projection h.u is computed in
    float32, so a clamp is exact to float32 rounding even for a 16-bit model.
    """
    dtype = hidden.dtype  # the output keeps hidden's dtype whatever the per-row tensors are (no-op casts in the hooks)
    scale = (add.to(dtype)[:, None] * active.to(dtype)).unsqueeze(-1)  # (batch, seq, 1); the CAA term first, as before
    if vector.dim() == 2:  # one vector per row: (batch, 1, hidden), h.u row by row
        vector, unit = vector[:, None, :], unit[:, None, :]
        along = torch.matmul(hidden.float(), unit.float().transpose(-1, -2)).squeeze(-1)  # (batch, seq)
    else:
        along = torch.matmul(hidden.float(), unit.float())  # (batch, seq): h.u
    steered = hidden + scale * vector.to(dtype)
    coef = project.float()[:, None] * (target.float()[:, None] - along) * active.float()
    return steered + coef.to(dtype).unsqueeze(-1) * unit.to(dtype)
