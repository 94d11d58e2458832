"""The Chat tab's layout: the five panes, the message row, the meter and the strip, Behavior and α.

Only components are made here (no events; those are in chat_events.py, view_events.py, share_events.py).
The controls below the α row (mixing, first use, Advanced, Share) are in controls_layout.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from steering.ui.behavior_menu import example_prompts
from steering.ui.context import EXAMPLES, AppContext
from steering.ui.demo import safe_pane_text
from steering.ui.explainer import tooltip_html
from steering.ui.presets import behavior_presets
from steering.ui.strip import STRIP_BUTTON, STRIP_FACTORS

# The behavior meter (steering/ui/meter.py), titled like the panes (meter_titles). It is read at every turn on
# the eager path, where it costs under 5% of decode time (README, "Behavior meter"), and shown unless its
# checkbox is off; on the compiled / CUDA-graph fast path it is not read (no Python hook in a captured step).
METER_EMPTY = '<div class="meter meter-empty">The behavior meter shows here after the next answer.</div>'


class ChatTab(SimpleNamespace):
    """The Chat tab's components by name (chats: the five panes, the prompted two last; prompt_boxes: the
    prompted panes' system prompts; the rest as named in chat_tab.py and controls_layout.py)."""


def _chatbot(label: str, elem_id: str, min_height: int, max_height: int) -> gr.Chatbot:
    return gr.Chatbot(
        label=label,
        height=None,
        min_height=min_height,
        max_height=max_height,
        feedback_options=None,
        buttons=["copy_all"],
        elem_id=elem_id,
    )


def panes(ctx: AppContext, tab: ChatTab) -> None:
    """The three panes (+α, unsteered, −α) and the two prompted panes with their system prompt boxes."""
    words = safe_pane_text(ctx.data_folder, ctx.default_behavior)[0]
    with gr.Row(elem_id="panes", equal_height=True):
        tab.chats = []
        for label, key in zip(words.titles(), ("added", "unsteered", "subtracted")):
            with gr.Column(min_width=300):
                tab.chats.append(_chatbot(label, f"pane-{key}", 200, 460))
    tab.prompted_on = gr.Checkbox(
        False,
        label="Also ask by prompting: the same model, unsteered, with a system "
        "prompt asking for the behavior (and one asking to avoid it)",
        elem_id="prompted-on",
    )
    with gr.Row(visible=False, elem_id="prompted") as tab.prompted_row:
        tab.prompt_boxes = []
        for side, title in zip(("added", "subtracted"), words.prompted_titles()):
            with gr.Column(min_width=300):
                tab.chats.append(_chatbot(title, f"pane-prompted-{side}", 160, 360))
                tab.prompt_boxes.append(
                    gr.Textbox(
                        words.prompts[side],
                        lines=2,
                        max_lines=6,
                        label="System prompt of this pane (edit it)",
                        elem_id=f"prompted-{side}-prompt",
                    )
                )


def message_row(tab: ChatTab) -> None:
    """The message box, Send, and Stop / Retry / Clear / the strip's button."""
    with gr.Row():
        tab.prompt = gr.Textbox(
            label="Your message",
            show_label=False,
            scale=5,
            placeholder="Type a message and press Enter or Send",
            min_width=220,
            max_lines=6,
            autofocus=True,
            elem_id="prompt",
        )
        tab.send_btn = gr.Button("Send", variant="primary", scale=1, min_width=100, elem_id="send")
    with gr.Row():
        tab.stop_btn = gr.Button("Stop", size="sm", min_width=80, elem_id="stop")
        tab.retry_btn = gr.Button("Retry", size="sm", min_width=80, elem_id="retry")
        tab.clear_btn = gr.Button("Clear", size="sm", min_width=80, elem_id="clear")
        tab.strip_btn = gr.Button(STRIP_BUTTON, size="sm", min_width=80, elem_id="strip-run")


def meter_and_strip(ctx: AppContext, tab: ChatTab) -> None:
    """The behavior meter (checkbox and view) and the dose-response strip's cards (hidden until used)."""
    on = ctx.meter_read
    tab.meter_on = gr.Checkbox(
        on,
        interactive=on,
        elem_id="meter-on",
        label="Behavior meter: shade each answer's words by how far the model's "
        "hidden state points along the steering vector",
        info=None if on else "Off on the compiled / CUDA-graph fast path (the meter needs the eager path).",
    )
    tab.meter_view = gr.HTML(METER_EMPTY, visible=on, elem_id="meter")
    tab.strip_note = gr.Markdown(elem_id="strip-note")
    with gr.Row(elem_id="strip", visible=False) as tab.strip_row:  # shown with the first strip
        tab.strip_cards, tab.strip_use = [], []
        for i in range(len(STRIP_FACTORS)):
            with gr.Column(min_width=140):
                tab.strip_cards.append(gr.Markdown(elem_id=f"strip-card-{i}"))
                tab.strip_use.append(gr.Button("Use", size="sm", visible=False, elem_id=f"strip-use-{i}"))
    tab.strip_alphas = gr.State([])


def behavior_row(ctx: AppContext, tab: ChatTab) -> None:
    """The examples, Behavior, α, its presets and the note under them."""
    tab.examples = gr.Examples(
        example_prompts(ctx.cards, ctx.default_behavior, EXAMPLES),
        inputs=tab.prompt,
        label="Examples (click one, then Send)",
    )
    with gr.Row():
        tab.choice = gr.Dropdown(
            ctx.behavior_choices,
            value=ctx.default_behavior,
            label="Behavior (steering vector)",
            min_width=280,
            info=None if ctx.behaviors else "No vectors for this model yet: upload one (Advanced).",
        )
        tab.alpha = gr.Slider(
            0,
            ctx.alpha_max,
            value=ctx.defaults.multiplier,
            step=0.5,
            label="Steering strength α",
            min_width=280,
            info="0 = no steering; the first answer gets +α, the last −α",
        )
    with gr.Row(elem_id="presets"):
        gr.HTML(tooltip_html("alpha", "What is α?"), elem_id="alpha-tip", min_height=0, min_width=110)
        tab.preset_btns = [
            gr.Button(p.label, size="sm", min_width=90, elem_id=f"preset-{i}")
            for i, p in enumerate(behavior_presets(ctx.engine, ctx.default_behavior, ctx.results_folder))
        ]
    tab.note = gr.Markdown()
