"""Plain helpers for the web app (no Gradio import): a session's turns (what the panes show, what the model
sees), input checks with the UI's ranges for the chat and the API, path-free messages, private uploads.

Everything a request needs is passed in explicitly, so two users never share a vector or a multiplier.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from steering.core.limits import Limits, check_behavior_name, check_multiplier, check_seed
from steering.core.prompts import Message
from steering.decode.generation import SamplingSettings
from steering.errors import SteeringError

UPLOAD_PREFIX = "Uploaded: "
PANE_TITLES = ("Added steering", "Unsteered", "Subtracted steering")
SIGNS = (1.0, 0.0, -1.0)  # the panes' multipliers are sign x alpha (the engine's row order)
# The UI's slider ranges; the API enforces the same ones (max_new_tokens: Limits.max_new_tokens).
TEMPERATURE_RANGE = (0.0, 2.0)
TOP_P_RANGE = (0.05, 1.0)
# A token is rarely longer than this many characters: a longer text is refused before it is tokenized.
CHARS_PER_TOKEN_BOUND = 16


def pane_labels() -> tuple[str, str, str]:
    """The panes' titles. They carry no number: each answer's caption says which α made it."""
    return (f"{PANE_TITLES[0]} (+α)", f"{PANE_TITLES[1]} (α = 0)", f"{PANE_TITLES[2]} (−α)")


def trim_prompt(prompt: str | None, max_chars: int) -> tuple[str, bool]:
    """The prompt stripped and cut to max_chars; the flag says whether it was cut."""
    text = (prompt or "").strip()
    return (text[:max_chars].rstrip(), True) if len(text) > max_chars else (text, False)


def check_prompt(prompt: Any, max_chars: int, name: str = "message") -> str:
    """The prompt stripped; refused (one-line SteeringError) when it is not text, empty, or longer than
    max_chars (config app.max_prompt_chars) -- never shortened silently. The UI and the API share it."""
    if prompt is not None and not isinstance(prompt, str):
        raise SteeringError(f"{name} must be text, got {type(prompt).__name__}")
    text = (prompt or "").strip()
    if not text:
        raise SteeringError(f"{name} is empty")
    if len(text) > max_chars:
        raise SteeringError(f"{name} is {len(text)} characters long; the limit is {max_chars}: shorten it")
    return text


def check_upload(engine: Any, path: str | Path | None, max_mb: float) -> str:
    """Validate an uploaded vector file against the size limit and the model; a one-line SteeringError if not."""
    if not path:
        raise SteeringError("no file uploaded")
    path = Path(path)
    size_mb = path.stat().st_size / 2**20
    if size_mb > max_mb:
        raise SteeringError(f"{path.name} is {size_mb:.1f} MB; the limit is {max_mb:g} MB")
    try:
        vset = engine.load_vector_file(path)
    except SteeringError as exc:
        # the upload's temporary folder means nothing to the user: name the file only
        raise SteeringError(str(exc).replace(str(path), path.name)) from None
    return f"{path.name}: layers {_layer_text(vset.layers)}"


def _layer_text(layers: list[int]) -> str:
    if layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(map(str, layers))


@dataclass(frozen=True)
class VectorChoice:
    """Which vector a request uses: a shipped behavior name or an uploaded file's path."""

    behavior: str | None
    upload: str | None

    @classmethod
    def parse(cls, choice: str | None, uploads: dict[str, str] | None) -> VectorChoice:
        """The choice from the app's dropdown value: an uploaded file when `choice` names one in `uploads`,
        else a behavior name (None for an empty choice).

        Args:
            choice: the dropdown's value.
            uploads: {dropdown label: uploaded file's path} of this session.
        """
        uploads = uploads or {}
        if choice and choice in uploads:
            return cls(None, uploads[choice])
        return cls(choice or None, None)

    def vector_set(self, engine: Any) -> Any:
        """The whole validated VectorSet (all layers) of this choice."""
        if self.upload:
            try:
                return engine.load_vector_file(self.upload)
            except SteeringError as exc:
                raise SteeringError(str(exc).replace(str(self.upload), Path(self.upload).name)) from None
        if self.behavior:
            return engine.vectors_for(self.behavior)
        raise SteeringError("choose a steering vector (or upload one under Advanced)")

    def vector(self, engine: Any, layer: int) -> torch.Tensor:
        """The choice's steering vector at `layer`: (hidden_size,) tensor, residual-stream units.

        Raises:
            SteeringError: no vector chosen, an unreadable or unfitting file, or no vector for that layer (an
                upload is named by its file name, not its temporary path).
        """
        vset = self.vector_set(engine)
        try:
            return vset.vector(int(layer))
        except SteeringError as exc:
            raise SteeringError(
                str(exc).replace(str(self.upload), Path(self.upload).name) if self.upload else str(exc)
            ) from None


