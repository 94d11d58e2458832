"""How the per-pair activations become one vector per layer (`method`, stored in the vector file):

* ``mean-diff`` (the paper's, the reference): mean over pairs of (positive - negative) (CAA, Rimsky et
  al. 2023, arXiv 2312.06681).
* ``pca``: the first principal component of the per-pair differences, uncentred (the same as PCA of
  the pair-centred activations: each side minus its pair's mean is +-d/2), as steering-vectors'
  ``pca_aggregator`` and repeng's ``pca_center`` compute it; sign fixed to agree with the mean
  difference, scaled to its norm.
* ``centered``: the first principal component of the mean-centred differences (each difference minus
  the mean difference: the direction in which the pairs differ most from one another, repeng's
  ``pca_diff`` with scikit-learn's centring); sign fixed to agree with the mean difference, scaled to
  its norm.

The fourth method, ``instructions``, does not use A/B pairs: steering.extract.instructions.
"""

from __future__ import annotations

import torch

PAIR_METHODS = ("mean-diff", "pca", "centered")  # aggregators of A/B pair activations
METHODS = PAIR_METHODS + ("instructions",)


def mean_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """CAA aggregation: mean over pairs of (behavior - not behavior)."""
    return (positive - negative).mean(dim=0)


def _first_component(rows: torch.Tensor) -> torch.Tensor:
    # the top right-singular vector of rows (n, hidden): the unit direction of largest uncentred variance
    _, _, vh = torch.linalg.svd(rows.double(), full_matrices=False)
    return vh[0].float()


def _sign_fixed(direction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # a principal component has no sign: point it the way the mean difference points, give it that norm
    sign = -1.0 if float(direction @ reference) < 0 else 1.0
    return sign * direction * reference.norm()


def pca_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """First principal component of the per-pair differences d_i = positive_i - negative_i (uncentred).

    The same direction as PCA of the pair-centred activations (positive_i - m_i = d_i / 2 and
    negative_i - m_i = -d_i / 2 with m_i the pair's mean): steering-vectors' ``pca_aggregator``, repeng's
    ``pca_center``. A component has no sign: it is flipped to agree with the mean difference and scaled
    to the mean difference's norm, so a multiplier means about the same as for ``mean_difference``.

    Args: positive, negative (pairs, hidden). Returns: (hidden,) float32.
    """
    diffs = (positive - negative).float()
    return _sign_fixed(_first_component(diffs), diffs.mean(dim=0))


def centered_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """First principal component of the mean-centred differences d_i - mean(d).

    The direction in which the pairs' differences vary most around their mean (repeng's ``pca_diff``,
    whose scikit-learn PCA centres the data). Sign flipped to agree with the mean difference and scaled
    to its norm (see pca_difference). Needs at least 2 pairs (one centred difference is zero).

    Args: positive, negative (pairs, hidden). Returns: (hidden,) float32.
    Raises: ValueError with fewer than 2 pairs.
    """
    diffs = (positive - negative).float()
    if diffs.shape[0] < 2:
        raise ValueError(f"the centered method needs at least 2 pairs, got {diffs.shape[0]}")
    mean = diffs.mean(dim=0)
    return _sign_fixed(_first_component(diffs - mean), mean)


def aggregate(positive: torch.Tensor, negative: torch.Tensor, method: str = "mean-diff") -> torch.Tensor:
    """One vector from per-pair activations (pairs, hidden) by `method` (one of PAIR_METHODS)."""
    if method == "mean-diff":
        return mean_difference(positive, negative)
    if method == "pca":
        return pca_difference(positive, negative)
    if method == "centered":
        return centered_difference(positive, negative)
    raise ValueError(f"unknown aggregation method {method!r} (expected one of {', '.join(PAIR_METHODS)})")
