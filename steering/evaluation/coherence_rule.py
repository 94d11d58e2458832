"""The one rule for "the text stays language" (issue 9's targets): a side is coherent while its answers'
distinct-3 share is at least 0.85 x the unsteered answers' and their perplexity under the unsteered model at most
3 x the unsteered answers'. The evaluation's breakdown multiplier, `tune`'s defaults and the reports' wording all
read it from here. The per-answer loop threshold (LOOP_DISTINCT3, steering.evaluation.refusal.is_loop) lives here too;
the evaluation reports the share of looping answers; `tune` also limits it (MAX_LOOPS).
No torch import: the CLI's flag defaults use it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COHERENCE", "DEMO_MIN_DISTINCT3", "LOOP_DISTINCT3", "LOOP_MIN_TRIGRAMS", "MAX_LOOPS", "CoherenceRule"]


@dataclass(frozen=True)
class CoherenceRule:
    """Coherence limits relative to the unsteered answers of the same questions.

    Attributes:
        min_distinct_ratio: the smallest distinct-3 share allowed, as a multiple of the unsteered share (ratio).
        max_perplexity_ratio: the largest perplexity allowed, as a multiple of the unsteered perplexity (ratio).
    """

    min_distinct_ratio: float = 0.85
    max_perplexity_ratio: float = 3.0

    def breakdown_text(self, distinct: str = "distinct-3", times: str = "×") -> str:
        """The rule's break-down condition as text, e.g. "distinct-3 < 0.85 × unsteered or perplexity > 3 × unsteered"
        (`distinct` names the measure, `times` the multiplication sign)."""
        return (
            f"{distinct} < {self.min_distinct_ratio:g} {times} unsteered or "
            f"perplexity > {self.max_perplexity_ratio:g} {times} unsteered"
        )


COHERENCE = CoherenceRule()

LOOP_DISTINCT3 = 0.5
"""One answer loops when its own distinct-3 share is below this (more than half of its word trigrams repeat an
earlier one): steering.evaluation.refusal.is_loop. Reported next to the mean distinct-3 share."""

MAX_LOOPS = 0.10
"""`tune`'s default --max-loops: a setting is coherent only if, on each steered side and question file, the share of
looping answers is at most 0.10 above the unsteered answers' share. A mean distinct-3 share can stay above its limit
while a few answers repeat one phrase to the end (issue 9: "neither loops"); this bounds how many."""

LOOP_MIN_TRIGRAMS = 3
"""Answers with fewer word trigrams than this never count as loops. With LOOP_DISTINCT3 = 0.5 it decides only the
empty answer (distinct-3 share 0): one or two trigrams cannot fall below 0.5."""

DEMO_MIN_DISTINCT3 = 0.75
"""A demo answer (`tune --demo`, the app's first question) does not loop when its own distinct-3 share is at least
this: stricter than LOOP_DISTINCT3, because one answer is read whole by someone judging the demo at a glance, and
an answer that circles back on its first sentence (issue 9's planet answer at 0.44) reads as broken well before half
its trigrams repeat."""