def norm_note(engine: Any, vector: torch.Tensor, layer: int, alpha: float, recipe: Any = None) -> str:
    """One line under the α slider: the vector's size against the residual stream and how it is applied.

    Args:
        engine: the Engine (hidden-state norms, the behavior's recipe).
        vector: (hidden,) the vector at `layer`.
        layer: the anchor layer chosen in the UI.
        alpha: the multiplier α shown on the panes.
        recipe: the steering.core.recipe.Recipe the panes use (default: engine.recipe()).
    Returns: Markdown text.
    """
    recipe = recipe if recipe is not None else engine.recipe()
    rel = engine.relative_norm(vector, int(layer))
    layers = dataclasses.replace(recipe, layer=int(layer)).layers(engine.lm.num_layers)
    band = len(layers) > 1
    where = f"layers {layers[0]}–{layers[-1]}" if band else f"layer {int(layer)}"
    per = f", split over the {len(layers)} layers" if band else ""
    each = " at each layer" if band else ""
    ops = {
        "add": f"adds {{a}} × the vector{per}",
        "clamp": f"sets the part along the vector to {{a}} × its size{each}",
        "ablate": f"removes the part along the vector{each}",
    }
    return (
        f"Vector size at layer {int(layer)}: **{rel:.2f}×** a typical hidden state there, so α = "
        f"{float(alpha):g} means **{rel * abs(float(alpha)):.2f}×**. Applied at {where}: +α "
        f"{ops[recipe.plus].format(a='α')}; −α {ops[recipe.minus].format(a='−α')}. Too much garbles the text "
        "(the Results in the README say where for the shipped vectors)."
    )


# ---------------------------------------------------------------------------------------------- requests
def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """`value` as an int in [low, high]; a one-line SteeringError for fractions, NaN, text or out of range."""
    if isinstance(value, bool) or value is None:
        raise SteeringError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise SteeringError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    try:
        number = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise SteeringError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise SteeringError(f"{name} {number} is out of range: expected {low} to {high}")
    return number


