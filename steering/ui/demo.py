"""The Chat tab's demo pieces (issue 13 items 1, 2, 5, 8), plain helpers without a Gradio import:

* the prompted panes: the same model, unsteered, with a system prompt asking for the behavior (and, on the
  subtracted side, asking to avoid it), answered in the same batch as the three steered panes
  (Engine.compare(extra=...)); the prompts come from the behavior's card (datasets/<behavior>/behavior.yaml,
  `prompts:`) or, without a card, from datasets/<behavior>/prompts.yaml;
* the dose-response strip: the current message answered at 5-7 multipliers in one batch (Engine.generate_rows),
  each answer scored by the evaluation's coherence measures (distinct-3 share, perplexity under the unsteered
  model) and flagged by the evaluation's breakdown rule (steering.evaluation.breakdown_multiplier);
* α presets (gentle, clear, too strong) from the model's tuned defaults (Engine.recipe) and the measured
  breakdown point (results/eval/.../open_ended.json);
* the "What am I looking at?" picture (matplotlib) and sentences, the tooltips on α and layer;
* pane titles in plain words from the behavior's card ("refuses more" / "as the model is" / "refuses less").

    python -m steering.ui.demo docs/how-steering-works.png   # redraw the README's picture
"""

from __future__ import annotations

import html
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from steering.core.prompts import Message
from steering.errors import SteeringError
from steering.ui.chat import Turn, conversations, render

PROMPTS_FILE = "prompts.yaml"
SIDES = ("added", "subtracted")
GENERIC_LABELS = {"added": "more of the behavior", "subtracted": "less of the behavior"}
UNSTEERED_TITLE = "As the model is (α = 0)"
# The strip's multipliers: these factors x m (m: the α on the slider, else the model's default), −2m … 2m.
STRIP_FACTORS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
STRIP_TOKENS = 40  # the strip's answers are short: at most this many new tokens each
STRIP_BUTTON = f"Dose–response: answer at {len(STRIP_FACTORS)} strengths"
STRIP_BUSY = f"⏳ generating {len(STRIP_FACTORS)} answers…"
BUSY_TEXT = "⏳ generating…"
MAX_SYSTEM_PROMPT_CHARS = 2000


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# ============================================================================ what the panes are (items 1, 8)
@dataclass(frozen=True)
class PaneText:
    """What the panes of one behavior say, in plain words, and the prompted panes' system prompts.

    Attributes:
        added: what +α shows ("refuses more"); subtracted: what −α shows ("refuses less").
        prompts: {"added": system prompt asking for the behavior, "subtracted": asking to avoid it}
            ('' when the behavior has none).
        source: the file they came from (display path), or None for the generic words.
    """

    added: str = GENERIC_LABELS["added"]
    subtracted: str = GENERIC_LABELS["subtracted"]
    prompts: Mapping[str, str] = field(default_factory=lambda: {"added": "", "subtracted": ""})
    source: str | None = None

    def titles(self) -> tuple[str, str, str]:
        """The three panes' titles: "Refuses more (+α)", "As the model is (α = 0)", "Refuses less (−α)"."""
        return f"{_capital(self.added)} (+α)", UNSTEERED_TITLE, f"{_capital(self.subtracted)} (−α)"

    def prompted_titles(self) -> tuple[str, str]:
        """The prompted panes' titles ("Asked to: refuses more · no steering", ...)."""
        return tuple(f"Asked by a system prompt: {getattr(self, side)} (α = 0)" for side in SIDES)  # type: ignore[return-value]


