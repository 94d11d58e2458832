"""The app's mixing control and first-use button, kept out of app.py (which only wires them).

Mixing (steering/mixing.py): a "Mix with" dropdown (a shipped behavior or an uploaded file) and its own
strength alpha2; the added pane gets alpha1 v1 + alpha2 v2 at the layer, the subtracted pane the negatives;
the cosine between the two vectors at that layer is shown beside the control.

First use (steering/first_use.py): behaviors whose dataset ships but that have no vectors for the loaded
model are offered with a Build button; the build shows its progress with gr.Progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from steering.errors import SteeringError

NO_MIX = "(none)"
MIX_INFO = ("mixing adds both vectors at the chosen layer (CAA addition): +(α·v₁ + α₂·v₂) in the first "
            "pane, the negatives in the last; 0 or (none) = no mix")


def mix_choices(behaviors: list[str], uploads: dict[str, str] | None = None) -> list[str]:
    """The "Mix with" dropdown's entries: no mix, the shipped behaviors, this session's uploaded files."""
    return [NO_MIX, *behaviors, *list(uploads or {})]


def split_mixing(rest: tuple) -> tuple[tuple, tuple]:
    """Send's and Retry's trailing inputs as (the prompted panes' inputs, the mixing control's two values).

    The mixing control is wired last: "Mix with" (a str or None), then alpha2 (a number; the prompted panes'
    inputs end with a text box, never a number). Without them (e.g. a call from a test or a link) there is no mix.
    """
    rest = tuple(rest)
    if (len(rest) >= 2 and isinstance(rest[-1], (int, float)) and not isinstance(rest[-1], bool)
            and (rest[-2] is None or isinstance(rest[-2], str))):
        return rest[:-2], rest[-2:]
    return rest, (NO_MIX, 0.0)


def parse_mix(engine: Any, mix_choice: str | None, mix_alpha: Any, uploads: dict[str, str] | None,
              layer: int, first: str | None = None) -> tuple[Any, str]:
    """The Mix a chat turn uses, and the words its caption adds.

    Args:
        engine: the Engine.
        mix_choice: the "Mix with" entry (NO_MIX or empty: no mix).
        mix_alpha: alpha2 (a number; checked against limits.max_abs_multiplier).
        uploads: the session's uploaded files (entry -> path).
        layer: the turn's layer (the second vector is taken there).
        first: the first behavior's entry (mixing a vector with itself is refused: use α).

    Returns:
        (steering.mixing.Mix or None, e.g. ' + 2×sycophancy' or '').

    Raises:
        SteeringError: a bad alpha2, no vectors for the second behavior, a file that does not fit.
    """
    from steering.limits import check_multiplier
    from steering.mixing import Mix
    from steering.ui_chat import VectorChoice

    if not mix_choice or mix_choice == NO_MIX:
        return None, ""
    alpha2 = check_multiplier(mix_alpha if mix_alpha is not None else 0.0, engine.limits, "mixing strength α₂")
    if alpha2 == 0:
        return None, ""
    if first is not None and mix_choice == first:
        raise SteeringError(f"'{mix_choice}' is mixed with itself: choose another behavior, or change α instead")
    picked = VectorChoice.parse(mix_choice, uploads)
    vector = picked.vector(engine, layer)
    name = Path(picked.upload).name if picked.upload else str(picked.behavior)
    return Mix(alpha2, vector=vector), f" + {alpha2:g}×{name}"


def mix_note(engine: Any, choice: str | None, mix_choice: str | None, uploads: dict[str, str] | None,
             layer: Any) -> str:
    """The Markdown line beside the mixing control: cos(v1, v2) at the layer and what it means ('' for no mix).

    Never raises: a problem is shown as a one-line warning.
    """
    from steering.mixing import cosine_note
    from steering.ui_chat import VectorChoice, markdown_text, public_message

    if not mix_choice or mix_choice == NO_MIX:
        return ""
    try:
        layer = int(layer)
        v1 = VectorChoice.parse(choice, uploads).vector(engine, layer)
        v2 = VectorChoice.parse(mix_choice, uploads).vector(engine, layer)
        names = [Path(uploads[c]).name if uploads and c in uploads else str(c) for c in (choice, mix_choice)]
        return markdown_text(cosine_note(v1, v2, names[0], names[1], layer))
    except (SteeringError, ValueError, TypeError) as exc:
        return f"⚠️ {markdown_text(public_message(exc))}"


# ---------------------------------------------------------------------------- first use
def missing_note(missing: list[str], model: str) -> str:
    """The line above the Build button."""
    if not missing:
        return ""
    return (f"No vectors yet for {model} for: {', '.join(missing)}. Build them from the shipped datasets "
            "(once; they are cached and used at the model's default layer until tuned).")


def build_in_app(engine: Any, behavior: str | None, progress: Callable[..., Any] | None = None) -> tuple[str, list[str]]:
    """The Build button: build `behavior`'s vectors for the loaded model (steering.first_use.build_vectors).

    Args:
        engine: the Engine.
        behavior: a behavior whose dataset ships and that has no vectors yet.
        progress: a gr.Progress (called as progress(fraction, desc=...)).

    Returns:
        (a Markdown status line, the behaviors that still have no vectors).

    Never raises: a failure is the status line (and leaves no file: the build writes atomically at the end).
    """
    from steering.first_use import build_vectors, missing_behaviors
    from steering.ui_chat import markdown_text, public_message

    if not behavior:
        return "Choose a behavior to build vectors for.", missing_behaviors(engine)

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), desc=f"building '{behavior}' vectors: {done}/{total} pairs")

    try:
        result = build_vectors(engine, behavior, progress=report)
    except Exception as exc:  # noqa: BLE001 -- keep serving; the message says what failed
        return f"⚠️ **Not built:** {markdown_text(public_message(exc))}", missing_behaviors(engine)
    return (f"Built '{markdown_text(behavior)}' vectors: {markdown_text(result.summary())}; it is now selected.",
            missing_behaviors(engine))
