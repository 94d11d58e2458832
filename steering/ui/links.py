"""Links that reproduce a view of the app, and the view as commands to take home (no Gradio import).

A link's query string holds the chat tab's settings: message, behavior, alpha, layer, temperature, seed,
max_tokens (and top_p / system when they are not the defaults); `run=1` sends the message on opening.
With temperature 0 (greedy) or a fixed seed, whoever opens the link gets the same three answers.
An uploaded vector cannot travel in a link (the file stays on the server, in the uploader's session), so
no link is made for one: the reason is given instead.

The commands: the llama.cpp line (`--control-vector-scaled FILE alpha --control-vector-layer-range L L`),
FILE being the GGUF control vector that `python -m steering export-gguf` writes, and this project's
`python -m steering chat` line for the same vector, layer, alpha and sampling.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlencode

from steering.core.limits import Limits, check_seed
from steering.errors import SteeringError
from steering.ui.chat import TEMPERATURE_RANGE, TOP_P_RANGE, bounded, whole_number

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
    take("alpha", lambda s: bounded(s, "α", 0.0, min(alpha_max, limits.max_abs_multiplier)))
    take("layer", lambda s: whole_number(s, "layer", 0, num_layers - 1))
    take("temperature", lambda s: bounded(s, "temperature", *TEMPERATURE_RANGE))
    take("seed", lambda s: str(check_seed(s)))
    take("max_tokens", lambda s: whole_number(s, "max tokens", 1, limits.max_new_tokens))
    take("top_p", lambda s: bounded(s, "top_p", *TOP_P_RANGE))
    take("system", message)
    run = str(params.get("run", "")).strip().lower() in ("1", "true", "yes")
    return LinkView(**values, run=run and "message" in values, problems=tuple(problems))


def link_problems_note(view: LinkView) -> str:
    """One line for the page when a link had values the app could not use ('' when none)."""
    if not view.problems:
        return ""
    return "This link had settings the app cannot use (kept the current ones): " + "; ".join(view.problems) + "."


# ------------------------------------------------------------------------------------------------ commands
def gguf_name(vector_name: str, model_slug: str, layer: int) -> str:
    """The GGUF file the export line writes: '<vector>-<model>-layer<L>.gguf' (a file-name-safe stem)."""
    stem = vector_name.rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".gguf", ".pt"):
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{stem}-{model_slug}-layer{int(layer)}")
    return f"{safe}.gguf"


def commands(
    *,
    vector_source: str,
    vector_name: str,
    behavior: str | None,
    model: str,
    model_slug: str,
    model_file: str,
    layer: int,
    alpha: float,
    llama_scale: float,
    message: str | None,
    temperature: float,
    seed: str | None,
    max_tokens: int,
    top_p: float = 1.0,
    system: str | None = None,
    recipe_note: str = "",
) -> tuple[str, str]:
    """(llama.cpp text, this project's CLI line) for the current vector, layer and alpha.

    Args:
        vector_source: the vector set file the export reads (a shipped behavior's path relative to the
            project, or an uploaded file's name).
        vector_name: what names the exported file (the behavior or the uploaded file's name).
        behavior: the shipped behavior (None for an uploaded file: the CLI line then uses --vector).
        model: the model name for --model; model_slug: its slug (names the GGUF); model_file: the model's
            own GGUF for llama-cli -m.
        layer: the anchor layer L; alpha: the app's alpha; llama_scale: alpha in multiples of the vector
            (alpha itself for the CAA multiplier unit).
        message, temperature, seed, max_tokens, top_p, system: the sampling the panes used.
        recipe_note: how the app's panes apply the vector, when that is more than CAA at one layer.
    Returns: a shell snippet (export, then llama-cli for +alpha and -alpha) and one CLI line.
    """
    prompt = message or "What's your favorite planet?"
    sampling = ["--temp", f"{temperature:g}", "--top-p", f"{top_p:g}", "-n", str(max_tokens)]
    if seed:
        sampling += ["--seed", str(seed)]
    if layer == 0:
        llama = (
            "# llama.cpp control vectors have no layer 0 (their layers start at 1): choose layer 1 or "
            "higher for a llama.cpp line."
        )
    else:
        out = gguf_name(vector_name, model_slug, layer)
        export = ["python", "-m", "steering", "export-gguf", vector_source, out, "--layers", str(layer)]
        lines = [f"# 1. the vector at layer {layer} as a llama.cpp control vector", shlex.join(export)]
        for sign, label in ((1, "+α (added) pane"), (-1, "−α (subtracted) pane")):
            run = [
                "llama-cli",
                "-m",
                model_file,
                "--control-vector-scaled",
                out,
                f"{sign * llama_scale:g}",
                "--control-vector-layer-range",
                str(layer),
                str(layer),
                *sampling,
                "-p",
                prompt,
            ]
            step = 2 if sign > 0 else 3
            lines += [
                f"# {step}. the {label}: CAA, {sign * llama_scale:g} x the vector added at layer {layer}",
                shlex.join(run),
            ]
        if recipe_note:
            lines.append(
                f"# note: the app's panes use the recipe '{recipe_note}'; llama.cpp can only add, "
                "so its answers may differ"
            )
        llama = "\n".join(lines)
    cli = ["python", "-m", "steering", "chat", "--model", model]
    cli += ["--behavior", behavior] if behavior else ["--vector", vector_source]
    cli += [
        "--layer",
        str(layer),
        "--multiplier",
        f"{alpha:g}",
        "--max-new-tokens",
        str(max_tokens),
        "--temperature",
        f"{temperature:g}",
    ]
    if top_p < 1.0:
        cli += ["--top-p", f"{top_p:g}"]
    if seed:
        cli += ["--seed", str(seed)]
    if system:
        cli += ["--system-prompt", system]
    cli += ["--prompt", prompt]
    return llama, shlex.join(cli)


def command_text(
    engine: Any,
    choice: str | None,
    uploads: Mapping[str, str] | None,
    layer: Any,
    alpha: Any,
    message: str | None,
    temperature: Any,
    seed: Any,
    max_tokens: Any,
    top_p: Any = 1.0,
    system: str | None = None,
) -> str:
    """The app's "Copy as a command" text for the chosen vector, layer and alpha: the export-gguf line, the
    llama-cli lines for the +alpha and -alpha panes, and this project's chat line (see `commands`).

    Args: engine (the loaded model, its vectors and recipes); the chat tab's controls as Gradio sends them.
    Raises: SteeringError (one line) for a setting out of the UI's ranges or no vector chosen.
    """
    from pathlib import Path

    from steering.config import home
    from steering.io.vector_files import vector_path
    from steering.models import EMBEDDED_GGUF
    from steering.ui.chat import VectorChoice, check_settings

    checked = check_settings(
        engine.lm.num_layers,
        engine.limits,
        layer,
        alpha,
        max_tokens,
        temperature,
        top_p,
        seed if str(seed or "").strip() else None,
        False,
        system,
    )
    picked = VectorChoice.parse(choice, dict(uploads or {}))
    vector = picked.vector(engine, checked.layer)  # refuses a missing vector or layer, as the chat does
    if picked.upload:
        source = name = Path(picked.upload).name
        recipe = engine.recipe()
    else:
        path = vector_path(engine.vectors_dir, str(picked.behavior), engine.lm.slug)
        try:
            source = str(path.resolve().relative_to(home().resolve()))
        except ValueError:
            source = path.name
        name, recipe = str(picked.behavior), engine.recipe(picked.behavior)
    scale = checked.multiplier
    if recipe.unit == "relative":  # alpha x the typical hidden norm, as multiples of the vector
        scale = checked.multiplier * engine.hidden_norm(checked.layer) / max(float(vector.float().norm()), 1e-12)
    plain = recipe.band == 1 and recipe.plus == "add" and recipe.minus == "add" and recipe.unit != "relative"
    model_file = EMBEDDED_GGUF if engine.lm.slug == "smollm2-135m-instruct" else "MODEL.gguf"
    llama, cli = commands(
        vector_source=source,
        vector_name=name,
        behavior=picked.behavior,
        model=engine.lm.name,
        model_slug=engine.lm.slug,
        model_file=model_file,
        layer=checked.layer,
        alpha=checked.multiplier,
        llama_scale=round(scale, 6),
        message=message,
        temperature=checked.sampling.temperature,
        seed=None if checked.sampling.seed is None else str(checked.sampling.seed),
        max_tokens=checked.sampling.max_new_tokens,
        top_p=checked.sampling.top_p,
        system=checked.system_prompt,
        recipe_note="" if plain else recipe.with_overrides(checked.layer, checked.multiplier).describe(),
    )
    return f"{llama}\n\n# this project's command line: the same three answers as the app (+α, unsteered, −α)\n{cli}\n"
