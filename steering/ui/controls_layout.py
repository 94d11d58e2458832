"""The Chat tab's controls below the α row: mixing, the first-use offer, Advanced, and Share.

Only components are made here; `chat_controls` says which of them hold which ChatSettings field.
"""

from __future__ import annotations

import gradio as gr

from steering.core.limits import SEED_MAX
from steering.extract.first_use import offered_behaviors
from steering.ui.chat_tab import ChatTab
from steering.ui.checks import TEMPERATURE_RANGE, TOP_P_RANGE
from steering.ui.context import AppContext
from steering.ui.explainer import tooltip_html
from steering.ui.mix import MIX_INFO, NO_MIX, missing_note, mix_choices
from steering.ui.settings import Controls

VECTOR_FILE_TYPES = [".safetensors", ".pt", ".gguf"]


def mix_row(ctx: AppContext, tab: ChatTab) -> None:
    """ "Mix with a second behavior" (steering/ui/mix.py): the behavior, its α₂, and their cosine note."""
    with gr.Accordion("Mix with a second behavior", open=False, elem_id="mix"):
        with gr.Row():
            tab.mix_choice = gr.Dropdown(
                mix_choices(ctx.behavior_choices), value=NO_MIX, label="Mix with", min_width=200, elem_id="mix-choice"
            )
            tab.mix_alpha = gr.Slider(
                -ctx.alpha_max,
                ctx.alpha_max,
                value=0.0,
                step=0.5,
                label="Its strength α₂",
                min_width=200,
                info=MIX_INFO,
                elem_id="mix-alpha",
            )
        tab.mix_cos = gr.Markdown(elem_id="mix-cos")


def first_use_row(ctx: AppContext, tab: ChatTab) -> None:
    """The offer to build vectors for a behavior that has none for this model (refreshed on every page load)."""
    missing, problems = offered_behaviors(ctx.engine)
    with gr.Row(visible=bool(missing or problems), elem_id="first-use") as tab.first_use_row:
        tab.first_use_note = gr.Markdown(missing_note(missing, ctx.lm.name, problems))
        tab.build_choice = gr.Dropdown(
            missing, value=(missing or [None])[0], label="Build vectors for", min_width=200, elem_id="build-choice"
        )
        tab.build_btn = gr.Button("Build vectors", min_width=120, elem_id="build-vectors")
    tab.build_status = gr.Markdown(elem_id="build-status")


def advanced(ctx: AppContext, tab: ChatTab) -> None:
    """Advanced: layer, token cap, sampling, seed, system prompt, and the upload of an own vector."""
    gen, layers = ctx.generation, ctx.lm.num_layers
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            tab.layer = gr.Slider(
                0,
                layers - 1,
                value=ctx.defaults.layer,
                step=1,
                label="Layer",
                info=f"where the vector is added (0–{layers - 1})",
            )
            gr.HTML(tooltip_html("layer", "What is a layer?"), elem_id="layer-tip", min_height=0)
            tab.max_new = gr.Slider(
                1,
                ctx.limits.max_new_tokens,
                value=gen.max_new_tokens,
                step=1,
                label="Max new tokens",
                elem_id="max-new-tokens",
            )
        with gr.Row():
            tab.temperature = gr.Slider(
                *TEMPERATURE_RANGE,
                value=gen.temperature,
                step=0.05,
                label="Temperature",
                info="0 = always the most likely word",
            )
            tab.top_p = gr.Slider(*TOP_P_RANGE, value=gen.top_p, step=0.05, label="Top-p")
        with gr.Row():
            # Text, not gr.Number: the browser sends numbers as floats, which alter seeds above 2**53.
            tab.seed = gr.Textbox(
                value=str(gen.seed or 0),
                label="Seed",
                elem_id="seed",
                max_lines=1,
                info=f"0 to {SEED_MAX}; same seed, same answers (when temperature > 0)",
            )
            tab.random_seed = gr.Checkbox(False, label="New random seed every time")
        tab.system = gr.Textbox(
            value=gen.system_prompt or "",
            label="System prompt",
            placeholder="(empty: the model's own default)",
            lines=2,
        )
        gr.Markdown(
            f"**Your own vector** (optional): this project's `.safetensors`, one "
            f"`vec_layer_<L>_<model>.pt` file in the CAA paper's layout, or a GGUF control "
            f"vector (`.gguf`), up to {ctx.max_mb:g} MB."
        )
        tab.upload = gr.File(label="Upload a vector file", file_types=VECTOR_FILE_TYPES, elem_id="upload")
        tab.upload_note = gr.Markdown()


def share_row(tab: ChatTab) -> None:
    """Share this view: Copy link, Copy as a command, and where they show."""
    with gr.Accordion("Share this view: a link, or the same steering as a command", open=False, elem_id="share"):
        with gr.Row():
            tab.link_btn = gr.Button("Copy link", size="sm", min_width=120, elem_id="copy-link")
            tab.command_btn = gr.Button("Copy as a command", size="sm", min_width=120, elem_id="copy-command")
        tab.link_base = gr.Textbox(visible=False)  # the page's address, filled in the browser (js=)
        tab.link_box = gr.Textbox(
            label="Link to this view (opens with these settings and sends the message)",
            interactive=False,
            max_lines=3,
            buttons=["copy"],
            elem_id="link",
        )
        tab.share_note = gr.Markdown(elem_id="share-note")
        tab.command_box = gr.Code(
            label="llama.cpp and this project's command line", language="shell", interactive=False, elem_id="command"
        )


def chat_controls(tab: ChatTab) -> Controls:
    """Which Chat tab component holds which ChatSettings field (steering/ui/settings.py)."""
    return Controls(
        {
            "behavior": tab.choice,
            "uploads": tab.uploads,
            "layer": tab.layer,
            "alpha": tab.alpha,
            "max_new_tokens": tab.max_new,
            "temperature": tab.temperature,
            "top_p": tab.top_p,
            "seed": tab.seed,
            "random_seed": tab.random_seed,
            "system_prompt": tab.system,
            "prompted": tab.prompted_on,
            "prompted_added": tab.prompt_boxes[0],
            "prompted_subtracted": tab.prompt_boxes[1],
            "mix_behavior": tab.mix_choice,
            "mix_alpha": tab.mix_alpha,
        }
    )
