"""The dose-response strip (issue 13 item 2): the current message answered at 5-7 multipliers in one batch
(Engine.generate_rows), each answer scored by the evaluation's coherence measures (distinct-3 share,
perplexity under the unsteered model) and flagged by the evaluation's breakdown rule
(steering.evaluation.breakdown_multiplier). Plain helpers without a Gradio import."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from steering.errors import SteeringError
from steering.evaluation import answer_nll, breakdown_multiplier
from steering.evaluation.refusal import distinct_ngram_share
from steering.ui.chat import signed
from steering.ui.checks import markdown_text
from steering.ui.demo import PaneText

# The strip's multipliers: these factors x m (m: the α on the slider, else the model's default), −2m … 2m.
STRIP_FACTORS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
STRIP_TOKENS = 40  # the strip's answers are short: at most this many new tokens each
STRIP_BUTTON = f"Dose–response: answer at {len(STRIP_FACTORS)} strengths"
STRIP_BUSY = f"⏳ generating {len(STRIP_FACTORS)} answers…"
BUSY_TEXT = "⏳ generating…"


@dataclass(frozen=True)
class Card:
    """One answer of the dose-response strip.

    Attributes:
        multiplier: the signed α that made it (< 0: the subtracted side).
        text: the answer; tokens: its length in tokens.
        distinct3: share of distinct word trigrams (steering.evaluation.refusal.distinct_ngram_share;
            1 = no repetition).
        perplexity: exp(mean NLL) of the answer under the unsteered model (None for an empty answer).
        breakdown: None, or {"repetitive": bool, "garbled": bool} when the evaluation's breakdown rule
            (distinct-3 < 0.85 x the unsteered answer's, or perplexity > 3 x) flags it.
    """

    multiplier: float
    text: str
    tokens: int
    distinct3: float
    perplexity: float | None
    breakdown: dict[str, bool] | None = None

    @property
    def alpha(self) -> float:
        """The α slider value that shows this answer in a pane (+α pane when multiplier > 0, −α pane when < 0)."""
        return abs(self.multiplier)

    @property
    def use_label(self) -> str:
        """The card's button: "Use α = 3", and for a subtracted card "Use ±3 (this is the −α pane)" (the
        slider has no sign: the card's answer is the −α pane's at α = 3)."""
        if self.multiplier < 0:
            return f"Use ±{self.alpha:g} (this is the −α pane)"
        return f"Use α = {self.alpha:g}" + (" (no steering)" if self.multiplier == 0 else "")

    def heading(self, labels: PaneText | None = None) -> str:
        """ "α = −3 · refuses less", "α = 0 · as the model is"."""
        labels = labels or PaneText()
        side = "as the model is" if self.multiplier == 0 else labels.added if self.multiplier > 0 else labels.subtracted

        return f"α = {signed(self.multiplier)} · {side}"

    def markdown(self, labels: PaneText | None = None) -> str:
        """The card's body as Markdown: heading, the answer (escaped), its measures and the breakdown flag."""

        ppl = f"{self.perplexity:.1f}" if self.perplexity is not None else "–"
        flag = ""
        if self.breakdown:
            why = " and ".join(
                w
                for w, on in (
                    ("repetitive", self.breakdown.get("repetitive")),
                    ("garbled", self.breakdown.get("garbled")),
                )
                if on
            )
            flag = f"\n\n⚠️ **breaks down** ({why})"
        body = markdown_text(self.text) if self.text else "*(no text)*"
        return (
            f"**{markdown_text(self.heading(labels))}**\n\n{body}\n\n"
            f"<sub>distinct-3 {self.distinct3:.2f} · perplexity {ppl} · {self.tokens} tokens</sub>{flag}"
        )


def strip_multipliers(alpha: float, fallback: float, factors: Sequence[float] = STRIP_FACTORS) -> list[float]:
    """The strip's signed multipliers: factors x m, m = |alpha| when it is not 0, else |fallback|.

    Raises: SteeringError when 5 to 7 factors are not given, or m is 0 or not finite.
    """
    if not 5 <= len(factors) <= 7:
        raise SteeringError(f"the strip takes 5 to 7 multipliers, got {len(factors)}")
    m = abs(float(alpha)) or abs(float(fallback))
    if not math.isfinite(m) or m == 0:
        raise SteeringError("the strip needs a nonzero α (set the strength slider above 0)")
    return [float(f) * m for f in sorted(factors)]


