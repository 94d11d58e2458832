"""The app's view as commands to take home (no Gradio import): the llama.cpp line
(`--control-vector-scaled FILE alpha --control-vector-layer-range L L`), FILE being the GGUF control vector
that `python -m steering export-gguf` writes, and this project's `python -m steering chat` line for the same
vector, layer, alpha and sampling.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping

from steering.config import home
from steering.embedded import EMBEDDED_GGUF
from steering.io.vector_store import vector_path
from steering.ui.checks import VectorChoice, check_settings


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
