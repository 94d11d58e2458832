"""build_app: the whole web app on one Engine, put together from the ui modules.

The layout is made in order (header, explainer, the Chat tab, the Calibrate tab), then each part wires its
events: the links (whose page load the chat follows), the chat, the demo pieces, the view, Calibrate, and
the API. Every request carries its own settings (event inputs and per-session gr.State), so concurrent users
never share a vector or α.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from steering.config import Config
from steering.ui import chat_tab, controls_layout
from steering.ui.api import wire_api
from steering.ui.calibrate_tab import CalibrateTab
from steering.ui.chat import Outbox, discard_upload
from steering.ui.chat_events import ChatEvents
from steering.ui.context import AppContext
from steering.ui.demo import safe_pane_text
from steering.ui.demo_events import DemoEvents
from steering.ui.explainer import EXPLAINER, explainer_image
from steering.ui.presets import steered_layers
from steering.ui.share_events import ShareEvents
from steering.ui.view_events import ViewEvents


def header(ctx: AppContext) -> None:
    """The title, the model, what the three answers are, and the "What am I looking at?" explainer."""
    lm = ctx.lm
    gr.Markdown(
        f"## LLaMA Steering\n**Model:** {lm.describe()}\n\n"
        "Type a message: the same model answers three times — pushed toward the behavior (+α), "
        "as it is, and pushed away from it (−α). Each answer keeps its own conversation."
    )
    titles = safe_pane_text(ctx.data_folder, ctx.default_behavior)[0].titles()
    band = steered_layers(ctx.engine, ctx.default_behavior)
    with gr.Accordion("What am I looking at?", open=False, elem_id="explainer"):
        with gr.Row():
            gr.Image(
                explainer_image(lm.num_layers, ctx.defaults.layer, titles, band),
                show_label=False,
                interactive=False,
                buttons=[],
                min_width=300,
                scale=2,
                elem_id="explainer-picture",
            )
            gr.Markdown(EXPLAINER, min_height=0, elem_id="explainer-text")


def session_states() -> chat_tab.ChatTab:
    """A ChatTab holding the per-session states: uploads, turns (history), the Outbox of Send's messages."""
    return chat_tab.ChatTab(
        uploads=gr.State({}, delete_callback=lambda kept: [discard_upload(p) for p in (kept or {}).values()]),
        history=gr.State([]),  # this session's turns (steering.ui.chat.Turn): what the panes show and the model sees
        outbox=gr.State(Outbox()),  # messages taken at a click whose turn has not started (per session)
    )


def build_app(engine: Any, config: Config) -> gr.Blocks:
    """The app's gr.Blocks on `engine` (queued; config `app:` gives the limits, `generation:` the controls'
    starting values). Launch it with launch_options(...) (app.py)."""
    ctx = AppContext.build(engine, config)
    # Gradio's own cache cleanup for anything else uploaded (Compare vectors): files older than an hour.
    with gr.Blocks(title="LLaMA Steering", delete_cache=(600, 3600)) as demo:
        header(ctx)
        tab = session_states()
        sweep_state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat_tab.panes(ctx, tab)
                chat_tab.message_row(tab)
                chat_tab.meter_and_strip(ctx, tab)
                chat_tab.behavior_row(ctx, tab)
                controls_layout.mix_row(ctx, tab)
                controls_layout.first_use_row(ctx, tab)
                controls_layout.advanced(ctx, tab)
                controls_layout.share_row(tab)
            views = ViewEvents(ctx, tab)
            calibrate = CalibrateTab(ctx, tab, views)
        controls = controls_layout.chat_controls(tab)
        ShareEvents(ctx, tab, controls).wire(demo)  # first: the chat sends a link's message after its page load
        turn_events = ChatEvents(ctx, tab, controls).wire(demo)
        DemoEvents(ctx, tab, controls).wire(turn_events)
        views.wire(demo)
        calibrate.wire(sweep_state)
        wire_api(ctx)
    return demo.queue(max_size=config.app.max_queue)
