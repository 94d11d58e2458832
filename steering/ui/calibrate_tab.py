"""The Calibrate tab: a small A/B sweep of the chat's vector (heatmap, table, a cell to use in the chat), the
per-question reliability at one layer, and the cosine similarity of two vector sets (steering/ui/calibrate.py
does the work)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr
import pandas as pd

from steering.errors import SteeringError
from steering.evaluation import plot_heatmap
from steering.evaluation.reliability import plot_histograms
from steering.ui.calibrate import (
    MAX_ITEMS,
    SMALL_MODEL_NOTE,
    cell_setting,
    default_layers,
    default_multipliers,
    format_list,
    layers_for_vector,
    question_set,
    run_sweep,
)
from steering.ui.calibrate_views import compare_sets, reliability_layer, reliability_text, sweep_reliability
from steering.ui.chat_tab import ChatTab
from steering.ui.checks import VectorChoice, markdown_text, public_message
from steering.ui.context import PRIVATE, AppContext, gpu
from steering.ui.controls_layout import VECTOR_FILE_TYPES
from steering.ui.demo_events import QUIET
from steering.ui.view_events import ViewEvents

INTRO = (
    "A small A/B sweep of the vector chosen in the Chat tab (Behavior): for each layer × multiplier, the mean "
    "probability that the model picks the behavior-matching letter (0.5 = no preference, above 0.5 = more of "
    "the behavior)."
)
RELIABILITY = (
    "### Per-question reliability\nThe same sweep, one question at a time: the histogram of each question's "
    "steerability (the slope of its p(behavior-matching letter) against α) and the share of questions the "
    "vector moves the wrong way."
)
COMPARE = (
    "### Compare vectors\nCosine similarity per layer between two vector sets: a shipped behavior, a file "
    "uploaded in the Chat tab, or a file uploaded here."
)


def sweep_controls(ctx: AppContext, cal: SimpleNamespace) -> None:
    """Layers, multipliers, how many questions and which set, Run, and the sweep's heatmap and table."""
    lm, defaults, sets = ctx.lm, ctx.defaults, ctx.question_sets
    gr.Markdown(INTRO)
    with gr.Row():
        cal.layers = gr.Textbox(
            format_list(default_layers(defaults.layer, lm.num_layers)),
            label="Layers",
            min_width=200,
            elem_id="cal-layers",
            info=f"comma-separated, 0–{lm.num_layers - 1}",
        )
        cal.mults = gr.Textbox(
            format_list(default_multipliers(defaults.multiplier)),
            label="Multipliers α",
            min_width=200,
            elem_id="cal-mults",
            info="comma-separated; negative = away from the behavior",
        )
    with gr.Row():
        cal.items = gr.Slider(
            1, MAX_ITEMS, value=12, step=1, label="A/B questions", min_width=200, elem_id="cal-items",
            info="the first N of test_ab.json",
        )  # fmt: skip
        cal.questions = gr.Dropdown(
            sets,
            value=question_set(ctx.default_behavior, {}, (sets or [None])[0], sets),
            label="Questions from datasets/<behavior>/test_ab.json",
            min_width=200,
        )
    cal.run = gr.Button("Run sweep", variant="primary", elem_id="cal-run")
    cal.status = gr.Markdown(elem_id="cal-status")
    cal.heatmap = gr.Plot(label="A/B heatmap", elem_id="cal-heatmap")
    gr.Markdown(SMALL_MODEL_NOTE)
    cal.table = gr.Dataframe(
        label="Sweep (rows: layers, columns: multipliers) — click a cell to use it in the chat",
        interactive=False,
        elem_id="cal-table",
    )
    cal.pick = gr.Markdown(elem_id="cal-pick")


def reliability_and_compare(ctx: AppContext, cal: SimpleNamespace) -> None:
    """The per-question reliability view, and Compare vectors (two sets: a dropdown or an upload each)."""
    gr.Markdown(RELIABILITY)
    cal.rel_layer = gr.Dropdown([], label="Layer", min_width=160, interactive=True, elem_id="rel-layer")
    cal.rel_plot = gr.Plot(label="Steerability per question", elem_id="rel-plot")
    cal.rel_note = gr.Markdown(elem_id="rel-note")
    gr.Markdown(COMPARE)
    with gr.Row():
        cal.pairs = []
        for side in ("A", "B"):
            with gr.Column(min_width=260):
                cal.pairs.append(
                    gr.Dropdown(ctx.behavior_choices, value=ctx.default_behavior, label=f"Vector set {side}")
                )
                cal.pairs.append(
                    gr.File(
                        label=f"or upload set {side}",
                        height=130,
                        file_types=VECTOR_FILE_TYPES,
                        elem_id=f"cmp-file-{side.lower()}",
                    )
                )
    cal.cmp_btn = gr.Button("Compare", elem_id="cmp-run")
    cal.cmp_note = gr.Markdown(elem_id="cmp-note")
    cal.cosines = gr.Plot(label="Cosine similarity per layer", elem_id="cmp-plot")


