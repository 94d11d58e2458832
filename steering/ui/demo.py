"""The Chat tab's demo pieces (issue 13 items 1, 2, 5, 8), plain helpers without a Gradio import:

* the prompted panes: the same model, unsteered, with a system prompt asking for the behavior (and, on the
  subtracted side, asking to avoid it), answered in the same batch as the three steered panes
  (Engine.compare(extra=...)); the prompts come from the behavior's card (datasets/<behavior>/behavior.yaml,
  `prompts:`) or, without a card, from datasets/<behavior>/prompts.yaml;
* pane titles in plain words from the behavior's card ("refuses more" / "as the model is" / "refuses less").

The dose-response strip is in strip.py, the α presets in presets.py, the explainer picture in explainer.py.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from steering.core.behaviors import CARD_FILE, load_card
from steering.core.limits import check_behavior_name
from steering.core.prompts import Message
from steering.errors import SteeringError
from steering.ui.chat import Turn, conversations, render
from steering.ui.checks import check_prompt, markdown_text

PROMPTS_FILE = "prompts.yaml"
SIDES = ("added", "subtracted")
GENERIC_LABELS = {"added": "more of the behavior", "subtracted": "less of the behavior"}
UNSTEERED_TITLE = "As the model is (α = 0)"
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
    hint = ": write one under the pane, or untick 'Also ask by prompting'"
    added, subtracted = (
        check_prompt(value, max_chars, f"the prompted pane's system prompt ({asks})", if_empty=hint, if_long="")
        for value, asks in ((added, "asking for the behavior"), (subtracted, "asking to avoid it"))
    )
    return added, subtracted


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
