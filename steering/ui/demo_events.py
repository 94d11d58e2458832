"""The demo pieces' events (steering/ui/demo.py, meter.py): the dose-response strip, the behavior meter, the
prompted panes' checkbox, and the α presets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr

from steering.errors import SteeringError
from steering.ui.chat_tab import METER_EMPTY, ChatTab
from steering.ui.checks import check_budget, check_prompt, markdown_text, public_message
from steering.ui.context import PRIVATE, AppContext, gpu
from steering.ui.demo import safe_pane_text
from steering.ui.meter import meter_html
from steering.ui.presets import behavior_presets
from steering.ui.settings import Controls
from steering.ui.strip import STRIP_BUSY, STRIP_BUTTON, STRIP_FACTORS, run_strip, strip_summary

QUIET = {"queue": False, "show_progress": "hidden", **PRIVATE}  # quick view updates: no queue, no spinner


class DemoEvents:
    """The strip, meter, prompted-panes and preset handlers of one app; `wire()` connects them."""

    def __init__(self, ctx: AppContext, tab: ChatTab, controls: Controls) -> None:
        self.ctx, self.tab, self.controls = ctx, tab, controls

    def strip(self, data: Mapping[Any, Any]) -> tuple:
        """The dose-response strip: the message in the box (else the last one sent) at −2α … 2α in one batch."""
        ctx, settings = self.ctx, self.controls.read(data)
        turns = data[self.tab.history]
        text = (data[self.tab.prompt] or "").strip() or (turns[-1].user if turns else "")
        try:
            if not text:
                raise SteeringError("type a message first: the strip answers it at 7 strengths")
            text = check_prompt(text, ctx.max_chars)
            turn = settings.turn(ctx.lm.num_layers, ctx.limits)
            vector = settings.vector_choice().vector(ctx.engine, turn.layer)
            check_budget(ctx.engine, [[{"role": "user", "content": text}]], turn)
            cards = run_strip(ctx.engine, text, vector, turn.layer, turn.multiplier, turn.sampling, turn.system_prompt)
        except Exception as exc:  # keep serving: one line where the cards would be
            return (
                gr.skip(),
                *[gr.skip()] * (2 * len(STRIP_FACTORS)),
                gr.skip(),
                f"⚠️ **No strip:** {markdown_text(public_message(exc))}",
            )
        words = safe_pane_text(ctx.data_folder, ctx.known(settings.behavior))[0]
        return (
            gr.update(visible=True),
            *[c.markdown(words) for c in cards],
            *[gr.update(value=c.use_label, visible=True) for c in cards],
            [c.alpha for c in cards],
            strip_summary(text, cards, turn.sampling.max_new_tokens),
        )

    def show_meter(self, turns: list, on: bool) -> Any:
        """The latest turn's meter under the panes; hidden when the checkbox is off."""
        readings = getattr(turns[-1], "meter", None) if turns else None
        if not on:
            return gr.update(visible=False)
        return gr.update(visible=True, value=meter_html(readings, turns[-1].layer) if readings else METER_EMPTY)

    def use_preset(self, index: int) -> Any:
        """Preset button `index`'s handler: the chosen behavior's preset α."""
        ctx = self.ctx
        return lambda choice: behavior_presets(ctx.engine, ctx.known(choice), ctx.results_folder)[index].alpha

    def wire(self, turn_events: list) -> None:
        """Connect the strip, the meter (after every turn in `turn_events`), the prompted panes' checkbox and
        the presets."""
        tab = self.tab
        tab.strip_btn.click(
            lambda: gr.update(value=STRIP_BUSY, interactive=False), None, tab.strip_btn, queue=False, **PRIVATE
        ).then(  # the strip's busy state shows on its button
            gpu(self.strip),
            self.controls.inputs(tab.prompt, tab.history),
            [tab.strip_row, *tab.strip_cards, *tab.strip_use, tab.strip_alphas, tab.strip_note],
            show_progress="minimal",
            **PRIVATE,
            **self.ctx.queue,
        ).then(lambda: gr.update(value=STRIP_BUTTON, interactive=True), None, tab.strip_btn, queue=False, **PRIVATE)
        for i, button in enumerate(tab.strip_use):
            button.click(lambda alphas, i=i: alphas[i], tab.strip_alphas, tab.alpha, **QUIET)
        for done in turn_events:
            done.then(self.show_meter, [tab.history, tab.meter_on], tab.meter_view, **QUIET)
        tab.meter_on.change(self.show_meter, [tab.history, tab.meter_on], tab.meter_view, **QUIET)
        tab.clear_btn.click(lambda: METER_EMPTY, None, tab.meter_view, **QUIET)
        tab.prompted_on.change(lambda on: gr.update(visible=bool(on)), tab.prompted_on, tab.prompted_row, **QUIET)
        for i, button in enumerate(tab.preset_btns):
            button.click(self.use_preset(i), tab.choice, tab.alpha, **QUIET)
