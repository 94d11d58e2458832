"""The app's mixing control and first-use button, kept out of app.py (which only wires them).

Mixing (steering/core/mixing.py): a "Mix with" dropdown (a shipped behavior or an uploaded file) and its own
strength alpha2; the added pane gets alpha1 v1 + alpha2 v2 at the layer, the subtracted pane the negatives;
the cosine between the two vectors at that layer is shown beside the control.

First use (steering/extract/first_use.py): behaviors whose dataset ships but that have no vectors for the loaded
model are offered with a Build button; the build shows its progress with gr.Progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from steering.core.limits import check_multiplier
from steering.core.mixing import Mix, cosine_note
from steering.errors import SteeringError
from steering.extract.first_use import build_vectors, offered_behaviors
from steering.ui.behavior_menu import dropdown_choices
from steering.ui.checks import VectorChoice, check_behavior, markdown_text, public_message

NO_MIX = "(none)"
MIX_INFO = (
    "mixing adds both vectors at the chosen layer (CAA addition): +(α·v₁ + α₂·v₂) in the first "
    "pane, the negatives in the last; 0 or (none) = no mix"
)


SELF_MIX = "'{name}' is mixed with itself: choose another behavior, or change α instead"


def check_mix_alpha(value: Any, limits: Any, alpha_max: float | None, what: str = "mixing strength α₂") -> float:
    """α₂ as a float: finite, within limits.max_abs_multiplier and, when given, within ±alpha_max (the app's
    α₂ slider range, so the app and the API accept the same values).

    Raises:
        SteeringError: not a number, not finite, or out of range (the message gives the range).
    """

    alpha2 = check_multiplier(value if value is not None else 0.0, limits, what)
    if alpha_max is not None and abs(alpha2) > alpha_max:
        raise SteeringError(
            f"{what} must be between -{alpha_max:g} and {alpha_max:g} (the app's slider range), got {alpha2:g}"
        )
    return alpha2


def no_mix(entry: Any) -> bool:
    """True for the entries that mean "no second behavior": None, "" and NO_MIX ("(none)", the app's label)."""
    return entry is None or (isinstance(entry, str) and entry.strip() in ("", NO_MIX))


def api_mix(
    engine: Any, behavior: str, mix_behavior: Any, mix_multiplier: Any, layer: int, alpha_max: float | None
) -> Any:
    """The API's mix (/compare_mix), by the app's rules: the same spellings of "no mix", the same α₂ range,
    no mixing of a behavior with itself.

    Args:
        engine: the Engine.
        behavior: the first behavior (already checked).
        mix_behavior: the second behavior's name; None, "" or "(none)" = no mix.
        mix_multiplier: α₂ (within ±alpha_max); 0 = no mix.
        layer: the layer the second vector is taken at.
        alpha_max: the app's α₂ slider bound.

    Returns:
        steering.core.mixing.Mix, or None for no mix.

    Raises:
        SteeringError: a bad α₂, an unknown second behavior, the first behavior mixed with itself.
    """

    if no_mix(mix_behavior):
        return None
    alpha2 = check_mix_alpha(mix_multiplier, engine.limits, alpha_max, "mix_multiplier")
    name = check_behavior(engine, mix_behavior)
    if alpha2 == 0:
        return None
    if name == behavior:
        raise SteeringError(SELF_MIX.format(name=name))
    return Mix(alpha2, vector=engine.vectors_for(name).vector(layer))


def mix_choices(behaviors: list[Any], uploads: dict[str, str] | None = None) -> list[Any]:
    """The "Mix with" dropdown's entries: no mix, the shipped behaviors, this session's uploaded files."""
    return [NO_MIX, *behaviors, *list(uploads or {})]


def parse_mix(
    engine: Any,
    mix_choice: str | None,
    mix_alpha: Any,
    uploads: dict[str, str] | None,
    layer: int,
    first: str | None = None,
    alpha_max: float | None = None,
) -> tuple[Any, str]:
    """The Mix a chat turn uses, and the words its caption adds.

    Args:
        engine: the Engine.
        mix_choice: the "Mix with" entry (NO_MIX or empty: no mix).
        mix_alpha: alpha2 (a number; checked against limits.max_abs_multiplier).
        uploads: the session's uploaded files (entry -> path).
        layer: the turn's layer (the second vector is taken there).
        first: the first behavior's entry (mixing a vector with itself is refused: use α).
        alpha_max: the α₂ slider's bound (checked here too: a caller may send any number).

    Returns:
        (steering.core.mixing.Mix or None, e.g. ' + 2×sycophancy' or '').

    Raises:
        SteeringError: a bad alpha2, no vectors for the second behavior, a file that does not fit.
    """

    if no_mix(mix_choice):
        return None, ""
    alpha2 = check_mix_alpha(mix_alpha, engine.limits, alpha_max)
    if alpha2 == 0:
        return None, ""
    if first is not None and mix_choice == first:
        raise SteeringError(SELF_MIX.format(name=mix_choice))
    picked = VectorChoice.parse(mix_choice, uploads)
    vector = picked.vector(engine, layer)
    name = Path(picked.upload).name if picked.upload else str(picked.behavior)
    return Mix(alpha2, vector=vector), f" + {alpha2:g}×{name}"


def mix_note(
    engine: Any, choice: str | None, mix_choice: str | None, uploads: dict[str, str] | None, layer: Any
) -> str:
    """The Markdown line beside the mixing control: cos(v1, v2) at the layer and what it means ('' for no mix).

    Never raises: a problem is shown as a one-line warning.
    """

    if no_mix(mix_choice):
        return ""
    if mix_choice == choice:  # an invalid mix: no cosine line saying they add up
        return f"⚠️ {markdown_text(SELF_MIX.format(name=mix_choice))}"
    try:
        layer = int(layer)
        v1 = VectorChoice.parse(choice, uploads).vector(engine, layer)
        v2 = VectorChoice.parse(mix_choice, uploads).vector(engine, layer)
        names = [Path(uploads[c]).name if uploads and c in uploads else str(c) for c in (choice, mix_choice)]
        return markdown_text(cosine_note(v1, v2, names[0], names[1], layer))
    except (SteeringError, ValueError, TypeError) as exc:
        return f"⚠️ {markdown_text(public_message(exc))}"


# ---------------------------------------------------------------------------- first use
def missing_note(missing: list[str], model: str, problems: dict[str, str] | None = None) -> str:
    """The line above the Build button; behaviors whose dataset does not load are named with the reason."""

    lines = []
    if missing:
        lines.append(
            f"No vectors yet for {markdown_text(model)} for: {', '.join(missing)}. Build them from the "
            "shipped datasets (once; they are cached and used at the model's default layer until tuned)."
        )
    for name, why in (problems or {}).items():
        lines.append(
            f"⚠️ '{markdown_text(name)}' cannot be built: its dataset does not load "
            f"({markdown_text(public_message(why))})."
        )
    return "\n\n".join(lines)


def first_use_view(
    engine: Any,
    cards: dict[str, Any],
    current: str | None = None,
    uploads: dict[str, str] | None = None,
    preferred: str | None = None,
    select: str | None = None,
) -> tuple:
    """The behavior controls as they are now: run on every page load and after a build, so a visitor sees
    vectors built since the app started (by another visitor, the CLI) and no stale first-use offer.

    Args:
        engine: the Engine (its vectors folder is read again).
        cards: the behavior cards (steering.core.behaviors.load_cards), for the dropdown's text.
        current: the Behavior dropdown's value; kept when it still has vectors (or is an upload).
        uploads: the session's uploaded files (entry -> path).
        preferred: the behavior to select when `current` is empty or gone (config `behavior`).
        select: a behavior to select (the one just built) when it has vectors.

    Returns:
        (behaviors with vectors, the Behavior dropdown's choices, then gr.update()s for: the first-use note,
        the "Build vectors for" dropdown, the first-use row, the Behavior dropdown, the "Mix with" dropdown).
    """
    import gradio as gr  # lazy: ui.settings imports this module without Gradio

    behaviors = engine.behaviors()
    choices = dropdown_choices(cards, behaviors)
    offered, problems = offered_behaviors(engine)
    uploads = uploads or {}
    chosen: dict[str, Any] = {"choices": choices + list(uploads)}
    if select is not None and select in behaviors:
        chosen["value"] = select
    elif current not in behaviors and current not in uploads:  # the value only changes when it must
        chosen["value"] = preferred if preferred in behaviors else (behaviors or [None])[0]
    return (
        behaviors,
        choices,
        missing_note(offered, engine.lm.name, problems),
        gr.update(choices=offered, value=offered[0] if offered else None),
        gr.update(visible=bool(offered or problems)),
        gr.update(**chosen),
        gr.update(choices=mix_choices(choices, uploads)),
    )


def build_in_app(
    engine: Any, behavior: str | None, progress: Callable[..., Any] | None = None
) -> tuple[str, list[str]]:
    """The Build button: build `behavior`'s vectors for the loaded model (steering.extract.first_use.build_vectors).

    Args:
        engine: the Engine.
        behavior: a behavior whose dataset ships and that has no vectors yet.
        progress: a gr.Progress (called as progress(fraction, desc=...)).

    Returns:
        (a Markdown status line, the behaviors that still have no vectors and a dataset that loads).

    Never raises: a failure is the status line (and leaves no file: the build writes atomically at the end).
    """

    def missing_behaviors(engine: Any) -> list[str]:
        return offered_behaviors(engine)[0]

    if not behavior:
        return "Choose a behavior to build vectors for.", missing_behaviors(engine)

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), desc=f"building '{behavior}' vectors: {done}/{total} pairs")

    try:
        result = build_vectors(engine, behavior, progress=report)
    except Exception as exc:  # noqa: BLE001 -- keep serving; the message says what failed
        return f"⚠️ **Not built:** {markdown_text(public_message(exc))}", missing_behaviors(engine)
    return (
        f"Built '{markdown_text(behavior)}' vectors: {markdown_text(result.summary())}; it is now selected.",
        missing_behaviors(engine),
    )
