"""A session's turns in the web app (no Gradio import): what the panes show and what the model sees, the
Outbox of messages taken at a click, and the private copies of uploaded files. The input checks are in
checks.py.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from steering.compare import SIGNS  # the panes' multipliers are sign x alpha (the comparison's row order)
from steering.core.prompts import Message

PANE_TITLES = ("Added steering", "Unsteered", "Subtracted steering")


def pane_labels() -> tuple[str, str, str]:
    """The panes' titles. They carry no number: each answer's caption says which α made it."""
    return (f"{PANE_TITLES[0]} (+α)", f"{PANE_TITLES[1]} (α = 0)", f"{PANE_TITLES[2]} (−α)")


# ------------------------------------------------------------------------------------------------ turns
def signed(value: float) -> str:
    """A multiplier with its sign: +2, −2.5, 0."""
    return "0" if value == 0 else f"{'+' if value > 0 else '−'}{abs(value):g}"


@dataclass
class Turn:
    """One message and the three answers it got, with the settings that made them (per session)."""

    user: str
    multiplier: float
    layer: int
    vector: str  # the behavior's name or the uploaded file's name
    max_new_tokens: int
    answers: list[str] = field(default_factory=lambda: ["", "", ""])
    status: str = "running"  # running, done, stopped, failed
    new_tokens: list[int] = field(default_factory=list)
    error: str = ""
    minus_ratio: float = 1.0  # the recipe's subtracted-side factor (Recipe.minus_ratio: strength_minus / strength)

    def finish(self, texts: Sequence[str], new_tokens: Sequence[int], stopped: bool) -> None:
        """The generation's final texts and token counts per pane (a stopped turn stays as it was shown)."""
        if self.status != "running":
            return  # stopped meanwhile: it keeps the text Stop showed
        self.status = "stopped" if stopped else "done"
        self.answers, self.new_tokens = list(texts), list(new_tokens)

    def fail(self, message: str) -> None:
        """Mark the turn failed with a one-line message: shown in the panes, never fed back to the model."""
        self.status, self.error = "failed", message

    def stop(self) -> None:
        """End a running turn as it stands (Stop, Clear, cancellation)."""
        if self.status == "running":
            self.status = "stopped"

    @property
    def in_conversation(self) -> bool:
        """Whether the model sees this turn next time: not a failure, not unfinished, not empty."""
        return self.status == "done" or (self.status == "stopped" and any(self.answers))

    def caption(self, pane: int) -> str:
        """What made pane `pane`'s answer: α, layer and vector, and why it ended early if it did. When the recipe
        steers the subtracted side at its own strength (`minus_ratio` != 1), that pane says what was applied."""
        value = SIGNS[pane] * self.multiplier
        alpha = f"{'+' if SIGNS[pane] > 0 else '−'}α = {signed(value)}"
        if value < 0 and self.minus_ratio != 1.0:
            alpha += f" × {self.minus_ratio:.3g} on this side = {signed(round(value * self.minus_ratio, 4))}"
        parts = ["α = 0 (unsteered)"] if value == 0 else [alpha, f"layer {self.layer}", self.vector]
        return " · ".join([*parts, *self.status_note(pane)])

    def status_note(self, pane: int) -> list[str]:
        """The caption's tail for pane `pane`: why the answer is not (yet) a whole one, if so (else [])."""
        if self.status == "running":
            return ["writing…"]
        if self.status == "stopped":
            return ["stopped"]
        if self.status == "failed":
            return ["failed: not part of the conversation"]
        if pane < len(self.new_tokens) and self.new_tokens[pane] >= self.max_new_tokens:
            return [f"cut at the limit of {self.max_new_tokens} new tokens"]
        return []

    def shown(self, pane: int) -> str:
        """Pane `pane`'s answer as displayed: the text (or the failure) and its caption as small print."""
        text = self.answers[pane]
        if self.status == "failed":
            text = (text + "\n\n" if text else "") + f"⚠️ Generation failed: {self.error}"
        return f"{text}\n\n<sub>{self.caption(pane)}</sub>" if text else f"<sub>{self.caption(pane)}</sub>"


class Outbox:
    """The messages of one session taken from the message box whose turn has not started yet.

    Stop and Clear end waiting and running turns through session state rather than Gradio's `cancels=`:
    cancelling a queued job with `cancels=` (Gradio 6.31) can leave red "Error" badges over the panes, and a
    streamed update already on its way can land after Stop's own update and show "writing…" for good. Here
    Stop bumps a counter; a waiting turn that finds its ticket older than the counter never starts, and a
    running turn sees its status change at the next token and ends with one final update of its own.

    `put` and `take` pair up in order (one per Send or Retry click); `lock` makes "is this ticket still
    wanted, then show the turn" atomic against `cancel`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._waiting: list[tuple[str | None, int]] = []
        self._stops = 0

    def __deepcopy__(self, memo: dict) -> Outbox:  # Gradio copies a State's first value per session
        copy = Outbox()
        copy._waiting, copy._stops = list(self._waiting), self._stops
        return copy

    def put(self, text: str | None) -> None:
        """Queue a taken message (None: a Retry of the last turn) under the current ticket."""
        with self.lock:
            self._waiting.append((text, self._stops))

    def take(self) -> tuple[str | None, int] | None:
        """The oldest waiting message and its ticket, or None when Stop or Clear cancelled it meanwhile."""
        with self.lock:
            return self._waiting.pop(0) if self._waiting else None

    def wanted(self, ticket: int) -> bool:
        """Whether no Stop or Clear came after the message with `ticket` was taken (call under `lock`)."""
        return ticket == self._stops

    def cancel(self) -> str | None:
        """Stop or Clear: every waiting message is dropped; returns the newest dropped text (None if none)."""
        with self.lock:
            self._stops += 1
            texts = [text for text, _ in self._waiting if text]
            self._waiting.clear()
            return texts[-1] if texts else None


def render(turns: Sequence[Turn]) -> list[list[Message]]:
    """The three panes' chat messages (answers with their captions) from a session's turns."""
    panes: list[list[Message]] = [[], [], []]
    for turn in turns:
        for pane, messages in enumerate(panes):
            messages.append({"role": "user", "content": turn.user})
            messages.append({"role": "assistant", "content": turn.shown(pane)})
    return panes


def conversations(turns: Sequence[Turn]) -> list[list[Message]]:
    """What the model sees of each pane: finished turns only, answers without captions, no failures."""
    convs: list[list[Message]] = [[], [], []]
    for turn in turns:
        if turn.in_conversation:
            for pane, conv in enumerate(convs):
                conv += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.answers[pane]}]
    return convs


# ---------------------------------------------------------------------------------------------- uploads
def keep_upload(path: str | Path, folder: str | Path) -> Path:
    """Move an uploaded file out of Gradio's (URL-readable) cache into a private per-session folder.

    Returns the new path; the cache folder Gradio made for the file is removed when it is left empty.
    """
    path, folder = Path(path), Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / path.name
    counter = 1
    while target.exists():
        target = folder / f"{path.stem}-{counter}{path.suffix}"
        counter += 1
    shutil.move(str(path), target)
    discard_upload(path)  # the now empty cache folder
    return target


def discard_upload(path: str | Path | None) -> None:
    """Delete an uploaded file (if still there) and its folder when that is left empty."""
    if not path:
        return
    path = Path(path)
    try:
        path.unlink(missing_ok=True)
        path.parent.rmdir()  # only succeeds when empty
    except OSError:
        pass
