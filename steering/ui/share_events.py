"""Links and commands (steering/ui/links.py): a link's query string fills the controls on page load, Copy link
makes one for the view, Copy as a command gives the same steering as llama.cpp and CLI lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr

from steering.errors import SteeringError
from steering.ui.chat_tab import ChatTab
from steering.ui.checks import markdown_text, public_message
from steering.ui.commands import command_text
from steering.ui.context import PRIVATE, AppContext
from steering.ui.links import link_for, link_problems_note, make_view, parse_link
from steering.ui.settings import ChatSettings, Controls

COPY_JS = "(text) => { if (text) { navigator.clipboard?.writeText(text).catch(() => {}); } return []; }"


def page_address_js(inputs: set[Any], base: Any) -> str:
    """The js= of Copy link: the page's address (origin + path) into `base`'s value. Gradio passes a set of
    inputs sorted by component id (gradio.blocks._normalize_event_inputs), so `base` is at that index."""
    at = sorted(inputs, key=lambda c: c._id).index(base)
    return f"(...values) => {{ values[{at}] = window.location.origin + window.location.pathname; return values; }}"


class ShareEvents:
    """The link and command handlers of one app; `wire()` connects them."""

    def __init__(self, ctx: AppContext, tab: ChatTab, controls: Controls) -> None:
        self.ctx, self.tab, self.controls = ctx, tab, controls

    def open_link(self, request: gr.Request) -> tuple:
        """A link's query string fills the controls (a bad value is named in a warning and left out); with
        run=1 its message goes to `link_run` and the next step sends it."""
        ctx = self.ctx
        params = dict(request.query_params) if request is not None else {}
        view = parse_link(params, ctx.behaviors, ctx.lm.num_layers, ctx.limits, ctx.alpha_max, ctx.max_chars)
        if view.problems:
            gr.Warning(link_problems_note(view))
        shown = [
            None if view.run else view.message,
            view.behavior,
            view.alpha,
            view.layer,
            view.temperature,
            view.seed,
            view.max_tokens,
            view.top_p,
            view.system,
        ]
        return (*[gr.skip() if value is None else value for value in shown], view.message if view.run else None)

    def message(self, data: Mapping[Any, Any]) -> str:
        """The message a view is about: the one in the box, else the last one sent."""
        turns = data[self.tab.history]
        return (data[self.tab.prompt] or "").strip() or (turns[-1].user if turns else "")

    def copy_link(self, data: Mapping[Any, Any]) -> tuple[str, str]:
        """The link to this view (the message in the box, else the last one sent), or why there is none."""
        s = self.controls.read(data)
        view = make_view(
            self.message(data), s.behavior, s.alpha, s.layer, s.temperature, s.seed, s.max_new_tokens, s.top_p,
            s.system_prompt,
        )  # fmt: skip
        base = data[self.tab.link_base]
        link, why = link_for(base, s.behavior, s.uploads, view, bool(s.random_seed), max_chars=self.ctx.max_chars)
        return link, markdown_text(why)

    def copy_command(self, data: Mapping[Any, Any]) -> tuple[str, str]:
        """The same steering as commands (export-gguf, llama-cli, this project's chat), or why there is none."""
        s: ChatSettings = self.controls.read(data)
        try:
            return command_text(
                self.ctx.engine, s.behavior, s.uploads, s.layer, s.alpha, self.message(data), s.temperature,
                s.seed, s.max_new_tokens, s.top_p, s.system_prompt,
            ), ""  # fmt: skip
        except SteeringError as exc:  # the box says why as well as the note (never an empty box)
            why = public_message(exc)
            return f"# No command for this view: {why}", f"⚠️ {markdown_text(why)}"

    def wire(self, demo: gr.Blocks) -> None:
        """The link's page-load event (tab.link_loaded; the chat sends its run=1 message after it), and the
        two Copy buttons."""
        tab = self.tab
        tab.link_run = gr.State(None)  # the message a link asked to send (run=1)
        filled = [tab.prompt, tab.choice, tab.alpha, tab.layer, tab.temperature, tab.seed, tab.max_new, tab.top_p]
        tab.link_loaded = demo.load(
            self.open_link,
            None,
            [*filled, tab.system, tab.link_run],
            concurrency_limit=None,
            show_progress="hidden",
            **PRIVATE,
        )
        link_inputs = self.controls.inputs(tab.link_base, tab.history, tab.prompt)
        tab.link_btn.click(
            self.copy_link,
            link_inputs,
            [tab.link_box, tab.share_note],
            queue=False,
            js=page_address_js(link_inputs, tab.link_base),
            **PRIVATE,
        ).then(None, tab.link_box, None, js=COPY_JS, queue=False)
        tab.command_btn.click(
            self.copy_command,
            self.controls.inputs(tab.history, tab.prompt),
            [tab.command_box, tab.share_note],
            queue=False,
            **PRIVATE,
        ).then(None, tab.command_box, None, js=COPY_JS, queue=False)
