"""Evaluating a steering vector: the paper's A/B measure over layers x multipliers, open-ended answers
(refusal rate and coherence) over multipliers, and controls (a random vector of the same norm, the
negated vector).

Modules, one job each (every public name is re-exported here, so `from steering.evaluation import X`
works as before; imported on first use, so importing one module of this package, e.g. refusal, does not
import torch):
  ab          the A/B measure (Rimsky et al. 2023, section 4): the batched prefix-cached probabilities,
              ab_sweep (the app's Calibrate tab)
  ab_prompt   the A/B questions tokenized for the measure, split where steering starts
  controls    random_like, control_vectors
  open_ended  answers over multipliers scored for refusal and coherence, summaries, breakdown
  coherence   answer_nll: the unsteered model's per-token NLL of an answer
  plots       heatmap, A/B curves, open-ended panels, cosine per layer, save_figure
  run         one behavior's `evaluate` run: sweep, answers, controls, reliability, its files; its parts
              run_setup (what it steers with, settled first), ab_run (the A/B sweep and its files),
              open_ended_run (the open-ended answers and their files)
  summary     the Markdown of `evaluate` (summary.md, behaviors.md)
  tune        the recipe search of `tune` (a package: space, scoring, cache, search, record)

The functions the app can call: ab_sweep, plot_heatmap, cosine_plot (and plot_ab_curves,
plot_open_ended for the other figures).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {  # public name -> the module that defines it
    "ABPrompt": "ab_prompt",
    "ABResult": "ab",
    "ab_prompts": "ab_prompt",
    "ab_probabilities": "ab",
    "ab_sweep": "ab",
    "random_like": "controls",
    "control_vectors": "controls",
    "Answer": "open_ended",
    "answer_nll": "coherence",
    "open_ended_answers": "open_ended",
    "summarize_answers": "open_ended",
    "breakdown_multiplier": "open_ended",
    "plot_heatmap": "plots",
    "plot_ab_curves": "plots",
    "plot_open_ended": "plots",
    "cosine_plot": "plots",
    "save_figure": "plots",
}
__all__ = [
    "ABPrompt",
    "ABResult",
    "ab_prompts",
    "ab_probabilities",
    "ab_sweep",
    "random_like",
    "control_vectors",
    "Answer",
    "answer_nll",
    "open_ended_answers",
    "summarize_answers",
    "breakdown_multiplier",
    "plot_heatmap",
    "plot_ab_curves",
    "plot_open_ended",
    "cosine_plot",
    "save_figure",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from steering.evaluation.ab import ABResult, ab_probabilities, ab_sweep
    from steering.evaluation.ab_prompt import ABPrompt, ab_prompts
    from steering.evaluation.coherence import answer_nll
    from steering.evaluation.controls import control_vectors, random_like
    from steering.evaluation.open_ended import Answer, breakdown_multiplier, open_ended_answers, summarize_answers
    from steering.evaluation.plots import cosine_plot, plot_ab_curves, plot_heatmap, plot_open_ended, save_figure


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steering.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"steering.evaluation.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
