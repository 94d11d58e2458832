"""Open-ended answers over multipliers, scored: refusal (steering.evaluation.refusal.RefusalDetector), distinct-3 share,
whether each answer loops (steering.evaluation.refusal.is_loop) and perplexity under the unsteered model
(steering.evaluation.coherence); per-multiplier summaries and where the text breaks down."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from steering.core.layers import decoder_layers
from steering.decode.generation import SamplingSettings, SteeringSpec, generate
from steering.evaluation.coherence import answer_nll
from steering.evaluation.coherence_rule import COHERENCE
from steering.evaluation.refusal import RefusalDetector, distinct_ngram_share, is_loop


@dataclass
class Answer:
    """One open-ended answer of the evaluation, with its scores.

    Attributes:
        question: the question asked.
        variant: which vector steered it: "vector" (the behavior's), "random" (a random direction of the same
            norm) or "negated".
        multiplier: alpha, the unitless factor on the vector.
        text: the generated answer; tokens: its length in generated tokens; token_ids: those tokens.
        refusal: whether steering.evaluation.refusal.RefusalDetector flags it as a refusal.
        distinct3: share of distinct 3-grams of words and punctuation marks, in [0, 1] (low: repetition).
        nll: mean negative log-likelihood per token under the unsteered model, in nats (None: not scored).
    """

    question: str
    variant: str  # vector, random, negated
    multiplier: float
    text: str
    tokens: int
    refusal: bool
    distinct3: float
    nll: float | None = None  # mean negative log-likelihood per token under the unsteered model
    token_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def loops(self) -> bool:
        """Whether this answer loops on its own: steering.evaluation.refusal.is_loop(text) (distinct-3 < 0.5)."""
        return is_loop(self.text)


def open_ended_answers(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    layer: int,
    variants: Mapping[str, tuple[torch.Tensor, Sequence[float]]],
    settings: SamplingSettings,
    detector: RefusalDetector,
    system_prompt: str | None = None,
    batch_size: int = 32,
    score: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    recipe: Any = None,
    hidden_norm: Callable[[int], float] | None = None,
) -> list[Answer]:
    """Answers to every question for every variant name -> (vector, multipliers), scored.

    Rows of one variant run together in batches (generate() steers each row with its own
    multiplier). Multiplier 0 is the same unsteered answer for every variant: it is generated once,
    under the first variant's name.

    Without `recipe`: CAA addition of multiplier x vector at `layer` (the paper's). With a
    steering.core.recipe.Recipe: its band (`layer` is then unused), operators and unit; each multiplier is a
    signed strength in the recipe's unit, the variant's vector (a tensor, or a VectorSet / {layer: tensor}
    for per-layer vectors) replaces the recipe's; `hidden_norm` (Engine.hidden_norm) for unit "relative".
    """
    num_layers = len(decoder_layers(model))
    jobs: list[tuple[str, float, str]] = []  # (variant, multiplier, question)
    zero_done = False
    for name, (_, multipliers) in variants.items():
        for m in multipliers:
            if m == 0:
                if zero_done:
                    continue
                zero_done = True
            jobs.extend((name, float(m), q) for q in questions)
    answers: list[Answer] = []
    total, finished = len(jobs), 0
    for name, (vector, _) in variants.items():
        mine = sorted((j for j in jobs if j[0] == name), key=lambda j: len(j[2]))
        for start in range(0, len(mine), batch_size):
            batch = mine[start : start + batch_size]
            if recipe is None:
                steer: dict[str, Any] = {"multipliers": [m for _, m, _ in batch], "steer": SteeringSpec(layer, vector)}
            else:
                steer = {"steer": recipe.plan(vector, [m for _, m, _ in batch], num_layers, hidden_norm)}
            result = generate(
                model,
                tokenizer,
                [[{"role": "user", "content": q}] for _, _, q in batch],
                settings=settings,
                system_prompt=system_prompt,
                **steer,
            )
            for (variant, m, q), text, ids in zip(batch, result.texts, result.token_ids):
                answers.append(
                    Answer(q, variant, m, text, len(ids), detector(text), distinct_ngram_share(text), None, list(ids))
                )
            finished += len(batch)
            if on_progress is not None:
                on_progress(finished, total)
    if score:
        nlls = answer_nll(
            model,
            tokenizer,
            [a.question for a in answers],
            [a.token_ids for a in answers],
            system_prompt,
            batch_size=batch_size,
        )
        for answer, value in zip(answers, nlls):
            answer.nll = value
    return answers


def summarize_answers(answers: Sequence[Answer], variants: Mapping[str, Sequence[float]]) -> dict[str, list[dict]]:
    """Per variant and multiplier: refusal rate, mean distinct-3 share, share of looping answers, median perplexity,
    mean length.

    Args:
        answers: the scored answers (open_ended_answers).
        variants: variant name -> its multipliers; multiplier 0 of every variant is the shared unsteered answers.

    Returns:
        {variant: [row per multiplier with answers, ascending]}; a row: {"multiplier", "n", "refusal_rate",
        "distinct3" (mean over the answers), "loops" (share of answers that loop on their own,
        steering.evaluation.refusal.is_loop: a mean distinct-3 hides a few loops among fine answers),
        "perplexity" (exp of the median NLL; None: none scored), "mean_tokens"}.
    """
    unsteered = [a for a in answers if a.multiplier == 0]
    out: dict[str, list[dict]] = {}
    for name, multipliers in variants.items():
        rows = []
        for m in sorted(set(float(x) for x in multipliers)):
            group = unsteered if m == 0 else [a for a in answers if a.variant == name and a.multiplier == m]
            if not group:
                continue
            nlls = [a.nll for a in group if a.nll is not None]
            rows.append(
                {
                    "multiplier": m,
                    "n": len(group),
                    "refusal_rate": float(np.mean([a.refusal for a in group])),
                    "distinct3": float(np.mean([a.distinct3 for a in group])),
                    "loops": float(np.mean([a.loops for a in group])),
                    "perplexity": float(math.exp(np.median(nlls))) if nlls else None,
                    "mean_tokens": float(np.mean([a.tokens for a in group])),
                }
            )
        out[name] = rows
    return out


def breakdown_multiplier(
    rows: Sequence[dict],
    distinct_drop: float = COHERENCE.min_distinct_ratio,
    ppl_factor: float = COHERENCE.max_perplexity_ratio,
) -> dict[str, Any]:
    """Where text breaks down, per sign: the smallest |multiplier| at which the mean distinct-3 share falls
    below `distinct_drop` x the unsteered value, or the median perplexity exceeds `ppl_factor` x the
    unsteered value. None when it holds up over the whole range."""
    base = next((r for r in rows if r["multiplier"] == 0), None)
    if base is None:
        return {"positive": None, "negative": None}
    result: dict[str, Any] = {}
    for sign, label in ((1, "positive"), (-1, "negative")):
        found = None
        for row in sorted((r for r in rows if r["multiplier"] * sign > 0), key=lambda r: abs(r["multiplier"])):
            repetitive = row["distinct3"] < distinct_drop * base["distinct3"]
            garbled = (
                row["perplexity"] is not None
                and base["perplexity"] is not None
                and row["perplexity"] > ppl_factor * base["perplexity"]
            )
            if repetitive or garbled:
                found = {"multiplier": row["multiplier"], "repetitive": bool(repetitive), "garbled": bool(garbled)}
                break
        result[label] = found
    return result