def _prompts_file(path: Path, shown: str) -> dict[str, Any]:
    """datasets/<behavior>/prompts.yaml: {added?, subtracted?, prompts: {added, subtracted}}; one-line errors."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SteeringError(f"{shown}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        raise SteeringError(f"{shown}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise SteeringError(
            f"{shown}: expected a mapping with keys prompts (and optionally added, subtracted), "
            f"found {type(data).__name__}"
        )
    unknown = [str(k) for k in data if k not in ("added", "subtracted", "prompts")]
    if unknown:
        raise SteeringError(f"{shown}: unknown key {', '.join(unknown)} (expected added, subtracted, prompts)")
    prompts = data.get("prompts")
    if not isinstance(prompts, dict):
        raise SteeringError(
            f"{shown}: 'prompts' must be a mapping with keys added and subtracted, "
            f"found {type(prompts).__name__ if prompts is not None else 'nothing'}"
        )
    out: dict[str, Any] = {"prompts": {}}
    for side in SIDES:
        value = prompts.get(side)
        if not isinstance(value, str) or not value.strip():
            raise SteeringError(
                f"{shown}: prompts.{side} must be a non-empty string, "
                f"found {type(value).__name__ if not isinstance(value, str) else 'an empty string'}"
            )
        out["prompts"][side] = value.strip()
        label = data.get(side)
        if label is not None:
            if not isinstance(label, str) or not label.strip():
                raise SteeringError(
                    f"{shown}: '{side}' must be a non-empty string (what the pane shows), found {type(label).__name__}"
                )
            out[side] = " ".join(label.split())
    extra = [str(k) for k in prompts if k not in SIDES]
    if extra:
        raise SteeringError(f"{shown}: prompts has unknown key {', '.join(extra)} (expected added, subtracted)")
    return out


def pane_text(datasets_dir: str | Path, behavior: str | None) -> PaneText:
    """The panes' plain words and the prompted panes' system prompts for `behavior`.

    Read from datasets_dir/<behavior>/behavior.yaml (the behavior card, steering.core.behaviors) when it exists,
    else datasets_dir/<behavior>/prompts.yaml (`prompts: {added, subtracted}`, optional `added:` and
    `subtracted:` pane words); else the generic words and no prompts (an uploaded vector, a behavior
    without data).

    Args:
        datasets_dir: the config's datasets folder.
        behavior: a behavior name, or None.
    Returns: PaneText.
    Raises: SteeringError (one line naming the file and key) for a card or prompts file that is invalid.
    """
    if not behavior:
        return PaneText()
    from steering.core.behaviors import CARD_FILE, load_card
    from steering.core.limits import check_behavior_name

    folder = Path(datasets_dir) / check_behavior_name(behavior)
    if (folder / CARD_FILE).exists():
        card = load_card(datasets_dir, behavior)
        return PaneText(card.added, card.subtracted, dict(card.prompts), f"{behavior}/{CARD_FILE}")
    path = folder / PROMPTS_FILE
    if path.exists():
        found = _prompts_file(path, f"{behavior}/{PROMPTS_FILE}")
        return PaneText(
            found.get("added", GENERIC_LABELS["added"]),
            found.get("subtracted", GENERIC_LABELS["subtracted"]),
            found["prompts"],
            f"{behavior}/{PROMPTS_FILE}",
        )
    return PaneText()


def safe_pane_text(datasets_dir: str | Path, behavior: str | None) -> tuple[PaneText, str]:
    """pane_text, never failing: (the words, '' or the one-line problem with the behavior's files)."""
    try:
        return pane_text(datasets_dir, behavior), ""
    except SteeringError as exc:
        return PaneText(), str(exc)


# ============================================================================ prompted panes (item 1)
@dataclass
class DemoTurn(Turn):
    """A chat turn that may also have the two prompted answers (answers[3], answers[4]).

    `prompts` is (added, subtracted) system prompts when the prompted panes ran for this turn, else None.
    """

    prompts: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.prompts is not None and len(self.answers) < 5:
            self.answers = list(self.answers) + [""] * (5 - len(self.answers))

    def prompted_caption(self, side: int) -> str:
        """The small print under prompted answer `side` (0: asked for the behavior, 1: asked to avoid it)."""
        if self.prompts is None:
            return "prompted pane was off for this message"
        prompt = " ".join(self.prompts[side].split())
        parts = ["α = 0, no steering", f"system prompt: “{prompt[:60]}{'…' if len(prompt) > 60 else ''}”"]
        return " · ".join([*parts, *self.status_note(3 + side)])

    def prompted_shown(self, side: int) -> str:
        """Prompted answer `side` as displayed: its text (or the failure) and its caption."""
        text = self.answers[3 + side] if self.prompts is not None else ""
        if self.status == "failed" and self.prompts is not None:
            text = (text + "\n\n" if text else "") + f"⚠️ Generation failed: {self.error}"
        caption = f"<sub>{html.escape(self.prompted_caption(side), quote=False)}</sub>"
        return f"{text}\n\n{caption}" if text else caption


def check_prompted(
    on: Any, added: Any, subtracted: Any, max_chars: int = MAX_SYSTEM_PROMPT_CHARS
) -> tuple[str, str] | None:
    """The prompted panes' system prompts when the checkbox is on, else None.

    Raises: SteeringError (one line) when a prompt is not text, empty, or longer than max_chars.
    """
    if not on:
        return None
    out = []
    for side, value in zip(SIDES, (added, subtracted)):
        asks = "asking for the behavior" if side == "added" else "asking to avoid it"
        where = f"the prompted pane's system prompt ({asks})"
        if value is not None and not isinstance(value, str):
            raise SteeringError(f"{where} must be text, got {type(value).__name__}")
        text = (value or "").strip()
        if not text:
            raise SteeringError(f"{where} is empty: write one under the pane, or untick 'Also ask by prompting'")
        if len(text) > max_chars:
            raise SteeringError(f"{where} is {len(text)} characters long; the limit is {max_chars}")
        out.append(text)
    return out[0], out[1]


def prompted_conversations(turns: Sequence[Turn], text: str, prompts: tuple[str, str]) -> list[list[Message]]:
    """What the model sees in the two prompted rows: its system prompt, the earlier turns, the new message.

    Earlier turns use the prompted answer of that side when the prompted panes ran for them, else the
    unsteered pane's answer (the model as it is). Unfinished or failed turns are left out, as for the panes.
    """
    unsteered = conversations(turns)[1]  # finished turns only, answers without captions
    finished = [t for t in turns if t.in_conversation]
    out = []
    for side in range(2):
        conv: list[Message] = [{"role": "system", "content": prompts[side]}]
        for turn, index in zip(finished, range(1, len(unsteered), 2)):
            own = isinstance(turn, DemoTurn) and turn.prompts is not None and len(turn.answers) > 3 + side
            conv += [
                {"role": "user", "content": turn.user},
                {"role": "assistant", "content": turn.answers[3 + side] if own else unsteered[index]["content"]},
            ]
        conv.append({"role": "user", "content": text})
        out.append(conv)
    return out


def render_panes(turns: Sequence[Turn]) -> list[list[Message]]:
    """The five panes' chat messages: added, unsteered, subtracted (steering.ui.chat.render), then the
    prompted pane asking for the behavior and the one asking to avoid it.

    The user's message is shown as typed: its HTML and Markdown marks are escaped (markdown_text), so
    "<b>bold</b>" shows those characters rather than bold text; the answers and captions are unchanged.
    """
    from steering.ui.chat import markdown_text

    panes = [
        [{**m, "content": markdown_text(m["content"])} if m["role"] == "user" else m for m in pane]
        for pane in render(turns)
    ]
    for side in range(2):
        messages: list[Message] = []
        for turn in turns:
            messages.append({"role": "user", "content": markdown_text(turn.user)})
            shown = (
                turn.prompted_shown(side)
                if isinstance(turn, DemoTurn)
                else "<sub>prompted pane was off for this message</sub>"
            )
            messages.append({"role": "assistant", "content": shown})
        panes.append(messages)
    return panes


def meter_titles(words: PaneText) -> tuple[str, ...]:
    """The behavior meter's titles: the five panes' own titles (PaneText.titles, prompted_titles)."""
    return (*words.titles(), *words.prompted_titles())


# ============================================================================ dose-response strip (item 2)
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
        from steering.ui.chat import signed

        return f"α = {signed(self.multiplier)} · {side}"

    def markdown(self, labels: PaneText | None = None) -> str:
        """The card's body as Markdown: heading, the answer (escaped), its measures and the breakdown flag."""
        from steering.ui.chat import markdown_text

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
    from steering.evaluation import breakdown_multiplier

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
    from dataclasses import replace

    from steering.evaluation import answer_nll
    from steering.evaluation.refusal import distinct_ngram_share

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
    from steering.ui.chat import markdown_text

    shown = message if len(message) <= 80 else message[:79] + "…"
    return (
        f"“{markdown_text(shown)}” at {len(cards)} strengths, one batch, up to "
        f"{min(int(max_new_tokens), STRIP_TOKENS)} tokens each. Under each answer: distinct-3 share (1 = no "
        "repetition) and perplexity under the unsteered model; ⚠️ where the evaluation's rule says the text "
        "breaks down. Click a card's button to use its α."
    )


# ============================================================================ presets, picture, tips (item 5)
@dataclass(frozen=True)
class Preset:
    """An α preset: its name, value and where the value comes from (one line)."""

    name: str
    alpha: float
    why: str

    @property
    def label(self) -> str:
        """The preset's button text: its name and alpha, e.g. "clear (α = 4)"."""
        return f"{self.name} (α = {self.alpha:g})"


def measured_breakdown(results_dir: str | Path, behavior: str, model_slug: str) -> float | None:
    """The smallest |α| at which the evaluation saw the text break down for this behavior and model.

    Read from results_dir/eval/<behavior>/open_ended.json, else results_dir/eval/open_ended.json, when the
    file's settings name this behavior and model (`python -m steering evaluate` writes them). None when no
    such file exists, it says the text held up over its whole range, or it cannot be read (logged).
    """
    evaluations = Path(results_dir) / "eval"
    for path in (evaluations / behavior / "open_ended.json", evaluations / "open_ended.json"):
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            settings = data.get("settings") or {}
            if settings.get("behavior") != behavior or settings.get("model") != model_slug:
                continue
            found = [abs(float(side["multiplier"])) for side in (data.get("breakdown") or {}).values() if side]
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            logging.getLogger(__name__).warning("α presets: cannot read %s: %s", path.name, exc)
            continue
        return min(found) if found else None
    return None


def presets(default: float, breakdown: float | None) -> list[Preset]:
    """The three α presets: gentle (half the default), clear (the tuned default), too strong (the measured
    breakdown point, else twice the default).

    Args:
        default: the model's tuned α for the behavior (Engine.recipe(behavior).strength).
        breakdown: measured_breakdown(...) or None.
    """
    default = abs(float(default)) or 1.0
    strong = (
        Preset(
            "too strong — watch it break",
            breakdown,
            f"where the evaluation saw the text break down (α = {breakdown:g})",
        )
        if breakdown and breakdown > default
        else Preset(
            "too strong — watch it break", 2 * default, "twice the default (no measured breakdown point for this model)"
        )
    )
    return [
        Preset("gentle", default / 2, "half the tuned default"),
        Preset("clear", default, "the tuned default for this model"),
        strong,
    ]


def steered_layers(engine: Any, behavior: str | None) -> list[int]:
    """The layers the behavior's recipe steers for the loaded model (Recipe.layers), [] if it cannot be read."""
    try:
        return list(engine.recipe(behavior).layers(engine.lm.num_layers)) if behavior else []
    except SteeringError:
        return []


def behavior_presets(engine: Any, behavior: str | None, results_dir: str | Path) -> list[Preset]:
    """presets() for the loaded model and a behavior (the engine's defaults when the recipe cannot be read)."""
    try:
        default = engine.recipe(behavior).strength if behavior else engine.defaults.multiplier
    except SteeringError:
        default = engine.defaults.multiplier
    return presets(default, measured_breakdown(results_dir, behavior, engine.lm.slug) if behavior else None)


EXPLAINER = (
    "A language model passes your message up through a stack of layers, each adding to one running list of "
    "numbers (the hidden state). A steering vector is a direction in those numbers that we measured by "
    "comparing answers that show the behavior with answers that don't. At one layer we add it (α times, "
    "above) or subtract it (below), and the same model then answers three times, so you can see what the "
    "direction does — and, with a bigger α, where it breaks the text."
)

TIPS = {
    "alpha": (
        "α is how hard the vector pushes: 0 leaves the model as it is; the first pane gets +α, the last −α. "
        "Small values change little, too large ones garble the text: try the presets."
    ),
    "layer": (
        "The layer where the vector is added, counted from the input (0) up. Middle layers hold the "
        "most abstract features; the vector was measured at each layer, and the default is the one "
        "tuned for this model."
    ),
}


def tooltip_html(key: str, text: str) -> str:
    """A small "(?) text" hint whose explanation shows on hover, tap or keyboard focus (CSS only, role=tooltip)."""
    tip = html.escape(TIPS[key], quote=True)
    return (
        f'<span class="demo-tip" id="tip-{key}" tabindex="0" aria-describedby="tip-{key}-text">'
        '<span class="demo-tip-mark" aria-hidden="true">?</span> '
        f'{html.escape(text)}<span class="demo-tip-text" role="tooltip" id="tip-{key}-text">{tip}</span></span>'
    )


DEMO_CSS = """
.demo-tip { position: relative; cursor: help; font-size: var(--text-sm); color: var(--body-text-color);
            border-bottom: 1px dotted currentColor; white-space: nowrap; }
.demo-tip .demo-tip-text { display: none; position: absolute; left: 0; top: 1.6em; z-index: 20; width: min(320px, 80vw);
            padding: 8px 10px; border-radius: 6px; background: var(--background-fill-secondary);
            color: var(--body-text-color); border: 1px solid var(--border-color-primary);
            box-shadow: 0 2px 8px rgba(0,0,0,.2); }
.demo-tip-mark { display: inline-block; width: 1.3em; height: 1.3em; line-height: 1.3em; text-align: center;
                 border-radius: 50%; border: 1px solid currentColor; font-weight: 600; }
.demo-tip:hover .demo-tip-text, .demo-tip:focus .demo-tip-text,
.demo-tip:focus-within .demo-tip-text { display: block; }
#strip { flex-wrap: nowrap; overflow-x: auto; gap: 8px; }  /* one row; it scrolls sideways on a phone */
#strip > .column { min-width: 140px !important; flex: 1 0 140px; border: 1px solid var(--border-color-primary);
                   border-radius: 8px; padding: 6px; }
#prompted button[aria-label="Clear"] { display: none; }  /* one Clear for all panes */
#presets { align-items: center; }
#strip .prose { font-size: var(--text-sm); }
#busy-line p { margin: 0; }
/* small print (captions under the answers and cards) in the body text colour: the theme's subdued grey is
   too faint at this size (about 2.5:1 on white) */
#panes sub, #prompted sub, #strip sub { color: var(--body-text-color); opacity: 1; }
"""


def explainer_figure(
    num_layers: int,
    layer: int,
    titles: Sequence[str] = ("More of the behavior (+α)", UNSTEERED_TITLE, "Less of the behavior (−α)"),
    band: Sequence[int] = (),
):
    """The "What am I looking at?" picture: the stack of layers, the vector added at one layer, three answers.

    Args:
        num_layers: the model's decoder layer count; layer: the layer where the vector is added.
        titles: the three panes' titles (PaneText.titles()).
        band: all the layers the recipe steers (e.g. 12, 13, 14 around 13), drawn highlighted; default: `layer`.
    Returns: a matplotlib Figure (Agg; the caller closes it).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = Figure(figsize=(8, 4.2), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5.2)
    ax.axis("off")
    shown = min(num_layers, 9)  # a few layers drawn; the steered one among them
    band = sorted(set(band) | {layer})
    rows = sorted(set(list(range(0, 2)) + [band[0] - 1, *band, band[-1] + 1] + [num_layers - 2, num_layers - 1]))
    rows = [r for r in rows if 0 <= r < num_layers][:shown]
    gaps = sum(1 for a, b in zip(rows, rows[1:]) if b != a + 1)
    y, h = 0.55, min(0.36, (4.2 - 0.08 * (len(rows) - 1) - 0.26 * gaps) / len(rows))  # the stack fits below 4.75
    ax.text(2.2, 0.15, "your message", ha="center", fontsize=10)
    for i, r in enumerate(rows):
        steered = r in band
        ax.add_patch(
            FancyBboxPatch(
                (1.0, y),
                2.4,
                h,
                boxstyle="round,pad=0.02",
                fc="#ffd8a8" if steered else "#dbe4ff",
                ec="#e8590c" if steered else "#4c6ef5",
            )
        )
        ax.text(2.2, y + h / 2, f"layer {r}", ha="center", va="center", fontsize=9)
        if r == layer:
            ax.add_patch(
                FancyArrowPatch(
                    (5.0, y + h / 2), (3.45, y + h / 2), arrowstyle="-|>", mutation_scale=18, color="#e8590c", lw=2.2
                )
            )
            ax.text(
                3.6,
                y + h / 2 - 0.12,
                "± α × steering vector" + (f"\n(spread over layers {band[0]}–{band[-1]})" if len(band) > 1 else ""),
                va="top",
                fontsize=10,
                color="#e8590c",
            )
        gap = i + 1 < len(rows) and rows[i + 1] != r + 1
        if gap:
            ax.text(2.2, y + h + 0.17, "⋮", ha="center", va="center", fontsize=10, color="#495057")
        y += h + (0.34 if gap else 0.08)
    top = y
    ax.text(2.2, top + 0.05, f"({num_layers} layers in all)", ha="center", fontsize=8, color="#495057")
    colors = ("#ffc9c9", "#e9ecef", "#c3fae8")
    for k, (title, color) in enumerate(zip(titles, colors)):
        y = 4.3 - k * 0.75
        ax.add_patch(FancyBboxPatch((6.0, y), 3.7, 0.55, boxstyle="round,pad=0.05", fc=color, ec="#868e96"))
        ax.text(7.85, y + 0.27, title, ha="center", va="center", fontsize=9)
        ax.add_patch(
            FancyArrowPatch(
                (3.45, top - 0.2),
                (5.95, y + 0.27),
                arrowstyle="-|>",
                mutation_scale=12,
                color="#868e96",
                lw=1,
                connectionstyle="arc3,rad=-0.15",
            )
        )
    ax.text(7.85, 1.7, "the same model answers three times,\nin one batch", ha="center", fontsize=9, color="#495057")
    return fig


def explainer_image(num_layers: int, layer: int, titles: Sequence[str] | None = None, band: Sequence[int] = ()) -> Any:
    """explainer_figure rendered in memory: an (height, width, 3) uint8 numpy array for gr.Image."""
    import numpy as np

    fig = explainer_figure(num_layers, layer, *([titles] if titles else []), band=band)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_explainer(
    path: str | Path,
    num_layers: int = 30,
    layer: int = 13,
    titles: Sequence[str] = ("Refuses more (+α)", UNSTEERED_TITLE, "Refuses less (−α)"),
    band: Sequence[int] = (12, 13, 14),
) -> Path:
    """Write the picture as a PNG (the README's docs/how-steering-works.png: SmolLM2-135M, 30 layers, the
    shipped refusal recipe's layers 12-14 around 13)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = explainer_figure(num_layers, layer, titles, band)
    FigureCanvasAgg(fig).print_png(str(path))
    return path


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    import sys

    print(save_explainer(sys.argv[1] if len(sys.argv) > 1 else "docs/how-steering-works.png"))
