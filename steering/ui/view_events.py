"""The events that keep the Chat tab's view in step with its controls: the Behavior dropdown (pane titles,
examples, presets, its recipe's layer and α), uploads, the note under α, mixing, and first use."""

from __future__ import annotations

from typing import Any

import gradio as gr

from steering.errors import SteeringError
from steering.ui.behavior_menu import example_prompts, message_after_switch
from steering.ui.chat import discard_upload, keep_upload
from steering.ui.chat_tab import ChatTab
from steering.ui.checks import (
    UPLOAD_PREFIX,
    VectorChoice,
    check_settings,
    check_upload,
    markdown_text,
    norm_note,
    public_message,
)
from steering.ui.context import EXAMPLES, PRIVATE, AppContext
from steering.ui.demo import safe_pane_text
from steering.ui.demo_events import QUIET
from steering.ui.mix import build_in_app, first_use_view, mix_choices, mix_note
from steering.ui.presets import behavior_presets


class ViewEvents:
    """The Behavior, upload, note, mixing and first-use handlers of one app; `wire()` connects them."""

    def __init__(self, ctx: AppContext, tab: ChatTab) -> None:
        self.ctx, self.tab = ctx, tab

    def on_upload(self, path: Any, uploads: dict | None, request: gr.Request) -> tuple:
        """Check the file at once: a file that fits moves to this session's private folder, one that doesn't
        is deleted, with the reason under it; either way nothing stays in Gradio's cache."""
        ctx = self.ctx
        try:
            info = check_upload(ctx.engine, path, ctx.max_mb)
            kept = keep_upload(path, ctx.uploads.for_session(request))
        except (SteeringError, OSError) as exc:
            discard_upload(path)
            return None, gr.skip(), gr.skip(), f"⚠️ **Not loaded:** {markdown_text(public_message(exc))}"
        name = UPLOAD_PREFIX + kept.name
        uploads = {**(uploads or {}), name: str(kept)}
        choices = gr.update(choices=ctx.behavior_choices + list(uploads), value=name)
        return None, choices, uploads, f"Loaded {markdown_text(info)}; it is now selected."

    def end_session(self, request: gr.Request) -> None:
        """demo.unload: the session's uploaded files go."""
        self.ctx.uploads.remove(request)

    def update_note(self, choice: Any, uploads: dict | None, layer: Any, alpha: Any) -> str:
        """The note under α: the vector's norm and what α means at this layer (or why there is none)."""
        ctx = self.ctx
        try:
            settings = check_settings(ctx.lm.num_layers, ctx.limits, layer, alpha, 1, 0, 1, 0)
            vector = VectorChoice.parse(choice, uploads).vector(ctx.engine, settings.layer)
            return norm_note(ctx.engine, vector, settings.layer, settings.multiplier)
        except SteeringError as exc:
            return f"⚠️ {markdown_text(public_message(exc))}"

    def behavior_view(self, choice: Any) -> tuple:
        """A behavior's pane titles, prompted-pane titles and prompts, and α presets (the dropdown changed)."""
        ctx = self.ctx
        words, problem = safe_pane_text(ctx.data_folder, ctx.known(choice))
        if problem:
            gr.Warning(public_message(problem))
        titles = [*words.titles(), *words.prompted_titles()]
        presets = behavior_presets(ctx.engine, ctx.known(choice), ctx.results_folder)
        return (
            *[gr.update(label=t) for t in titles],
            words.prompts["added"],
            words.prompts["subtracted"],
            *[gr.update(value=p.label) for p in presets],
        )

    def follow_behavior(self, choice: Any) -> tuple:
        """Layer and α for a behavior chosen in the dropdown: its tuned recipe's layer and strength (the "clear"
        preset), so a behavior never runs at another behavior's settings; an uploaded file keeps them."""
        ctx = self.ctx
        if choice not in ctx.behaviors:
            return gr.skip(), gr.skip()
        try:
            recipe = ctx.engine.recipe(choice)
        except SteeringError as exc:
            gr.Warning(public_message(exc))
            return gr.skip(), gr.skip()
        return recipe.layer, behavior_presets(ctx.engine, choice, ctx.results_folder)[1].alpha

    def examples(self, choice: Any, text: Any) -> tuple:
        """The chosen behavior card's examples, and the message box's text after the switch."""
        cards = self.ctx.cards
        return (
            gr.update(samples=[[e] for e in example_prompts(cards, choice, EXAMPLES)]),
            message_after_switch(cards, choice, text, EXAMPLES) or gr.skip(),
        )

    def refresh_behaviors(self, current: Any, uploads_now: dict | None, select: str | None = None) -> tuple:
        """Per page load and after a build: the behaviors with vectors and the first-use offer as they are
        now (another visitor or the CLI may have built vectors since the app started)."""
        ctx = self.ctx
        found, choices, *updates = first_use_view(
            ctx.engine, ctx.cards, current, uploads_now, ctx.config.behavior, select
        )
        ctx.behaviors[:], ctx.behavior_choices[:] = found, choices  # later dropdown updates list them
        return tuple(updates)

    def build(self, behavior: str, current: Any, uploads_now: dict | None, progress: Any = gr.Progress()) -> tuple:  # noqa: B008
        """The first-use button: build the vectors (gr.Progress), then offer and select the behavior."""
        engine = self.ctx.engine
        status, _ = build_in_app(engine, behavior, progress)
        built = behavior in engine.behaviors()
        return (
            status,
            *self.refresh_behaviors(current, uploads_now, behavior if built else None),
            engine.recipe(behavior).layer if built else gr.skip(),
        )  # the model's default layer until tuned

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the dropdown, uploads, the note, mixing and first use."""
        ctx, tab = self.ctx, self.tab
        tab.upload.upload(
            self.on_upload, [tab.upload, tab.uploads], [tab.upload, tab.choice, tab.uploads, tab.upload_note], **PRIVATE
        )
        demo.unload(self.end_session)
        for trigger in (tab.choice.change, tab.layer.change, tab.alpha.change, demo.load):
            trigger(
                self.update_note,
                [tab.choice, tab.uploads, tab.layer, tab.alpha],
                tab.note,
                show_progress="hidden",
                **PRIVATE,
            )
        tab.choice.change(
            self.examples, [tab.choice, tab.prompt], [tab.examples.dataset, tab.prompt], queue=False, **PRIVATE
        )
        tab.choice.change(self.behavior_view, tab.choice, [*tab.chats, *tab.prompt_boxes, *tab.preset_btns], **QUIET)
        # choosing a behavior by hand (not a link) moves Layer and α to that behavior's own tuned defaults
        tab.choice.input(self.follow_behavior, tab.choice, [tab.layer, tab.alpha], **QUIET)
        mix_inputs = [tab.choice, tab.uploads, tab.mix_choice, tab.layer]
        for trigger in (tab.choice.change, tab.layer.change, tab.mix_choice.change, tab.uploads.change):
            trigger(
                lambda c, u, m, n: mix_note(ctx.engine, c, m, u, n),
                mix_inputs,
                tab.mix_cos,
                show_progress="hidden",
                **PRIVATE,
            )
        tab.uploads.change(
            lambda u: gr.update(choices=mix_choices(ctx.behavior_choices, u)), tab.uploads, tab.mix_choice, **QUIET
        )
        first_use = [tab.first_use_note, tab.build_choice, tab.first_use_row, tab.choice, tab.mix_choice]
        demo.load(self.refresh_behaviors, [tab.choice, tab.uploads], first_use, **QUIET)
        tab.build_btn.click(
            self.build,
            [tab.build_choice, tab.choice, tab.uploads],
            [tab.build_status, *first_use, tab.layer],
            **PRIVATE,
            **ctx.queue,
        )
