"""One chat turn in the panes: the outputs every chat event returns (the panes, Send and Retry: busy or idle)
and the streaming of one turn (stream_turn) with its behavior meter. The events that start, stop and clear
turns are in chat_events.py.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any, Iterator

import gradio as gr

from steering.decode.generation import stream
from steering.errors import SteeringError
from steering.ui.chat import Outbox
from steering.ui.checks import public_message
from steering.ui.context import AppContext
from steering.ui.demo import DemoTurn, meter_titles, prompted_conversations, render_panes, safe_pane_text
from steering.ui.meter import Meter, turn_readings


def busy() -> tuple:
    """Send and Retry while a turn streams (Send says so: the busy state is visible). New updates every time:
    Gradio pops "value" out of an update dict it sends, so a shared one would show the label only once."""
    return gr.update(interactive=False, value="⏳ Generating…"), gr.update(interactive=False)


def idle() -> tuple:
    """Send and Retry when no turn of the session runs (new updates every time, as busy())."""
    return gr.update(interactive=True, value="Send"), gr.update(interactive=True)


Checked = tuple[Any, Any, str, list]  # (TurnSettings, vector, vector name, the panes' conversations)


def panes_and(turns: list | None, *rest: Any) -> tuple:
    """A chat event's outputs: the three panes, `rest` (Send, Retry, ...), then the two prompted panes
    (steering.ui.demo.render_panes; turns None: gr.skip() for every pane)."""
    panes = render_panes(turns) if turns is not None else [gr.skip()] * 5
    return (*panes[:3], *rest, *panes[3:])


def buttons(turns: list) -> tuple:
    """Send and Retry: disabled while one of the session's turns runs, enabled otherwise."""
    return busy() if any(turn.status == "running" for turn in turns) else idle()


def stream_turn(
    ctx: AppContext,
    text: str,
    turns: list,
    checked: Checked,
    outbox: Outbox,
    ticket: int,
    prompts: tuple[str, str] | None = None,
    mix: Any = None,
    mix_words: str = "",
) -> Iterator[tuple]:
    """Stream one turn of the app's context `ctx` into the panes: (3 panes, Send, Retry, 2 prompted panes)
    per update.

    The turn is added to the session's `turns` at once (the message shows) unless Stop or Clear came
    after its click (`ticket`, see steering.ui.chat.Outbox), and its answers grow in place. Stop or Clear
    end it at the next token with one last update of its own (so no earlier update can land after it),
    a lost connection closes it; either way the model stops (leaving the stream sets its stop event).
    A failure is shown in the panes but never becomes part of the conversation.
    """
    settings, vector, name, convs = checked
    # the prompted panes (unsteered, own system prompts) run in the same batch: Engine.compare(extra=)
    extra = prompted_conversations(turns, text, prompts) if prompts else ()
    sampling = settings.sampling
    turn = DemoTurn(
        text, settings.multiplier, settings.layer, name + mix_words, sampling.max_new_tokens, prompts=prompts
    )
    try:  # the subtracted side's own strength, for its caption: the recipe Engine.compare steers the panes with
        turn.minus_ratio = ctx.engine.recipe().minus_ratio()
    except SteeringError:  # a broken defaults file: Engine.compare below fails and the panes say why
        pass
    with outbox.lock:  # atomic against Stop: either cancelled before it shows, or shown and then stopped
        wanted = outbox.wanted(ticket)
        if wanted:
            turns.append(turn)
    if not wanted:
        yield panes_and(None, *buttons(turns))
        return
    yield panes_and(turns, *busy())  # the message box is no output: take_message emptied it at the click
    reader = turn_meter(ctx, vector, settings.layer)
    finished: dict[str, Any] = {}

    def call(**kwargs: Any) -> Any:
        finished["result"] = ctx.engine.compare(**kwargs, meter=reader)
        return finished["result"]

    kwargs = {"layer": settings.layer, "multiplier": settings.multiplier, "settings": sampling}
    try:
        with closing(
            stream(
                call,
                conversations=convs,
                vector=vector,
                system_prompt=settings.system_prompt,
                extra=extra,
                mix=mix,
                **kwargs,
            )
        ) as updates:
            for texts in updates:
                if turn.status != "running" or not any(t is turn for t in turns):
                    break  # stopped or cleared meanwhile: leaving the stream stops the model
                turn.answers = list(texts)
                yield panes_and(turns, gr.skip(), gr.skip())
            else:
                result = finished["result"]
                turn.finish(result.texts, result.new_tokens, result.stopped)
                if reader is not None:
                    words = safe_pane_text(ctx.data_folder, ctx.known(name))[0]
                    tokenizer = ctx.lm.tokenizer
                    turn.meter = turn_readings(tokenizer, reader, result.token_ids, meter_titles(words))
    except GeneratorExit:  # the browser went away (or Gradio cancelled the job)
        turn.stop()
        raise
    except Exception as exc:  # keep serving: the message goes where the answer would have been
        turn.fail(public_message(exc))
    yield panes_and(turns, *buttons(turns))


def turn_meter(ctx: AppContext, vector: Any, layer: int) -> Any:
    """The behavior meter's reader for this turn (steering/ui/meter.py), on the eager path only."""
    if not ctx.meter_read:
        return None
    try:
        return Meter.for_engine(ctx.engine, vector, layer)
    except Exception:  # noqa: BLE001 -- no meter is no reason to fail the turn
        return None