def flag_breakdown(card: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, bool] | None:
    """The evaluation's breakdown rule (steering.evaluation.breakdown_multiplier) for one answer against the
    unsteered one: {"repetitive", "garbled"} when it breaks down, else None (always None for α = 0).

    Args: card, base: {"multiplier", "distinct3", "perplexity"} of the answer and of the unsteered answer.
    """

    if card["multiplier"] == 0:
        return None
    found = breakdown_multiplier([{**base, "multiplier": 0.0}, dict(card)])
    hit = found["positive" if card["multiplier"] > 0 else "negative"]
    return None if hit is None else {"repetitive": hit["repetitive"], "garbled": hit["garbled"]}


def run_strip(
    engine: Any,
    message: str,
    vector: Any,
    layer: int,
    alpha: float,
    settings: Any,
    system_prompt: str | None = None,
    factors: Sequence[float] = STRIP_FACTORS,
    max_new_tokens: int = STRIP_TOKENS,
) -> list[Card]:
    """Answer one message at the strip's multipliers in one batch, scored and flagged.

    Args:
        engine: the Engine.
        message: the user's message (a single-turn conversation, so the measures match the evaluation's).
        vector: (hidden,) the chosen vector at `layer`, or None for the behavior's (recipe's) own.
        layer: the anchor layer; alpha: the slider's α (m; the model's default when 0).
        settings: SamplingSettings (temperature, top-p, seed); max_new_tokens is capped at `max_new_tokens`.
        system_prompt: the chat's system prompt (also used for the perplexity).
        factors: 5 to 7 factors of m (default −2, −1, −0.5, 0, 0.5, 1, 2); 0 is added when missing (the
            reference of the breakdown rule).
    Returns: the cards from the most subtracted to the most added.
    Raises: SteeringError for an α or a prompt over the limits.
    """

    factors = sorted(set(float(f) for f in factors) | {0.0})
    multipliers = strip_multipliers(alpha, engine.defaults.multiplier, factors)
    m = abs(float(alpha)) or abs(float(engine.defaults.multiplier))
    short = replace(settings, max_new_tokens=max(1, min(int(settings.max_new_tokens), int(max_new_tokens))))
    conv = [{"role": "user", "content": message}]
    result = engine.generate_rows(
        [conv] * len(factors),
        factors,
        vector=vector,
        layer=layer,
        multiplier=m,
        settings=short,
        system_prompt=system_prompt,
    )
    with engine.lm.lock:
        nlls = answer_nll(
            engine.lm.model, engine.lm.tokenizer, [message] * len(factors), result.token_ids, system_prompt
        )
    rows = [
        {
            "multiplier": mult,
            "distinct3": distinct_ngram_share(text),
            "perplexity": math.exp(nll) if nll is not None else None,
        }
        for mult, text, nll in zip(multipliers, result.texts, nlls)
    ]
    base = next(r for r in rows if r["multiplier"] == 0)
    return [
        Card(r["multiplier"], text, len(ids), r["distinct3"], r["perplexity"], flag_breakdown(r, base))
        for r, text, ids in zip(rows, result.texts, result.token_ids)
    ]


def strip_summary(message: str, cards: Sequence[Card], max_new_tokens: int) -> str:
    """The line over the strip's cards (Markdown): which message, how many answers, how long, how to read them."""

    shown = message if len(message) <= 80 else message[:79] + "…"
    return (
        f"“{markdown_text(shown)}” at {len(cards)} strengths, one batch, up to "
        f"{min(int(max_new_tokens), STRIP_TOKENS)} tokens each. Under each answer: distinct-3 share (1 = no "
        "repetition) and perplexity under the unsteered model; ⚠️ where the evaluation's rule says the text "
        "breaks down. Click a card's button to use its α."
    )