def bounded(value: Any, name: str, low: float, high: float) -> float:
    """`value` as a finite float in [low, high]; a one-line SteeringError otherwise."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise SteeringError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise SteeringError(f"{name} {value!r} is out of range: expected {low:g} to {high:g}")
    return number


@dataclass(frozen=True)
class TurnSettings:
    """One request's checked settings: what the app's sliders allow, whatever the caller sent."""

    layer: int
    multiplier: float
    sampling: SamplingSettings
    system_prompt: str | None


def check_settings(
    num_layers: int,
    limits: Limits,
    layer: Any,
    multiplier: Any,
    max_new_tokens: Any,
    temperature: Any,
    top_p: Any,
    seed: Any,
    random_seed: bool = False,
    system_prompt: str | None = None,
) -> TurnSettings:
    """Check a chat turn's or an API call's settings against the UI's ranges, before the model runs.

    Args:
        num_layers: the model's decoder layer count (layer must be in 0..num_layers-1).
        limits: the configured caps (max_new_tokens, |multiplier|).
        layer, multiplier, max_new_tokens, temperature, top_p, seed: as the UI or a remote caller sent them.
        random_seed: draw a fresh seed (the seed is then not used).
        system_prompt: the system prompt text ('' or None: the template's default).

    Returns:
        TurnSettings with the parsed values.

    Raises:
        SteeringError: one line naming the first bad value and the accepted range.
    """
    layer = whole_number(layer, "layer", 0, num_layers - 1)
    multiplier = check_multiplier(multiplier, limits, "multiplier (α)")
    max_new = whole_number(max_new_tokens, "max_new_tokens", 1, limits.max_new_tokens)
    temperature = bounded(temperature, "temperature", *TEMPERATURE_RANGE)
    top_p = bounded(top_p, "top_p", *TOP_P_RANGE)
    seed_value = None if random_seed or seed in (None, "") else check_seed(seed)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise SteeringError(f"system_prompt must be text, got {type(system_prompt).__name__}")
    return TurnSettings(
        layer,
        multiplier,
        SamplingSettings(max_new, temperature, top_p, seed_value),
        (system_prompt or "").strip() or None,
    )


def check_budget(engine: Any, conversations: Sequence[Sequence[Message]], turn: TurnSettings) -> None:
    """Refuse a turn whose prompt (system prompt + history + message) is over the token caps, unrun.

    A text far longer than the cap could hold (CHARS_PER_TOKEN_BOUND characters a token) is refused
    without tokenizing it; otherwise each pane's conversation is counted with the chat template
    (Engine.check_request) against config `limits:` and the model's context.
    """
    limit = engine.limits.max_prompt_tokens
    chars = max(sum(len(m["content"]) for m in conv) for conv in conversations) + len(turn.system_prompt or "")
    if chars > limit * CHARS_PER_TOKEN_BOUND:
        raise SteeringError(
            f"the system prompt, conversation and message are {chars} characters long, more than "
            f"the limit of {limit} tokens can hold; shorten them (or Clear the conversation)"
        )
    engine.check_request(list(conversations), turn.sampling, turn.system_prompt, turn.multiplier)


def check_behavior(engine: Any, behavior: Any) -> str:
    """A behavior name from a remote caller: a valid name with vectors for the loaded model (path-free message)."""
    if isinstance(behavior, str) and any(sep in behavior for sep in ("/", "\\", "..")):
        raise SteeringError("behavior must be a name such as 'refusal', not a path")
    name = check_behavior_name(behavior)
    known = engine.behaviors()
    if name not in known:
        raise SteeringError(f"no '{name}' vectors for this model; known behaviors: {', '.join(known) or 'none'}")
    return name


_ABS_PATH = re.compile(r"(?<![\w.~])(?:[A-Za-z]:\\|/)[^\s'\"()\[\]{},;:]*")


def markdown_text(text: str) -> str:
    """Plain text made safe to show in a gr.Markdown: < > & become HTML entities and Markdown's marks
    (* _ ` [ ] \\) are backslash-escaped, so "vec_layer_<L>_<model>.pt" shows as typed."""
    import html

    return re.sub(r"([\\`*_\[\]])", r"\\\1", html.escape(str(text), quote=False))


def public_message(exc: BaseException | str) -> str:
    """An error as one line for a remote user: server paths cut to their file name, no shell commands."""
    text = str(exc) if isinstance(exc, (SteeringError, str)) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    text = _ABS_PATH.sub(lambda m: Path(m.group(0).rstrip("/\\")).name or "…", text)
    parts = [p for p in text.split("; ") if "python -m " not in p and "pip install" not in p]
    return "; ".join(parts) or "the request failed"


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
        """What made pane `pane`'s answer: α, layer and vector, and why it ended early if it did."""
        value = SIGNS[pane] * self.multiplier
        parts = (
            ["α = 0 (unsteered)"]
            if value == 0
            else [f"{'+' if SIGNS[pane] > 0 else '−'}α = {signed(value)}", f"layer {self.layer}", self.vector]
        )
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
