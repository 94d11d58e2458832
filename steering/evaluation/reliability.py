"""Per-prompt reliability of a steering vector (Tan et al. 2024, "Analyzing the generalization and
reliability of steering vectors", arXiv 2407.12404, section 3: per-example steerability).

For every test prompt, the steerability is the least-squares slope of the behavior score against the
multiplier alpha: the score is refusal yes (1) / no (0) of the open-ended answer, or p(matching
letter) of an A/B question. A mean slope > 0 means the vector moves the behavior as meant; a prompt
with slope < 0 moves the wrong way. Tan et al. find that for many behaviors a large share of prompts
does, which the mean alone hides; so `evaluate` reports the share of wrong-way prompts with a Wilson
95% confidence interval (Wilson 1927: the score interval of a binomial proportion, good for small n
and shares near 0 or 1), and the histogram of slopes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from steering.errors import SteeringError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def slopes(multipliers: Sequence[float], scores: Any) -> np.ndarray:
    """Per-prompt least-squares slope of the score against the multiplier.

    Args:
        multipliers: (m,) the alphas, at least two distinct values.
        scores: (prompts, m) the behavior score of each prompt at each alpha (NaN = missing; a prompt
            is fitted on its finite scores, NaN when fewer than two distinct alphas are left).
    Returns: (prompts,) slope of each prompt, in score units per unit alpha.
    Raises: SteeringError when the shapes disagree or the multipliers are all the same.
    """
    x = np.asarray(multipliers, dtype=float)
    y = np.asarray(scores, dtype=float)
    if y.ndim != 2 or y.shape[1] != x.shape[0]:
        raise SteeringError(
            f"reliability: scores of shape {y.shape} for {x.shape[0]} multipliers (expected prompts x multipliers)"
        )
    if len(set(x.tolist())) < 2:
        raise SteeringError("reliability: the slope needs at least two different multipliers")
    out = np.full(y.shape[0], np.nan)
    for i, row in enumerate(y):
        ok = np.isfinite(row)
        xs, ys = x[ok], row[ok]
        if len(set(xs.tolist())) < 2:
            continue
        xc = xs - xs.mean()
        out[i] = float(np.dot(xc, ys - ys.mean()) / np.dot(xc, xc))
    return out


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (default 95%).

    Args: successes k, trials n (k <= n), z the normal quantile. Returns (low, high) in [0, 1];
    (0, 1) for n = 0.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise SteeringError(f"reliability: {successes} of {n} is not a proportion")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Reliability:
    """Summary of per-prompt slopes (prompts without a slope are left out of every number)."""

    measure: str  # what the score is, e.g. "refusal (open-ended)"
    multipliers: list[float]
    n: int  # prompts with a slope
    mean_slope: float
    median_slope: float
    wrong_way: int  # prompts with slope < 0
    wrong_way_share: float
    wrong_way_ci: tuple[float, float]  # Wilson 95%
    flat: int  # prompts with slope exactly 0 (e.g. never refuses at any alpha)
    slopes: list[float]

    def to_dict(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict (the Wilson interval as a list)."""
        data = asdict(self)
        data["wrong_way_ci"] = list(self.wrong_way_ci)
        return data


def summarize(multipliers: Sequence[float], scores: Any, measure: str) -> Reliability:
    """Slopes of every prompt (see `slopes`) and their summary: mean, median, wrong-way share + CI."""
    s = slopes(multipliers, scores)
    valid = s[np.isfinite(s)]
    if valid.size == 0:
        raise SteeringError(f"reliability ({measure}): no prompt has scores at two different multipliers")
    wrong = int((valid < 0).sum())
    return Reliability(
        measure,
        [float(m) for m in multipliers],
        int(valid.size),
        float(valid.mean()),
        float(np.median(valid)),
        wrong,
        wrong / valid.size,
        wilson_interval(wrong, int(valid.size)),
        int((valid == 0).sum()),
        [round(float(v), 6) for v in s],
    )


def open_ended_scores(answers: Sequence[Any], variant: str = "vector") -> tuple[list[float], list[str], np.ndarray]:
    """(multipliers, questions, refusal 0/1 matrix) from evaluation.Answer objects of one variant
    (the multiplier-0 answers, shared by every variant, included)."""
    rows = [a for a in answers if a.variant == variant or a.multiplier == 0]
    multipliers = sorted({float(a.multiplier) for a in rows})
    questions = list(dict.fromkeys(a.question for a in rows))
    qi = {q: i for i, q in enumerate(questions)}
    mi = {m: j for j, m in enumerate(multipliers)}
    scores = np.full((len(questions), len(multipliers)), np.nan)
    for a in rows:
        scores[qi[a.question], mi[float(a.multiplier)]] = 1.0 if a.refusal else 0.0
    return multipliers, questions, scores


def plot_histograms(results: Mapping[str, Reliability], title: str | None = None) -> Figure:
    """One histogram of per-prompt slopes per measure, the wrong-way side (slope < 0) shaded."""
    from matplotlib.figure import Figure  # lazy: matplotlib loads only when a plot is drawn

    fig = Figure(figsize=(5.2 * max(1, len(results)), 3.6), layout="constrained")
    axes = fig.subplots(1, max(1, len(results)), squeeze=False)[0]
    for ax, (name, rel) in zip(axes, results.items()):
        values = np.asarray([v for v in rel.slopes if v is not None and math.isfinite(v)])
        span = float(np.max(np.abs(values))) if values.size and np.max(np.abs(values)) > 0 else 1.0
        bins = np.linspace(-span, span, 21)
        ax.hist(values, bins=bins, color="C0", edgecolor="white")
        ax.axvspan(-span, 0, color="C3", alpha=0.08)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.axvline(rel.mean_slope, color="C1", linestyle="--", linewidth=1.2, label=f"mean {rel.mean_slope:+.3f}")
        low, high = rel.wrong_way_ci
        ax.set_title(
            f"{name}: wrong way {rel.wrong_way}/{rel.n} = {rel.wrong_way_share:.0%} (95% CI {low:.0%}–{high:.0%})",
            fontsize=9,
        )
        ax.set_xlabel(f"slope of {rel.measure} per unit α")
        ax.set_ylabel("prompts")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def markdown(results: Mapping[str, Reliability]) -> list[str]:
    """Summary lines for summary.md."""
    lines = [
        "",
        "## Per-prompt reliability (Tan et al. 2024)",
        "",
        "Steerability = least-squares slope of the behavior score against α, per prompt; wrong way = "
        "slope < 0 (share with a Wilson 95% confidence interval); flat = slope 0.",
        "",
        "| measure | prompts | α values | mean slope | median slope | wrong way | 95% CI | flat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        low, high = r.wrong_way_ci
        lines.append(
            f"| {name} ({r.measure}) | {r.n} | {', '.join(f'{m:g}' for m in r.multipliers)} | "
            f"{r.mean_slope:+.4f} | {r.median_slope:+.4f} | {r.wrong_way} ({r.wrong_way_share:.0%}) | "
            f"{low:.0%}–{high:.0%} | {r.flat} |"
        )
    lines += ["", "Plot: `reliability.png` (histogram of the per-prompt slopes)."]
    return lines
