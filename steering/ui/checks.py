"""The web app's input checks (no Gradio import), with the UI's ranges, for the chat and the API alike: the
message, the settings (layer, α, sampling, seed, system prompt), the token budget, the vector chosen or
uploaded; and messages made path-free for the page.

Everything a request needs is passed in explicitly, so two users never share a vector or a multiplier.
"""

from __future__ import annotations

import dataclasses
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from steering.core.limits import (
    Limits,
    check_behavior_name,
    check_in_range,
    check_multiplier,
    check_seed,
    check_whole_number,
)
from steering.core.prompts import Message
from steering.decode.generation import SamplingSettings
from steering.errors import SteeringError

UPLOAD_PREFIX = "Uploaded: "
# The UI's slider ranges; the API enforces the same ones (max_new_tokens: Limits.max_new_tokens).
TEMPERATURE_RANGE = (0.0, 2.0)
TOP_P_RANGE = (0.05, 1.0)
# A token is rarely longer than this many characters: a longer text is refused before it is tokenized.
CHARS_PER_TOKEN_BOUND = 16


def trim_prompt(prompt: str | None, max_chars: int) -> tuple[str, bool]:
    """The prompt stripped and cut to max_chars; the flag says whether it was cut."""
    text = (prompt or "").strip()
    return (text[:max_chars].rstrip(), True) if len(text) > max_chars else (text, False)


def check_prompt(
    prompt: Any, max_chars: int, name: str = "message", if_empty: str = "", if_long: str = ": shorten it"
) -> str:
    """The prompt stripped; refused (one-line SteeringError naming `name`, then `if_empty` / `if_long`) when it
    is not text, empty, or longer than max_chars (config app.max_prompt_chars) -- never shortened silently.
    The UI and the API share it (and the prompted panes' system prompts)."""
    if prompt is not None and not isinstance(prompt, str):
        raise SteeringError(f"{name} must be text, got {type(prompt).__name__}")
    text = (prompt or "").strip()
    if not text:
        raise SteeringError(f"{name} is empty{if_empty}")
    if len(text) > max_chars:
        raise SteeringError(f"{name} is {len(text)} characters long; the limit is {max_chars}{if_long}")
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
        "add_norm": f"adds {{a}} × the vector{per}, keeping each hidden state's size",
    }
    window = (
        ""
        if recipe.minus_window is None
        else f" at the first {recipe.minus_window} positions from the end of your message only"
    )
    ratio = recipe.minus_ratio()  # strength_minus / strength: the subtracted side's own strength
    minus = "−α" if ratio == 1.0 else f"−{ratio:.3g}α"
    return (
        f"Vector size at layer {int(layer)}: **{rel:.2f}×** a typical hidden state there, so α = "
        f"{float(alpha):g} means **{rel * abs(float(alpha)):.2f}×**. Applied at {where}: +α "
        f"{ops[recipe.plus].format(a='α')}; −α {ops[recipe.minus].format(a=minus)}{window}. Too much garbles the text "
        "(the Results in the README say where for the shipped vectors)."
    )


# ---------------------------------------------------------------------------------------------- requests
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
    layer = check_whole_number(layer, "layer", 0, num_layers - 1)
    multiplier = check_multiplier(multiplier, limits, "multiplier (α)")
    max_new = check_whole_number(max_new_tokens, "max_new_tokens", 1, limits.max_new_tokens)
    temperature = check_in_range(temperature, "temperature", *TEMPERATURE_RANGE)
    top_p = check_in_range(top_p, "top_p", *TOP_P_RANGE)
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

    return re.sub(r"([\\`*_\[\]])", r"\\\1", html.escape(str(text), quote=False))


def public_message(exc: BaseException | str) -> str:
    """An error as one line for a remote user: server paths cut to their file name, no shell commands."""
    text = str(exc) if isinstance(exc, (SteeringError, str)) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    text = _ABS_PATH.sub(lambda m: Path(m.group(0).rstrip("/\\")).name or "…", text)
    parts = [p for p in text.split("; ") if "python -m " not in p and "pip install" not in p]
    return "; ".join(parts) or "the request failed"
