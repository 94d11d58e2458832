"""The recipe search of `python -m steering tune` (its command line: steering/cli/tune.py): method x layer(s) x
operator x strength, on a tuning split of open-ended questions (never the test set); the winner goes into the
per-model defaults file vectors/<behavior>/<model-slug>.defaults.json (steering.core.recipe).

How a setting is scored
    A setting is a Recipe (vector file, anchor layer, band, operator of the added side, operator of
    the subtracted side, strength, unit). Its added rows (+strength) and subtracted rows (-strength)
    answer every tuning question (greedy, --max-new-tokens). Per side: the open-ended refusal rate
    (steering.evaluation.refusal.RefusalDetector, config evaluation.refusal_phrases), the mean distinct-3 share
    and the unsteered model's perplexity of the answers (exp of the median per-answer NLL,
    steering.evaluation.answer_nll), against the unsteered answers' values.
      contrast = refusal(added) - refusal(subtracted)
      coherent = on both sides distinct-3 >= 0.85 x unsteered and perplexity <= 3 x unsteered
                 (evaluation.breakdown_multiplier's rule; --min-distinct, --max-perplexity)
                 and the share of looping answers (refusal.is_loop) at most 0.10 above the unsteered
                 answers' share (--max-loops; a mean distinct-3 can hide a few answers that repeat one
                 phrase to the end, which a reader sees at once)
      score    = contrast - 2 x sum over sides of max(0, 0.85 - distinct ratio)
                          - sum over sides of max(0, perplexity ratio - 3) / 3
                          - sum over sides of max(0, loop share over unsteered - 0.10)
      margin   = the smallest relative slack to the coherence limits over both sides and both measures,
                 min(distinct ratio / min_distinct - 1, 1 - perplexity ratio / max_perplexity)
                 (< 0: over a limit)
    The winner is the coherent setting with the highest score; equal scores go to the larger coherence
    margin (the setting further from breaking down), then the smaller strength. When no setting is
    coherent: the highest score, with a warning.
    Separate subtracted-side strengths (--minus-strengths): every added-side strength is paired with every
    subtracted-side one (the recipe's `strength_minus`); without it both sides use the same strength.
    Subtracted-side windows (--minus-windows 8 all): every subtracted-side job is also run steering only the
    first N positions from the end of the instruction (the recipe's `minus_window`; 'all' = every position, CAA).
    Demo prompts (--demo "What's your favorite planet?"): the winner must also show the contrast on them at a
    glance -- added answer judged a refusal, subtracted not, neither looping (distinct-3 >= 0.75) -- when any
    coherent setting does (steering.evaluation.tune.demo); they pick among settings, they do not score them.
    Several question files (--questions A B, e.g. the tuning split and its casual part): each file is a
    group, scored on its own against its own unsteered answers; a setting is coherent only when it is
    coherent on every group, and its contrast, score and margin are the smallest over the groups (a
    recipe has to work for every style of question, not on average). The rows' refusal / distinct-3 /
    perplexity columns are over all questions.
    The table's "loops + / −" column is the share of each side's answers that loop on their own
    (steering.evaluation.refusal.is_loop), the measure --max-loops limits.

Cost
    The two sides are independent: the added rows depend on (vector, layers, plus operator, +strength)
    only, the subtracted ones on (vector, layers, minus operator, -strength) (ablation not on the
    strength at all), so each "side job" is generated once and shared by every setting that uses it.
    Rows of many jobs run in one generate() call (one SteeringPlan, per-row operators; jobs that would
    need two different vectors at one layer go to different calls), whole jobs per call.

Resumable
    Each finished side job is written (atomically) to a JSON cache next to the output
    (<model-slug>.tune-cache.json); a rerun with the same model, questions, answer length and system
    prompt skips the jobs already there. A different context starts a new cache.

Modules, one job each (every public name is re-exported here):
  space    the search space: vector sources, settings, the side jobs they share (side_jobs)
  scoring  one setting's score from its sides' metrics, the ranking, several question groups in one
           ranking, the winner's Recipe, the Markdown report
  cache    the resumable state: finished side jobs in a JSON file, keyed by what the answers depend on
  search   run_tune: generate the pending side jobs in batches, score and rank every setting
  record   what the defaults file records of the search besides the recipe
  demo     --demo: the prompts a demo shows first as a condition on the winner (demo-ready settings)
"""

from __future__ import annotations

from steering.evaluation.tune.cache import CACHE_VERSION, load_cache, questions_hash, save_cache
from steering.evaluation.tune.demo import apply_demo, demo_summary, demo_verdict
from steering.evaluation.tune.record import defaults_record
from steering.evaluation.tune.scoring import (
    TuneResult,
    choose_winner,
    combine_groups,
    pooled_metrics,
    rank_key,
    rejudge,
    report_markdown,
    score_setting,
    side_metrics,
    winner_recipe,
)
from steering.evaluation.tune.search import run_tune
from steering.evaluation.tune.space import (
    DEFAULT_STRENGTHS,
    OPERATORS,
    SearchSpace,
    Setting,
    SideJob,
    VectorSource,
    side_jobs,
)

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_STRENGTHS",
    "OPERATORS",
    "SearchSpace",
    "Setting",
    "SideJob",
    "TuneResult",
    "VectorSource",
    "apply_demo",
    "choose_winner",
    "combine_groups",
    "defaults_record",
    "demo_summary",
    "demo_verdict",
    "load_cache",
    "pooled_metrics",
    "questions_hash",
    "rank_key",
    "report_markdown",
    "run_tune",
    "save_cache",
    "score_setting",
    "side_jobs",
    "rejudge",
    "side_metrics",
    "winner_recipe",
]