class CalibrateTab:
    """The Calibrate tab of one app: its layout (`cal`, built in the constructor) and its handlers."""

    def __init__(self, ctx: AppContext, chat: ChatTab, views: ViewEvents) -> None:
        self.ctx, self.chat, self.views, self.cal = ctx, chat, views, SimpleNamespace()
        with gr.Tab("Calibrate", id="calibrate", elem_id="tab-calibrate"):
            sweep_controls(ctx, self.cal)
            reliability_and_compare(ctx, self.cal)

    def calibrate(self, choice: Any, uploads: Any, layers_text: Any, mults_text: Any, questions: Any, count: Any):
        """A small A/B sweep of the chat tab's vector; ab_sweep itself holds the model's lock."""
        ctx = self.ctx
        try:
            sweep = run_sweep(ctx.engine, choice, uploads, layers_text, mults_text, questions, int(count))
        except Exception as exc:  # keep serving: one line where the result would have been
            return gr.skip(), gr.skip(), gr.skip(), f"⚠️ **Sweep failed:** {markdown_text(public_message(exc))}"
        fig = plot_heatmap(
            sweep.values,
            sweep.layers,
            sweep.multipliers,
            default=(ctx.defaults.layer, ctx.defaults.multiplier),
            title=f"A/B on {int(count)} '{questions}' questions: p(behavior-matching answer)",
        )
        headers, rows = sweep.table()
        return (
            fig,
            pd.DataFrame(rows, columns=headers),
            sweep.state(),
            f"Swept {len(sweep.layers)} layers × {len(sweep.multipliers)} multipliers on {int(count)} questions. "
            "Click a cell in the table to use that layer and α in the chat.",
        )

    def calibrate_layers(self, choice: Any, uploads: Any, current: Any) -> Any:
        """Calibrate's Layers for the chosen vector: its own layers when it has few (an uploaded one-layer
        vector), else the layers around the default; what is typed stays when the vector has those layers."""
        ctx = self.ctx
        try:
            available = VectorChoice.parse(choice, uploads).vector_set(ctx.engine).layers
        except Exception:  # noqa: BLE001 -- no vector yet: the box keeps its text
            return gr.skip()
        picked = layers_for_vector(available, current, ctx.defaults.layer, ctx.lm.num_layers)
        return gr.skip() if picked is None else format_list(picked)

    def pick_cell(self, state: Any, evt: gr.SelectData) -> Any:
        """A table cell clicked: its layer and α go to the chat's sliders."""
        picked = cell_setting(evt.index, state, self.ctx.alpha_max)
        if picked is None:
            return gr.skip(), gr.skip(), "Click a multiplier cell (not the layer column) to use it in the chat."
        return picked

    def show_reliability(self, state: Any, layer_value: Any) -> tuple:
        """The per-question reliability of the sweep at one layer (histogram, wrong-way share)."""
        if layer_value is None:
            return gr.skip(), ""
        try:
            rel = sweep_reliability(state, int(layer_value))
        except SteeringError as exc:
            return None, f"⚠️ {markdown_text(public_message(exc))}"
        return plot_histograms({f"layer {int(layer_value)}": rel}), reliability_text(rel, int(layer_value))

    def reliability_after_sweep(self, state: Any, chat_layer: Any) -> tuple:
        """After a sweep: the reliability view at the chat's layer (or the nearest swept one)."""
        start = reliability_layer(state, chat_layer)
        if start is None:
            return gr.update(choices=[], value=None), gr.skip(), gr.skip()
        return (gr.update(choices=[int(x) for x in state["layers"]], value=start), *self.show_reliability(state, start))

    def compare_vectors(self, choice_a: Any, file_a: Any, choice_b: Any, file_b: Any, uploads: Any) -> tuple:
        """The cosine similarity per layer of two vector sets, or why not."""
        try:
            return compare_sets(self.ctx.engine, (choice_a, file_a), (choice_b, file_b), uploads, self.ctx.max_mb), ""
        except Exception as exc:
            return None, f"⚠️ **Not compared:** {markdown_text(public_message(exc))}"

    def wire(self, sweep_state: Any) -> None:
        """Connect the sweep, the table's cells, the reliability view, Compare, and the chat's dropdown."""
        ctx, chat, cal = self.ctx, self.chat, self.cal
        done = cal.run.click(
            gpu(self.calibrate),
            [chat.choice, chat.uploads, cal.layers, cal.mults, cal.questions, cal.items],
            [cal.heatmap, cal.table, sweep_state, cal.status],
            **PRIVATE,
            **ctx.queue,
        )
        cal.table.select(self.pick_cell, sweep_state, [chat.layer, chat.alpha, cal.pick], queue=False, **PRIVATE)
        question_inputs = [chat.choice, chat.uploads, cal.questions, gr.State(ctx.question_sets)]
        chat.choice.change(question_set, question_inputs, cal.questions, **QUIET)
        chat.choice.change(self.calibrate_layers, [chat.choice, chat.uploads, cal.layers], cal.layers, **QUIET)
        dropdowns = [chat.choice, *cal.pairs[0::2]]
        chat.uploads.change(
            lambda u: [gr.update(choices=ctx.behavior_choices + list(u or {}))] * 3, chat.uploads, dropdowns, **QUIET
        )
        for file, dropdown in zip(cal.pairs[1::2], cal.pairs[0::2]):  # kept per session like the chat's uploads
            outputs = [file, dropdown, chat.uploads, cal.cmp_note]
            file.upload(self.views.on_upload, [file, chat.uploads], outputs, **PRIVATE)
        cal.cmp_btn.click(self.compare_vectors, [*cal.pairs, chat.uploads], [cal.cosines, cal.cmp_note], **PRIVATE)
        reset = lambda: (gr.update(choices=[], value=None), None, "")  # noqa: E731 -- a new update per click
        cal.run.click(reset, None, [cal.rel_layer, cal.rel_plot, cal.rel_note], **QUIET)
        rel_outputs = [cal.rel_layer, cal.rel_plot, cal.rel_note]
        done.then(self.reliability_after_sweep, [sweep_state, chat.layer], rel_outputs, **PRIVATE)
        cal.rel_layer.input(
            self.show_reliability, [sweep_state, cal.rel_layer], [cal.rel_plot, cal.rel_note], **PRIVATE
        )
