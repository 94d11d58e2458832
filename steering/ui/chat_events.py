"""The chat's events: Send (validator, quick step, queued turn), Retry, Stop, Clear, and a link's run=1.

Every handler that needs the settings gets them as one ChatSettings (steering/ui/settings.py), read from
Gradio's dict input. Stop and Clear act through the session's state (steering.ui.chat.Outbox, Turn.status),
not Gradio's cancels= (see the Outbox docstring for why). A turn itself streams in chat_turn.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from steering.errors import SteeringError
from steering.ui.chat import Outbox, conversations
from steering.ui.chat_tab import ChatTab
from steering.ui.chat_turn import Checked, busy, buttons, idle, panes_and, stream_turn
from steering.ui.checks import check_budget, check_prompt, public_message
from steering.ui.context import PRIVATE, AppContext, gpu
from steering.ui.mix import parse_mix
from steering.ui.settings import ChatSettings, Controls, SettingsError


class VectorChoiceError(SteeringError):
    """The chosen vector does not fit the request (shown at Behavior rather than at the message box)."""


class ChatEvents:
    """The chat's handlers on one app's context, tab and controls; `wire()` connects them."""

    def __init__(self, ctx: AppContext, tab: ChatTab, controls: Controls) -> None:
        self.ctx, self.tab, self.controls = ctx, tab, controls

    # ---- checks
    def check_turn(self, text: str, turns: list, settings: ChatSettings) -> Checked:
        """Every check of a chat turn before it runs: (turn settings, vector, vector name, conversations).

        Raises SteeringError (one line); SettingsError names the field; VectorChoiceError: the vector.
        """
        engine = self.ctx.engine
        turn = settings.turn(self.ctx.lm.num_layers, self.ctx.limits)
        picked = settings.vector_choice()
        try:
            vector = picked.vector(engine, turn.layer)
        except SteeringError as exc:
            raise VectorChoiceError(str(exc)) from None
        name = Path(picked.upload).name if picked.upload else str(picked.behavior)
        convs = [c + [{"role": "user", "content": text}] for c in conversations(turns)]
        check_budget(engine, convs, turn)
        return turn, vector, name, convs

    def message_problem(self, prompt: Any, turns: list) -> str | None:
        """Why the message in the box cannot be sent now (None: it can)."""
        text, limit = (prompt or "").strip(), self.ctx.max_chars
        if not text:
            return "Type a message first."
        if len(text) > limit:
            too_long = f"Your message is {len(text)} characters long; the limit is {limit}: shorten it."
            return public_message(SteeringError(too_long))
        if any(t.status == "running" for t in turns):
            return "Still answering the last message: wait for it, or press Stop."
        return None

    def check_send(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        """The Send validator: {component: gr.validate} for take_message's inputs; a problem shows at the
        message box, at Behavior (the vector) or at a prompted pane's prompt box, the panes untouched."""
        tab, settings = self.tab, self.controls.read(data)
        verdicts = {c: gr.validate(True, "") for c in data}
        prompt, turns = data.get(tab.prompt), data.get(tab.history) or []
        problem = self.message_problem(prompt, turns)
        if problem:
            verdicts[tab.prompt] = gr.validate(False, problem)
            return verdicts
        try:
            self.check_turn(prompt.strip(), turns, settings)
        except VectorChoiceError as exc:
            verdicts[tab.choice] = gr.validate(False, public_message(exc))  # Layer may be folded away
        except SteeringError as exc:
            verdicts[tab.prompt] = gr.validate(False, public_message(exc))
        try:
            settings.prompts()
        except SettingsError as exc:  # at the prompted pane's own prompt box
            verdicts[self.controls.component(exc.field)] = gr.validate(False, public_message(exc))
        return verdicts

    # ---- Send and Retry: a quick step at the click, then the queued turn
    def take_message(self, data: Mapping[Any, Any]) -> tuple:
        """Send's first, quick step (after the validator; never waits for the model): the message moves from
        the box into the session's Outbox and Send and Retry are disabled, so what is typed while the turn
        waits or streams is never erased."""
        data[self.tab.outbox].put(data[self.tab.prompt])
        return "", *busy()

    def take_retry(self, outbox: Outbox) -> tuple:
        """Retry's first, quick step: a ticket for the retried turn (a Stop before it starts cancels it)."""
        outbox.put(None)
        return busy()

    def send(self, data: Mapping[Any, Any]) -> Iterator[tuple]:
        """Send's queued step: the message taken at the click becomes a turn (see next_turn)."""
        yield from self.next_turn(data[self.tab.outbox], data[self.tab.history], self.controls.read(data))

    def retry(self, data: Mapping[Any, Any]) -> Iterator[tuple]:
        """Retry's queued step: the last turn again, with the settings of now (see next_turn)."""
        yield from self.next_turn(data[self.tab.outbox], data[self.tab.history], self.controls.read(data))

    def send_linked(self, data: Mapping[Any, Any]) -> Iterator[tuple]:
        """A link's run=1: its message is sent as if typed and sent (same checks, same queue; `send` asks for
        the GPU on Spaces, a page load without run=1 does not)."""
        message = data[self.tab.link_run]
        if not message:
            yield panes_and(None, gr.skip(), gr.skip())
            return
        data[self.tab.outbox].put(message)
        yield from self.send(data)

    def refuse(self, message: str) -> Iterator[tuple]:
        """A turn that cannot run: a warning, and Send and Retry back (they were disabled at the click)."""
        gr.Warning(message)
        yield panes_and(None, *idle())

    def next_turn(self, outbox: Outbox, turns: list, settings: ChatSettings) -> Iterator[tuple]:
        """The queued step of Send and Retry: the oldest message taken at a click (None: retry the last
        turn) becomes a turn, unless Stop or Clear cancelled it while it waited."""
        taken = outbox.take()
        if taken is None:  # cancelled while it waited: Stop put it back into the message box
            yield panes_and(None, *buttons(turns))
            return
        prompt, ticket = taken
        if prompt is None and (not turns or turns[-1].status == "running"):
            yield from self.refuse(
                "Nothing to retry yet: send a message first."
                if not turns
                else "Still answering: wait for it, or press Stop."
            )
            return
        try:  # the validator checked all this when the message was sent; things may have changed since
            text = check_prompt(prompt, self.ctx.max_chars) if prompt is not None else turns[-1].user
            checked = self.check_turn(text, turns if prompt is not None else turns[:-1], settings)
            prompts = settings.prompts()
            mix = parse_mix(
                self.ctx.engine,
                settings.mix_behavior,
                settings.mix_alpha,
                dict(settings.uploads or {}),
                checked[0].layer,
                settings.behavior,
                alpha_max=self.ctx.alpha_max,
            )  # steering/ui/mix.py
        except SteeringError as exc:
            yield from self.refuse(public_message(exc))
            return
        if prompt is None:
            turns.pop()  # Retry replaces the last turn, with the settings of now
        yield from stream_turn(self.ctx, text, turns, checked, outbox, ticket, prompts, *mix)

    # ---- Stop and Clear
    def stop(self, turns: list, outbox: Outbox, prompt: str = "") -> tuple:
        """Stop: a running turn ends as it stands ("stopped") at its next token; a message still waiting in
        the queue never runs and goes back into the message box when the box is empty (nothing is lost)."""
        back = outbox.cancel()
        for turn in turns:
            turn.stop()
        return panes_and(turns, *idle(), back if back and not (prompt or "").strip() else gr.skip())

    def clear(self, turns: list, outbox: Outbox) -> tuple:
        """Clear: stop whatever runs or waits, and start over (a message being typed stays)."""
        outbox.cancel()
        for turn in turns:
            turn.stop()
        turns.clear()
        return panes_and([], *idle())

    # ---- the wiring
    def wire(self, demo: gr.Blocks) -> list:
        """Connect Send, Enter, Retry, Stop, Clear and a link's run=1; returns the events that end a turn."""
        tab, controls, queue = self.tab, self.controls, self.ctx.queue
        turn_outputs = [*tab.chats[:3], tab.send_btn, tab.retry_btn, *tab.chats[3:]]  # prompted panes last
        turn_inputs = controls.inputs(tab.outbox, tab.history)
        # Send and Enter: the validator, then a quick step (own queue slot, no waiting) that moves the message
        # from the box into the session's Outbox and disables Send and Retry, then the queued turn; the turn
        # never writes the message box, so text typed while it waits or streams stays, and Send stays
        # disabled from the click until the turn ends.
        taken = gr.on(
            [tab.send_btn.click, tab.prompt.submit],
            self.take_message,
            controls.inputs(tab.prompt, tab.history, tab.outbox),
            [tab.prompt, tab.send_btn, tab.retry_btn],
            validator=self.check_send,
            concurrency_limit=None,
            show_progress="hidden",
            **PRIVATE,
        )  # queued (validators need the queue), never waits
        sent = taken.success(gpu(self.send), turn_inputs, turn_outputs, show_progress="minimal", **PRIVATE, **queue)
        retried = tab.retry_btn.click(
            self.take_retry, tab.outbox, [tab.send_btn, tab.retry_btn], queue=False, **PRIVATE
        ).success(gpu(self.retry), turn_inputs, turn_outputs, show_progress="minimal", **PRIVATE, **queue)
        # Stop and Clear act through the session's state (Outbox, Turn.status), not cancels= (see Outbox).
        stop_outputs = [*tab.chats[:3], tab.send_btn, tab.retry_btn, tab.prompt, *tab.chats[3:]]
        tab.stop_btn.click(self.stop, [tab.history, tab.outbox, tab.prompt], stop_outputs, queue=False, **PRIVATE)
        tab.clear_btn.click(self.clear, [tab.history, tab.outbox], turn_outputs, queue=False, **PRIVATE)
        linked = tab.link_loaded.then(  # queued: a gr.Warning from a non-queued event never reaches the page
            gpu(self.send_linked),
            controls.inputs(tab.link_run, tab.outbox, tab.history),
            turn_outputs,
            show_progress="hidden",  # a plain page load shows no queue status
            **PRIVATE,
            **queue,
        )
        return [sent, retried, linked]
