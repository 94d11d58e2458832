"""Links that reproduce a view of the app, and the view as commands to take home (no Gradio import).

A link's query string holds the chat tab's settings: message, behavior, alpha, layer, temperature, seed,
max_tokens (and top_p / system when they are not the defaults); `run=1` sends the message on opening.
With temperature 0 (greedy) or a fixed seed, whoever opens the link gets the same three answers.
An uploaded vector cannot travel in a link (the file stays on the server, in the uploader's session), so
no link is made for one: the reason is given instead.

The same view as commands (llama.cpp, this project's CLI) is in commands.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlencode

from steering.core.limits import Limits, check_in_range, check_seed, check_whole_number
from steering.errors import SteeringError
from steering.ui.checks import TEMPERATURE_RANGE, TOP_P_RANGE

# The query keys, in the order a link writes them.
KEYS = ("message", "behavior", "alpha", "layer", "temperature", "seed", "max_tokens", "top_p", "system", "run")
UPLOAD_NOTE = (
    "An uploaded vector cannot travel in a link: the file stays on this server, in your session, so "
    "a link would open with another vector and show different answers. Choose a shipped behavior "
    "for a link, or send the file along with the settings."
)


@dataclass(frozen=True)
class LinkView:
    """The settings a link carries; None = not in the link (the control keeps its value)."""

    message: str | None = None
    behavior: str | None = None
    alpha: float | None = None
    layer: int | None = None
    temperature: float | None = None
    seed: str | None = None  # as typed (text: seeds above 2**53 stay exact)
    max_tokens: int | None = None
    top_p: float | None = None
    system: str | None = None
    run: bool = False
    problems: tuple[str, ...] = field(default=())

    def query(self) -> str:
        """The URL query string (without '?'): the keys that are set, in KEYS order, URL-encoded."""
        pairs = []
        for key in KEYS:
            value = getattr(self, key)
            if key == "run":
                if value:
                    pairs.append(("run", "1"))
            elif value is not None and value != "":
                pairs.append((key, f"{value:g}" if isinstance(value, float) else str(value)))
        return urlencode(pairs)


def make_view(
    message: str | None,
    behavior: str | None,
    alpha: Any,
    layer: Any,
    temperature: Any,
    seed: Any,
    max_tokens: Any,
    top_p: Any = 1.0,
    system: str | None = None,
    run: bool = True,
) -> LinkView:
    """The view of the current controls (top_p 1 and an empty system prompt are left out: the defaults)."""
    top = float(top_p) if top_p is not None else 1.0
    return LinkView(
        message=(message or "").strip() or None,
        behavior=behavior or None,
        alpha=float(alpha),
        layer=int(layer),
        temperature=float(temperature),
        seed=str(seed).strip() or None,
        max_tokens=int(max_tokens),
        top_p=None if top >= 1.0 else top,
        system=(system or "").strip() or None,
        run=run and bool((message or "").strip()),
    )


def link_for(
    base_url: str | None,
    choice: str | None,
    uploads: Mapping[str, str] | None,
    view: LinkView,
    random_seed: bool = False,
    max_chars: int | None = None,
) -> tuple[str, str]:
    """(link, note) for the current view; ('', reason) when no faithful link can be made.

    Args:
        base_url: the page's address without its query (the browser's location; '' gives a relative link).
        choice: the Behavior dropdown's value; uploads: the session's {dropdown name: file path}.
        view: make_view(...) of the controls.
        random_seed: "New random seed every time" is on (answers differ at temperature > 0).
        max_chars: the app's max_prompt_chars: a message or system prompt over it gets no link (Send would
            refuse it, and a link that long fails to open), the reason instead.
    """
    if choice and uploads and choice in uploads:
        return "", UPLOAD_NOTE
    if max_chars is not None:
        for what, text in (("your message", view.message), ("the system prompt", view.system)):
            if text and len(text) > max_chars:
                return "", f"No link: {what} is {len(text)} characters long; the limit is {max_chars}: shorten it."
    if not view.behavior:
        return "", "Choose a behavior first: the link names the steering vector by its behavior."
    base = (base_url or "").split("?", 1)[0].split("#", 1)[0]
    link = f"{base}?{view.query()}"
    if random_seed and (view.temperature or 0) > 0:
        note = (
            "Link made, but 'New random seed every time' is on: it opens with the seed shown, so the answers "
            "match only when you untick it and send again."
        )
    elif not view.message:
        note = "Link made (no message yet: it fills the settings only)."
    else:
        note = "Link made: it opens with these settings and sends the message; " + (
            "greedy decoding (temperature 0), so the same three answers."
            if not view.temperature
            else f"seed {view.seed}, so the same three answers."
        )
    return link, note


def parse_link(
    params: Mapping[str, str] | None,
    behaviors: list[str],
    num_layers: int,
    limits: Limits,
    alpha_max: float,
    max_chars: int,
) -> LinkView:
    """The view a link's query parameters ask for, each value checked with the UI's ranges.

    A bad value is left out (the control keeps its value) and named in `problems` (one line each), so a
    link never half-works silently. Unknown keys are ignored.
    """
    params = params or {}
    values: dict[str, Any] = {}
    problems: list[str] = []

    def take(key: str, parse) -> None:
        raw = params.get(key)
        if raw is None or str(raw).strip() == "":
            return
        try:
            values[key] = parse(str(raw).strip())
        except (SteeringError, ValueError) as exc:
            problems.append(f"{key}: {exc}")

    def message(text: str) -> str:
        if len(text) > max_chars:
            raise SteeringError(f"{len(text)} characters long; the limit is {max_chars}")
        return text

    def behavior(name: str) -> str:
        if name not in behaviors:
            raise SteeringError(f"'{name}' is not a behavior of this model (known: {', '.join(behaviors) or 'none'})")
        return name

    take("message", message)
    take("behavior", behavior)
    take("alpha", lambda s: check_in_range(s, "α", 0.0, min(alpha_max, limits.max_abs_multiplier)))
    take("layer", lambda s: check_whole_number(s, "layer", 0, num_layers - 1))
    take("temperature", lambda s: check_in_range(s, "temperature", *TEMPERATURE_RANGE))
    take("seed", lambda s: str(check_seed(s)))
    take("max_tokens", lambda s: check_whole_number(s, "max tokens", 1, limits.max_new_tokens))
    take("top_p", lambda s: check_in_range(s, "top_p", *TOP_P_RANGE))
    take("system", message)
    run = str(params.get("run", "")).strip().lower() in ("1", "true", "yes")
    return LinkView(**values, run=run and "message" in values, problems=tuple(problems))


def link_problems_note(view: LinkView) -> str:
    """One line for the page when a link had values the app could not use ('' when none)."""
    if not view.problems:
        return ""
    return "This link had settings the app cannot use (kept the current ones): " + "; ".join(view.problems) + "."
