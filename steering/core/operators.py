"""The steering operators: ONE formula, `apply_steering`, used by the eager hooks (steering/core/hooks.py), the fast
path's persistent hooks (steering/decode/fast_path.py) and the evaluation (steering/evaluation/ab.py).

For a decoder block's output h (batch, seq, hidden), a vector v with unit direction u = v / |v| and
per-row tensors add, project, target (batch,):

    h' = h + active * (add * v + project * (target - h.u) * u)

where `active` (batch, seq) is 1 at the positions a row is steered (absolute position >= steer_from[row], and,
when the row has a finite `window`, position < steer_from[row] + window[row]; steering_active).

* add only (project = 0): Contrastive Activation Addition, h + multiplier * v (Rimsky et al. 2023,
  arXiv 2312.06681) -- bit for bit what this hook computed before the other operators existed.
* project = 1, target = t: projection clamp, the component of h along u is set to t (the rest of h is
  kept); a "projection cap" in published steering demos.
* project = 1, target = 0: directional ablation, the component along u is removed (Arditi et al. 2024,
  "Refusal in language models is mediated by a single direction", section 3).
* renorm = 1 (optional, per row): norm-preserving steering. After the step above, each steered position is
  rescaled to the norm it had before it, h'' = h' x |h| / |h'|: the direction moves, the hidden-state scale
  the next block expects is kept. Rotation-based steering keeps the norm the same way: Angular Steering
  (Vu & Nguyen 2025, arXiv 2510.26243) rotates h in the plane of the behavior direction, Householder
  pseudo-rotation (Pham & Nguyen 2024, EMNLP, arXiv 2409.10053) replaces h by a rotated vector of the same
  norm. With `add`, this is the recipe operator "add_norm". renorm = 0 leaves the result as above, exactly.

Everything is per row and branch-free (no data-dependent Python control flow), so the same arithmetic
compiles and is captured in CUDA graphs; a row with add = project = 0 is left exactly unchanged.

What happens at each steered layer is a SteeringPlan (steering/core/plan.py); steering.core.hooks
applies one with forward hooks.
"""

from __future__ import annotations

import torch

OPERATORS = ("add", "clamp", "ablate", "add_norm")


def unit_vector(vector: torch.Tensor) -> torch.Tensor:
    """u = v / |v| (computed in float32, returned in v's dtype); a zero vector gives a zero u (no projection).

    Args: vector (..., hidden). Returns: tensor of the same shape and dtype.
    """
    v = vector.detach().float()
    norm = v.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, v / norm.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(v)).to(
        vector.dtype
    )


def steering_active(
    positions: torch.Tensor, steer_from: torch.Tensor, dtype: torch.dtype, window: torch.Tensor | None = None
) -> torch.Tensor:
    """The (batch, seq) mask of steered positions: 1 where steer_from[row] <= position < steer_from[row] +
    window[row], else 0.

    CAA steers every position from the end of the instruction on (Rimsky et al. 2023, arXiv 2312.06681,
    section 3): window None or inf. A finite window steers only the end of the prompt and the first answer
    tokens, the positions where a refusal is decided (Qi et al. 2024, "Safety Alignment Should Be Made More
    Than Just a Few Tokens Deep", arXiv 2406.05946); steering at a few positions only, and letting attention
    carry the change on, is how Activation Addition applies its vectors (Turner et al. 2023, arXiv 2308.10248).

    Args: positions (batch or 1, seq) absolute token positions (the model's position_ids); steer_from
    (batch,) first steered position of each row; window (batch,) float number of positions steered from
    steer_from (inf: all of them; None: inf for every row). Returns: (batch, seq) tensor of `dtype`.
    """
    positions = positions.to(steer_from.device)
    active = positions >= steer_from[:, None]
    if window is not None:
        active = active & ((positions - steer_from[:, None]).float() < window.float()[:, None])
    return active.to(dtype)


def apply_steering(
    hidden: torch.Tensor,
    vector: torch.Tensor,
    unit: torch.Tensor,
    add: torch.Tensor,
    project: torch.Tensor,
    target: torch.Tensor,
    active: torch.Tensor,
    renorm: torch.Tensor | None = None,
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
        renorm: (batch,) 1: rescale each steered position of the row to its norm before steering
            (norm-preserving steering, see the module docstring), 0: not; None (default): no row is rescaled
            (the arithmetic is then exactly the formula above). Values in between move the norm part way.
    Returns: the steered (batch, seq, hidden) tensor, hidden's dtype. Rows with add = project = 0
    (and positions with active = 0) are returned exactly unchanged. The projection h.u is computed in
    float32, so a clamp is exact to float32 rounding even for a 16-bit model; norms and the rescaling
    factor are float32 too (a factor of exactly 1 where renorm or active is 0).
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
    out = steered + coef.to(dtype).unsqueeze(-1) * unit.to(dtype)
    if renorm is None:
        return out
    before = hidden.float().norm(dim=-1)  # (batch, seq): |h|
    after = out.float().norm(dim=-1)  # |h'|
    weight = renorm.float()[:, None] * active.float()  # (batch, seq): 0 leaves the position as it is
    factor = 1.0 + weight * (before / after.clamp(min=torch.finfo(torch.float32).tiny) - 1.0)
    return (out.float() * factor.unsqueeze(-1)).to(dtype)
