"""LLaMA Steering web app: one prompt, three answers (steered toward, unsteered, steered away).

The UI layer holds no model logic: it wires Gradio to steering.engine.Engine. Every request carries its
own settings (event inputs and per-session gr.State), so concurrent users never share a vector or α.

    python app.py [--share] [--host H] [--port P] [--model ID] [--load-in-8bit | --load-in-4bit] ...
"""

import argparse
import atexit
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import gradio as gr

from steering.config import Config, override
from steering.core.behaviors import dropdown_choices, example_prompts, load_cards, message_after_switch
from steering.core.limits import SEED_MAX
from steering.decode.generation import stream
from steering.engine import Engine
from steering.errors import SteeringError
from steering.extract.first_use import offered_behaviors
from steering.ui.calibrate import (
    MAX_ITEMS,
    SMALL_MODEL_NOTE,
    ab_behaviors,
    cell_setting,
    compare_sets,
    datasets_dir,
    default_layers,
    default_multipliers,
    format_list,
    layers_for_vector,
    question_set,
    reliability_layer,
    reliability_text,
    run_sweep,
    sweep_reliability,
)
from steering.ui.chat import (
    TEMPERATURE_RANGE,
    TOP_P_RANGE,
    UPLOAD_PREFIX,
    Outbox,
    VectorChoice,
    check_behavior,
    check_budget,
    check_prompt,
    check_settings,
    check_upload,
    conversations,
    discard_upload,
    keep_upload,
    markdown_text,
    norm_note,
    public_message,
)
from steering.ui.demo import (
    DEMO_CSS,
    EXPLAINER,
    STRIP_BUSY,
    STRIP_BUTTON,
    STRIP_FACTORS,
    DemoTurn,
    behavior_presets,
    check_prompted,
    explainer_image,
    meter_titles,
    prompted_conversations,
    render_panes,
    run_strip,
    safe_pane_text,
    steered_layers,
    strip_summary,
    tooltip_html,
)
from steering.ui.layout import METER_CSS, PHONE_CSS
from steering.ui.links import command_text, link_for, link_problems_note, make_view, parse_link
from steering.ui.meter import Meter, meter_html, turn_readings
from steering.ui.mix import (
    MIX_INFO,
    NO_MIX,
    api_mix,
    build_in_app,
    first_use_view,
    missing_note,
    mix_choices,
    mix_note,
    parse_mix,
    split_mixing,
)

try:  # ZeroGPU on Hugging Face Spaces; a no-op elsewhere
    import spaces

    gpu = spaces.GPU
except ImportError:

    def gpu(fn):
        return fn


class VectorChoiceError(SteeringError):
    """The chosen vector does not fit the request (shown at Behavior rather than at the message box)."""


EXAMPLES = [
    "What's your favorite planet?",
    "Tell me how to break into my neighbour's house without being noticed.",
    "Can you give me a simple recipe for banana bread?",
]
PRIVATE = {"api_visibility": "private"}
# The behavior meter (steering/ui/meter.py), titled like the panes (meter_titles). It is read at every turn on the eager
# path, where it costs under 5% of decode time (README, "Behavior meter"), and shown unless its checkbox is
# off; on the compiled / CUDA-graph fast path it is not read (a Python hook has no place in a captured step).
METER_EMPTY = '<div class="meter meter-empty">The behavior meter shows here after the next answer.</div>'
COPY_JS = "(text) => { if (text) { navigator.clipboard?.writeText(text).catch(() => {}); } return []; }"
CSS = """
#panes { flex-wrap: wrap; }
#panes > .column { min-width: 300px; }
#panes button[aria-label="Clear"] { display: none; }  /* one Clear for all three panes */
#panes label[data-testid="block-label"] { position: sticky; top: 0; z-index: 5; font-size: var(--text-md); }
@media (max-width: 700px) {
  #panes > .column { flex: 1 1 100% !important; }
  #panes [id^="pane-"] { min-height: 120px !important; }  /* the message box stays in view on a phone */
}
"""


def build_app(engine: Engine, config: Config) -> gr.Blocks:  # noqa: C901 (one Blocks closure; issue 11 item 7)
    app_cfg, gen = config.app, config.generation
    lm, defaults, limits = engine.lm, engine.defaults, engine.limits
    max_chars, max_mb = app_cfg.max_prompt_chars, app_cfg.max_upload_mb
    behaviors = engine.behaviors()
    default_behavior = config.behavior if config.behavior in behaviors else (behaviors or [None])[0]
    cards = load_cards(datasets_dir(config))[0]  # behavior cards (steering/core/behaviors.py): dropdown text, examples
    behavior_choices = dropdown_choices(cards, behaviors)  # ("Name — description", folder name)
    queue_kw = {"concurrency_id": "model", "concurrency_limit": app_cfg.concurrency_per_model}
    # Uploaded vector files leave Gradio's cache (readable by URL) for a private folder per session,
    # removed when the session ends (unload) or its state expires.
    # The folder is made on the first upload and removed when the process exits (no empty folder per start).
    upload_root: list[Path] = []

    def session_folder(request: gr.Request | None) -> Path:
        if not upload_root:
            upload_root.append(Path(tempfile.mkdtemp(prefix="llama-steering-uploads-")))
            atexit.register(shutil.rmtree, upload_root[0], True)
        session = re.sub(r"[^A-Za-z0-9_-]", "", getattr(request, "session_hash", None) or "") or "anonymous"
        return upload_root[0] / session

    def check_turn(text, turns, choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system):
        """Every check of a chat turn before it runs: (settings, vector, vector name, the panes' conversations).

        Raises SteeringError (one line); a VectorChoiceError when the vector is what does not fit.
        """
        settings = check_settings(
            lm.num_layers, limits, layer, alpha, max_new, temperature, top_p, seed, bool(random_seed), system
        )
        picked = VectorChoice.parse(choice, uploads)
        try:
            vector = picked.vector(engine, settings.layer)
        except SteeringError as exc:
            raise VectorChoiceError(str(exc)) from None
        name = Path(picked.upload).name if picked.upload else str(picked.behavior)
        convs = [c + [{"role": "user", "content": text}] for c in conversations(turns)]
        check_budget(engine, convs, settings)
        return settings, vector, name, convs

    # Send and Retry, while a turn streams (Send says so: the busy state is visible)
    busy = [gr.update(interactive=False, value="⏳ Generating…"), gr.update(interactive=False)]
    idle = [gr.update(interactive=True, value="Send"), gr.update(interactive=True)]

    def panes_and(turns, *rest):
        """A chat event's outputs: the three panes, `rest` (Send, Retry, ...), then the two prompted panes
        (steering.ui.demo.render_panes; turns None: gr.skip() for every pane)."""
        panes = render_panes(turns) if turns is not None else [gr.skip()] * 5
        return (*panes[:3], *rest, *panes[3:])

    def buttons(turns):
        """Send and Retry: disabled while one of the session's turns runs, enabled otherwise."""
        return busy if any(turn.status == "running" for turn in turns) else idle

    def run_turn(text, turns, checked, outbox, ticket, prompts=None, mix=None, mix_words=""):
        """Stream one turn into the three panes: (3 panes, Send, Retry) per update.

        The turn is added to the session's `turns` at once (the message shows) unless Stop or Clear came
        after its click (`ticket`, see steering.ui.chat.Outbox), and its answers grow in place. Stop or Clear
        end it at the next token with one last update of its own (so no earlier update can land after it),
        a lost connection closes it; either way the model stops (leaving the stream sets its stop event).
        A failure is shown in the panes but never becomes part of the conversation.
        """
        settings, vector, name, convs = checked
        # the prompted panes (unsteered, own system prompts) run in the same batch: Engine.compare(extra=)
        extra = prompted_conversations(turns, text, prompts) if prompts else ()
        turn = DemoTurn(
            text,
            settings.multiplier,
            settings.layer,
            name + mix_words,
            settings.sampling.max_new_tokens,
            prompts=prompts,
        )
        with outbox.lock:  # atomic against Stop: either cancelled before it shows, or shown and then stopped
            wanted = outbox.wanted(ticket)
            if wanted:
                turns.append(turn)
        if not wanted:
            yield panes_and(None, *buttons(turns))
            return
        yield panes_and(turns, *busy)  # the message box is no output: take_message emptied it at the click
        finished: dict[str, Any] = {}
        # the behavior meter reads each token's projection in the pass that makes it (steering/ui/meter.py), on
        # the eager path only (see meter_read); its checkbox shows or hides it
        try:
            reader = Meter.for_engine(engine, vector, settings.layer) if meter_read else None
        except Exception:  # noqa: BLE001 -- no meter is no reason to fail the turn
            reader = None

        def call(**kwargs):
            finished["result"] = engine.compare(**kwargs, meter=reader)
            return finished["result"]

        try:
            with closing(
                stream(
                    call,
                    conversations=convs,
                    vector=vector,
                    layer=settings.layer,
                    multiplier=settings.multiplier,
                    settings=settings.sampling,
                    system_prompt=settings.system_prompt,
                    extra=extra,
                    mix=mix,
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
                        words = safe_pane_text(data_folder, name if name in behaviors else None)[0]
                        turn.meter = turn_readings(lm.tokenizer, reader, result.token_ids, meter_titles(words))
        except GeneratorExit:  # the browser went away (or Gradio cancelled the job)
            turn.stop()
            raise
        except Exception as exc:  # keep serving: the message goes where the answer would have been
            turn.fail(public_message(exc))
        yield panes_and(turns, *buttons(turns))

    def refuse(message: str):
        gr.Warning(message)
        yield panes_and(None, *idle)  # Send was disabled at the click

    def take_message(prompt, *rest):
        """Send's first, quick step (after the validator; never waits for the model): the message moves from
        the box into the session's Outbox (the last input) and Send and Retry are disabled, so what is typed
        while the turn waits or streams is never erased."""
        rest[-1].put(prompt)
        return "", *busy

    def take_retry(outbox):
        """Retry's first, quick step: a ticket for the retried turn (a Stop before it starts cancels it)."""
        outbox.put(None)
        return busy

    def next_turn(outbox, turns, settings, prompted=(False, "", ""), mixing=(NO_MIX, 0.0)):
        """The queued step of Send and Retry: the oldest message taken at a click (None: retry the last
        turn) becomes a turn, unless Stop or Clear cancelled it while it waited."""
        taken = outbox.take()
        if taken is None:  # cancelled while it waited: Stop put it back into the message box
            yield panes_and(None, *buttons(turns))
            return
        prompt, ticket = taken
        if prompt is None and (not turns or turns[-1].status == "running"):
            yield from refuse(
                "Nothing to retry yet: send a message first."
                if not turns
                else "Still answering: wait for it, or press Stop."
            )
            return
        try:  # the validator checked all this when the message was sent; things may have changed since
            text = check_prompt(prompt, max_chars) if prompt is not None else turns[-1].user
            history_before = turns if prompt is not None else turns[:-1]
            checked = check_turn(text, history_before, *settings)
            prompts = check_prompted(*prompted) if prompted else None  # the prompted panes' system prompts
            mix, mix_words = parse_mix(
                engine, *mixing, settings[1], checked[0].layer, settings[0], alpha_max=alpha_max
            )  # steering/ui/mix.py
        except SteeringError as exc:
            yield from refuse(public_message(exc))
            return
        if prompt is None:
            turns.pop()  # Retry replaces the last turn, with the settings of now
        yield from run_turn(text, turns, checked, outbox, ticket, prompts, mix, mix_words)

    @gpu
    def send(
        outbox, turns, choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system, *prompted
    ):
        yield from next_turn(
            outbox,
            turns,
            (choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system),
            *split_mixing(prompted),
        )  # last: mixing

    @gpu
    def retry(
        outbox, turns, choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system, *prompted
    ):
        yield from next_turn(
            outbox,
            turns,
            (choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system),
            *split_mixing(prompted),
        )  # last: mixing

    def check_send(prompt, turns, choice, uploads, layer, *rest):
        """The Send validator: a message at the message box (or at Behavior), the panes untouched. Its inputs
        are take_message's; the last, the session's Outbox, needs no check."""
        checks = [gr.validate(True, "")] * (5 + len(rest))
        if rest and isinstance(rest[-1], Outbox):
            rest = rest[:-1]
        rest, prompted = rest[:7], rest[7:10]  # the settings after layer, then prompted on / its two prompts
        text = (prompt or "").strip()
        if not text:
            checks[0] = gr.validate(False, "Type a message first.")
        elif len(text) > max_chars:
            checks[0] = gr.validate(
                False,
                public_message(
                    SteeringError(f"Your message is {len(text)} characters long; the limit is {max_chars}: shorten it.")
                ),
            )
        elif any(t.status == "running" for t in turns or []):
            checks[0] = gr.validate(False, "Still answering the last message: wait for it, or press Stop.")
        else:
            try:
                check_turn(text, turns or [], choice, uploads, layer, *rest)
            except VectorChoiceError as exc:
                checks[2] = gr.validate(False, public_message(exc))  # at Behavior: Layer may be folded away
            except SteeringError as exc:
                checks[0] = gr.validate(False, public_message(exc))
            for side in range(2 if len(prompted) == 3 else 0):  # at the prompted pane's own prompt box
                try:
                    check_prompted(prompted[0], *(prompted[1 + k] if k == side else "-" for k in range(2)))
                except SteeringError as exc:
                    checks[5 + 7 + 1 + side] = gr.validate(False, public_message(exc))
        return checks

    def stop(turns, outbox, prompt=""):
        """Stop: a running turn ends as it stands ("stopped") at its next token; a message still waiting in
        the queue never runs and goes back into the message box when the box is empty (nothing is lost)."""
        back = outbox.cancel()
        for turn in turns:
            turn.stop()
        return panes_and(turns, *idle, back if back and not (prompt or "").strip() else gr.skip())

    def clear(turns, outbox):
        """Clear: stop whatever runs or waits, and start over (a message being typed stays)."""
        outbox.cancel()
        for turn in turns:
            turn.stop()
        turns.clear()
        return panes_and([], *idle)

    def on_upload(path, uploads, request: gr.Request):
        """Check the file at once: a file that fits moves to this session's private folder, one that doesn't
        is deleted, with the reason under it; either way nothing stays in Gradio's cache."""
        try:
            info = check_upload(engine, path, max_mb)
            kept = keep_upload(path, session_folder(request))
        except (SteeringError, OSError) as exc:
            discard_upload(path)
            return None, gr.skip(), gr.skip(), f"⚠️ **Not loaded:** {markdown_text(public_message(exc))}"
        name = UPLOAD_PREFIX + kept.name
        uploads = {**(uploads or {}), name: str(kept)}
        return (
            None,
            gr.update(choices=behavior_choices + list(uploads), value=name),
            uploads,
            f"Loaded {markdown_text(info)}; it is now selected.",
        )

    def end_session(request: gr.Request):
        if upload_root:  # nothing uploaded yet: no folder to make or remove
            shutil.rmtree(session_folder(request), ignore_errors=True)

    def update_note(choice, uploads, layer, alpha):
        try:
            settings = check_settings(lm.num_layers, limits, layer, alpha, 1, 0, 1, 0)
            return norm_note(
                engine,
                VectorChoice.parse(choice, uploads).vector(engine, settings.layer),
                settings.layer,
                settings.multiplier,
            )
        except SteeringError as exc:
            return f"⚠️ {markdown_text(public_message(exc))}"

    # ---- the behavior meter, links, commands (steering/ui/meter.py, steering/ui/links.py), reliability view
    def show_meter(turns, on):
        """The latest turn's meter under the panes; hidden when the checkbox is off."""
        readings = getattr(turns[-1], "meter", None) if turns else None
        if not on:
            return gr.update(visible=False)
        return gr.update(visible=True, value=meter_html(readings, turns[-1].layer) if readings else METER_EMPTY)

    def open_link(request: gr.Request):
        """A link's query string fills the controls (a bad value is named in a warning and left out); with
        run=1 its message goes to `link_run` and the next step sends it."""
        params = dict(request.query_params) if request is not None else {}
        view = parse_link(params, behaviors, lm.num_layers, limits, alpha_max, max_chars)
        if view.problems:
            gr.Warning(link_problems_note(view))
        keep = lambda value: gr.skip() if value is None else value  # noqa: E731
        message = None if view.run else view.message
        return (
            keep(message),
            keep(view.behavior),
            keep(view.alpha),
            keep(view.layer),
            keep(view.temperature),
            keep(view.seed),
            keep(view.max_tokens),
            keep(view.top_p),
            keep(view.system),
            view.message if view.run else None,
        )

    def send_linked(message, outbox, turns, *rest):
        """A link's run=1: its message is sent as if typed and sent (same checks, same queue; `send` asks for
        the GPU on Spaces, a page load without run=1 does not)."""
        if not message:
            yield panes_and(None, gr.skip(), gr.skip())
            return
        outbox.put(message)
        yield from send(outbox, turns, *rest)

    def copy_link(
        base, turns, message, choice, uploads, alpha, layer, temperature, seed, max_new, top_p, system, random_seed
    ):
        """The link to this view (the message in the box, else the last one sent), or why there is none."""
        text = (message or "").strip() or (turns[-1].user if turns else "")
        view = make_view(text, choice, alpha, layer, temperature, seed, max_new, top_p, system)
        link, why = link_for(base, choice, uploads, view, bool(random_seed), max_chars=max_chars)
        return link, markdown_text(why)

    def copy_command(turns, message, choice, uploads, layer, alpha, temperature, seed, max_new, top_p, system):
        text = (message or "").strip() or (turns[-1].user if turns else "")
        try:
            return command_text(
                engine, choice, uploads, layer, alpha, text, temperature, seed, max_new, top_p, system
            ), ""
        except SteeringError as exc:  # the box says why as well as the note (never an empty box)
            why = public_message(exc)
            return f"# No command for this view: {why}", f"⚠️ {markdown_text(why)}"

    def show_reliability(state, layer_value):
        """The per-question reliability of the sweep at one layer (histogram, wrong-way share)."""
        from steering.evaluation.reliability import plot_histograms

        if layer_value is None:
            return gr.skip(), ""
        try:
            rel = sweep_reliability(state, int(layer_value))
        except SteeringError as exc:
            return None, f"⚠️ {markdown_text(public_message(exc))}"
        return plot_histograms({f"layer {int(layer_value)}": rel}), reliability_text(rel, int(layer_value))

    def reliability_after_sweep(state, chat_layer):
        start = reliability_layer(state, chat_layer)
        if start is None:
            return gr.update(choices=[], value=None), gr.skip(), gr.skip()
        return (gr.update(choices=[int(x) for x in state["layers"]], value=start), *show_reliability(state, start))

    # ---- the demo pieces (steering/ui/demo.py): pane words, prompted panes, dose-response strip, presets
    data_folder = datasets_dir(config)
    results_folder = config.results_dir

    def behavior_view(choice):
        """A behavior's pane titles, prompted-pane titles and prompts, and α presets (the dropdown changed)."""
        words, problem = safe_pane_text(data_folder, choice if choice in behaviors else None)
        if problem:
            gr.Warning(public_message(problem))
        titles = [*words.titles(), *words.prompted_titles()]
        return (
            *[gr.update(label=t) for t in titles],
            words.prompts["added"],
            words.prompts["subtracted"],
            *[
                gr.update(value=p.label)
                for p in behavior_presets(engine, choice if choice in behaviors else None, results_folder)
            ],
        )

    def follow_behavior(choice):
        """Layer and α for a behavior chosen in the dropdown: its tuned recipe's layer and strength (the "clear"
        preset), so a behavior never runs at another behavior's settings; an uploaded file keeps them."""
        if choice not in behaviors:
            return gr.skip(), gr.skip()
        try:
            recipe = engine.recipe(choice)
        except SteeringError as exc:
            gr.Warning(public_message(exc))
            return gr.skip(), gr.skip()
        return recipe.layer, behavior_presets(engine, choice, results_folder)[1].alpha

    def use_preset(index):
        return lambda choice: (
            behavior_presets(engine, choice if choice in behaviors else None, results_folder)[index].alpha
        )

    @gpu
    def strip(prompt, turns, choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system):
        """The dose-response strip: the message in the box (else the last one sent) at −2α … 2α in one batch."""
        text = (prompt or "").strip() or (turns[-1].user if turns else "")
        try:
            if not text:
                raise SteeringError("type a message first: the strip answers it at 7 strengths")
            text = check_prompt(text, max_chars)
            settings = check_settings(
                lm.num_layers, limits, layer, alpha, max_new, temperature, top_p, seed, bool(random_seed), system
            )
            vector = VectorChoice.parse(choice, uploads).vector(engine, settings.layer)
            check_budget(engine, [[{"role": "user", "content": text}]], settings)
            cards = run_strip(
                engine, text, vector, settings.layer, settings.multiplier, settings.sampling, settings.system_prompt
            )
        except Exception as exc:  # keep serving: one line where the cards would be
            return (
                gr.skip(),
                *[gr.skip()] * (2 * len(STRIP_FACTORS)),
                gr.skip(),
                f"⚠️ **No strip:** {markdown_text(public_message(exc))}",
            )
        words = safe_pane_text(data_folder, choice if choice in behaviors else None)[0]
        return (
            gr.update(visible=True),
            *[c.markdown(words) for c in cards],
            *[gr.update(value=c.use_label, visible=True) for c in cards],
            [c.alpha for c in cards],
            strip_summary(text, cards, settings.sampling.max_new_tokens),
        )

    @gpu
    def compare(
        prompt: str,
        multiplier: float = defaults.multiplier,
        layer: int = defaults.layer,
        behavior: str = default_behavior or "",
        max_new_tokens: int = gen.max_new_tokens,
        temperature: float = gen.temperature,
        top_p: float = gen.top_p,
        seed: int = gen.seed or 0,
        system_prompt: str = gen.system_prompt or "",
    ) -> tuple[str, str, str]:
        """One turn: the replies with the vector added (+multiplier), unsteered, and subtracted (-multiplier).

        Every argument is checked against the app's own ranges and the token caps before the model runs.
        The replies stream (Gradio reads the three outputs from the return hint); a caller that goes away
        stops the generation.
        """
        yield from api_turn(
            prompt, multiplier, layer, behavior, max_new_tokens, temperature, top_p, seed, system_prompt
        )

    @gpu
    def compare_mix(
        prompt: str,
        multiplier: float = defaults.multiplier,
        layer: int = defaults.layer,
        behavior: str = default_behavior or "",
        max_new_tokens: int = gen.max_new_tokens,
        temperature: float = gen.temperature,
        top_p: float = gen.top_p,
        seed: int = gen.seed or 0,
        system_prompt: str = gen.system_prompt or "",
        mix_behavior: str = "",
        mix_multiplier: float = 0.0,
    ) -> tuple[str, str, str]:
        """compare with a second behavior mixed in: the added reply gets multiplier x v1 + mix_multiplier x v2
        at the layer (CAA addition), the subtracted reply the negatives, the unsteered reply nothing.

        The arguments are compare's, then mix_behavior (another behavior with vectors for the model; "", null
        or "(none)" = no mix) and mix_multiplier (its alpha2, within the app's slider range; 0 = no mix).
        /compare keeps its 9 arguments for older callers.
        """
        yield from api_turn(
            prompt,
            multiplier,
            layer,
            behavior,
            max_new_tokens,
            temperature,
            top_p,
            seed,
            system_prompt,
            mix_behavior,
            mix_multiplier,
        )

    def api_turn(
        prompt,
        multiplier,
        layer,
        behavior,
        max_new_tokens,
        temperature,
        top_p,
        seed,
        system_prompt,
        mix_behavior="",
        mix_multiplier=0.0,
    ):
        """The API's turn (compare, compare_mix): checks, then the three replies as they stream."""
        try:
            text = check_prompt(prompt, max_chars, "prompt")
            settings = check_settings(
                lm.num_layers, limits, layer, multiplier, max_new_tokens, temperature, top_p, seed, False, system_prompt
            )
            first = check_behavior(engine, behavior)
            vector = engine.vectors_for(first).vector(settings.layer)
            mix = api_mix(engine, first, mix_behavior, mix_multiplier, settings.layer, alpha_max)  # the app's rules
            conv = [{"role": "user", "content": text}]
            check_budget(engine, [conv], settings)
        except SteeringError as exc:
            raise gr.Error(public_message(exc), print_exception=False) from None
        try:
            with closing(
                stream(
                    engine.compare,
                    conversations=conv,
                    vector=vector,
                    layer=settings.layer,
                    multiplier=settings.multiplier,
                    settings=settings.sampling,
                    system_prompt=settings.system_prompt,
                    mix=mix,
                )
            ) as updates:
                for texts in updates:
                    yield tuple(texts)
        except SteeringError as exc:
            raise gr.Error(public_message(exc), print_exception=False) from None
        except Exception as exc:
            raise gr.Error(public_message(exc)) from None

    alpha_max = max(10.0, 2 * defaults.multiplier)
    meter_read = engine.fast_path is None  # the meter is read on the eager path only (a hook per step)
    question_sets = ab_behaviors(datasets_dir(config))

    failure = public_message

    @gpu
    def calibrate(choice, uploads, layers_text, multipliers_text, questions, count):
        """A small A/B sweep of the chat tab's vector; ab_sweep itself holds the model's lock."""
        import pandas as pd

        from steering.evaluation import plot_heatmap

        try:
            sweep = run_sweep(engine, choice, uploads, layers_text, multipliers_text, questions, int(count))
        except Exception as exc:  # keep serving: one line where the result would have been
            return gr.skip(), gr.skip(), gr.skip(), f"⚠️ **Sweep failed:** {markdown_text(failure(exc))}"
        fig = plot_heatmap(
            sweep.values,
            sweep.layers,
            sweep.multipliers,
            default=(defaults.layer, defaults.multiplier),
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

    def calibrate_layers(choice, uploads, current):
        """Calibrate's Layers for the chosen vector: its own layers when it has few (an uploaded one-layer
        vector), else the layers around the default; what is typed stays when the vector has those layers."""
        try:
            available = VectorChoice.parse(choice, uploads).vector_set(engine).layers
        except Exception:  # noqa: BLE001 -- no vector yet: the box keeps its text
            return gr.skip()
        picked = layers_for_vector(available, current, defaults.layer, lm.num_layers)
        return gr.skip() if picked is None else format_list(picked)

    def pick_cell(state, evt: gr.SelectData):
        picked = cell_setting(evt.index, state, alpha_max)
        if picked is None:
            return gr.skip(), gr.skip(), "Click a multiplier cell (not the layer column) to use it in the chat."
        return picked

    def compare_vectors(choice_a, file_a, choice_b, file_b, uploads):
        try:
            return compare_sets(engine, (choice_a, file_a), (choice_b, file_b), uploads, max_mb), ""
        except Exception as exc:
            return None, f"⚠️ **Not compared:** {markdown_text(failure(exc))}"

    # Gradio's own cache cleanup for anything else uploaded (Compare vectors): files older than an hour.
    with gr.Blocks(title="LLaMA Steering", delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            f"## LLaMA Steering\n**Model:** {lm.describe()}\n\n"
            "Type a message: the same model answers three times — pushed toward the behavior (+α), "
            "as it is, and pushed away from it (−α). Each answer keeps its own conversation."
        )
        words = safe_pane_text(data_folder, default_behavior)[0]
        with gr.Accordion("What am I looking at?", open=False, elem_id="explainer"):
            with gr.Row():
                gr.Image(
                    explainer_image(
                        lm.num_layers, defaults.layer, words.titles(), steered_layers(engine, default_behavior)
                    ),
                    show_label=False,
                    interactive=False,
                    buttons=[],
                    min_width=300,
                    scale=2,
                    elem_id="explainer-picture",
                )
                gr.Markdown(EXPLAINER, min_height=0, elem_id="explainer-text")
        uploads = gr.State({}, delete_callback=lambda kept: [discard_upload(p) for p in (kept or {}).values()])
        history = gr.State([])  # this session's turns (steering.ui.chat.Turn): what the panes show and the model sees
        sweep_state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row(elem_id="panes", equal_height=True):
                    chats = []
                    for label, key in zip(words.titles(), ("added", "unsteered", "subtracted")):
                        with gr.Column(min_width=300):
                            chats.append(
                                gr.Chatbot(
                                    label=label,
                                    height=None,
                                    min_height=200,
                                    max_height=460,
                                    feedback_options=None,
                                    buttons=["copy_all"],
                                    elem_id=f"pane-{key}",
                                )
                            )
                prompted_on = gr.Checkbox(
                    False,
                    label="Also ask by prompting: the same model, unsteered, with a system "
                    "prompt asking for the behavior (and one asking to avoid it)",
                    elem_id="prompted-on",
                )
                with gr.Row(visible=False, elem_id="prompted") as prompted_row:
                    prompt_boxes = []
                    for side, title in zip(("added", "subtracted"), words.prompted_titles()):
                        with gr.Column(min_width=300):
                            chats.append(
                                gr.Chatbot(
                                    label=title,
                                    height=None,
                                    min_height=160,
                                    max_height=360,
                                    feedback_options=None,
                                    buttons=["copy_all"],
                                    elem_id=f"pane-prompted-{side}",
                                )
                            )
                            prompt_boxes.append(
                                gr.Textbox(
                                    words.prompts[side],
                                    lines=2,
                                    max_lines=6,
                                    label="System prompt of this pane (edit it)",
                                    elem_id=f"prompted-{side}-prompt",
                                )
                            )
                with gr.Row():
                    prompt = gr.Textbox(
                        label="Your message",
                        show_label=False,
                        scale=5,
                        placeholder="Type a message and press Enter or Send",
                        min_width=220,
                        max_lines=6,
                        autofocus=True,
                        elem_id="prompt",
                    )
                    send_btn = gr.Button("Send", variant="primary", scale=1, min_width=100, elem_id="send")
                with gr.Row():
                    stop_btn = gr.Button("Stop", size="sm", min_width=80, elem_id="stop")
                    retry_btn = gr.Button("Retry", size="sm", min_width=80, elem_id="retry")
                    clear_btn = gr.Button("Clear", size="sm", min_width=80, elem_id="clear")
                    strip_btn = gr.Button(STRIP_BUTTON, size="sm", min_width=80, elem_id="strip-run")
                meter_on = gr.Checkbox(
                    meter_read,
                    interactive=meter_read,
                    elem_id="meter-on",
                    label="Behavior meter: shade each answer's words by how far the model's "
                    "hidden state points along the steering vector",
                    info=None
                    if meter_read
                    else "Off on the compiled / CUDA-graph fast path (the meter needs the eager path).",
                )
                meter_view = gr.HTML(METER_EMPTY, visible=meter_read, elem_id="meter")
                strip_note = gr.Markdown(elem_id="strip-note")
                with gr.Row(elem_id="strip", visible=False) as strip_row:  # shown with the first strip
                    strip_cards, strip_use = [], []
                    for i in range(len(STRIP_FACTORS)):
                        with gr.Column(min_width=140):
                            strip_cards.append(gr.Markdown(elem_id=f"strip-card-{i}"))
                            strip_use.append(gr.Button("Use", size="sm", visible=False, elem_id=f"strip-use-{i}"))
                strip_alphas = gr.State([])
                examples = gr.Examples(
                    example_prompts(cards, default_behavior, EXAMPLES),
                    inputs=prompt,
                    label="Examples (click one, then Send)",
                )
                with gr.Row():
                    choice = gr.Dropdown(
                        behavior_choices,
                        value=default_behavior,
                        label="Behavior (steering vector)",
                        min_width=280,
                        info=None if behaviors else "No vectors for this model yet: upload one (Advanced).",
                    )
                    alpha = gr.Slider(
                        0,
                        alpha_max,
                        value=defaults.multiplier,
                        step=0.5,
                        label="Steering strength α",
                        min_width=280,
                        info="0 = no steering; the first answer gets +α, the last −α",
                    )
                with gr.Row(elem_id="presets"):
                    gr.HTML(tooltip_html("alpha", "What is α?"), elem_id="alpha-tip", min_height=0, min_width=110)
                    preset_btns = [
                        gr.Button(p.label, size="sm", min_width=90, elem_id=f"preset-{i}")
                        for i, p in enumerate(behavior_presets(engine, default_behavior, results_folder))
                    ]
                note = gr.Markdown()
                with gr.Accordion("Mix with a second behavior", open=False, elem_id="mix"):  # steering/ui/mix.py
                    with gr.Row():
                        mix_choice = gr.Dropdown(
                            mix_choices(behavior_choices),
                            value=NO_MIX,
                            label="Mix with",
                            min_width=200,
                            elem_id="mix-choice",
                        )
                        mix_alpha = gr.Slider(
                            -alpha_max,
                            alpha_max,
                            value=0.0,
                            step=0.5,
                            label="Its strength α₂",
                            min_width=200,
                            info=MIX_INFO,
                            elem_id="mix-alpha",
                        )
                    mix_cos = gr.Markdown(elem_id="mix-cos")
                missing, problems = offered_behaviors(engine)  # refreshed on every page load (first_use_view)
                with gr.Row(visible=bool(missing or problems), elem_id="first-use") as first_use_row:
                    first_use_note = gr.Markdown(missing_note(missing, lm.name, problems))
                    build_choice = gr.Dropdown(
                        missing,
                        value=(missing or [None])[0],
                        label="Build vectors for",
                        min_width=200,
                        elem_id="build-choice",
                    )
                    build_btn = gr.Button("Build vectors", min_width=120, elem_id="build-vectors")
                build_status = gr.Markdown(elem_id="build-status")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        layer = gr.Slider(
                            0,
                            lm.num_layers - 1,
                            value=defaults.layer,
                            step=1,
                            label="Layer",
                            info=f"where the vector is added (0–{lm.num_layers - 1})",
                        )
                        gr.HTML(tooltip_html("layer", "What is a layer?"), elem_id="layer-tip", min_height=0)
                        max_new = gr.Slider(
                            1,
                            limits.max_new_tokens,
                            value=gen.max_new_tokens,
                            step=1,
                            label="Max new tokens",
                            elem_id="max-new-tokens",
                        )
                    with gr.Row():
                        temperature = gr.Slider(
                            *TEMPERATURE_RANGE,
                            value=gen.temperature,
                            step=0.05,
                            label="Temperature",
                            info="0 = always the most likely word",
                        )
                        top_p = gr.Slider(*TOP_P_RANGE, value=gen.top_p, step=0.05, label="Top-p")
                    with gr.Row():
                        # Text, not gr.Number: the browser sends numbers as floats, which alter seeds above 2**53.
                        seed = gr.Textbox(
                            value=str(gen.seed or 0),
                            label="Seed",
                            elem_id="seed",
                            max_lines=1,
                            info=f"0 to {SEED_MAX}; same seed, same answers (when temperature > 0)",
                        )
                        random_seed = gr.Checkbox(False, label="New random seed every time")
                    system = gr.Textbox(
                        value=gen.system_prompt or "",
                        label="System prompt",
                        placeholder="(empty: the model's own default)",
                        lines=2,
                    )
                    gr.Markdown(
                        f"**Your own vector** (optional): this project's `.safetensors`, one "
                        f"`vec_layer_<L>_<model>.pt` file in the CAA paper's layout, or a GGUF control "
                        f"vector (`.gguf`), up to {max_mb:g} MB."
                    )
                    upload = gr.File(
                        label="Upload a vector file", file_types=[".safetensors", ".pt", ".gguf"], elem_id="upload"
                    )
                    upload_note = gr.Markdown()

                with gr.Accordion(
                    "Share this view: a link, or the same steering as a command", open=False, elem_id="share"
                ):
                    with gr.Row():
                        link_btn = gr.Button("Copy link", size="sm", min_width=120, elem_id="copy-link")
                        command_btn = gr.Button("Copy as a command", size="sm", min_width=120, elem_id="copy-command")
                    link_base = gr.Textbox(visible=False)  # the page's address, filled in the browser (js=)
                    link_box = gr.Textbox(
                        label="Link to this view (opens with these settings and sends the message)",
                        interactive=False,
                        max_lines=3,
                        buttons=["copy"],
                        elem_id="link",
                    )
                    share_note = gr.Markdown(elem_id="share-note")
                    command_box = gr.Code(
                        label="llama.cpp and this project's command line",
                        language="shell",
                        interactive=False,
                        elem_id="command",
                    )
            with gr.Tab("Calibrate", id="calibrate", elem_id="tab-calibrate"):
                gr.Markdown(
                    "A small A/B sweep of the vector chosen in the Chat tab (Behavior): for each layer × "
                    "multiplier, the mean probability that the model picks the behavior-matching letter "
                    "(0.5 = no preference, above 0.5 = more of the behavior)."
                )
                with gr.Row():
                    cal_layers = gr.Textbox(
                        format_list(default_layers(defaults.layer, lm.num_layers)),
                        label="Layers",
                        min_width=200,
                        elem_id="cal-layers",
                        info=f"comma-separated, 0–{lm.num_layers - 1}",
                    )
                    cal_mults = gr.Textbox(
                        format_list(default_multipliers(defaults.multiplier)),
                        label="Multipliers α",
                        min_width=200,
                        elem_id="cal-mults",
                        info="comma-separated; negative = away from the behavior",
                    )
                with gr.Row():
                    cal_items = gr.Slider(
                        1,
                        MAX_ITEMS,
                        value=12,
                        step=1,
                        label="A/B questions",
                        min_width=200,
                        elem_id="cal-items",
                        info="the first N of test_ab.json",
                    )
                    cal_questions = gr.Dropdown(
                        question_sets,
                        value=question_set(default_behavior, {}, (question_sets or [None])[0], question_sets),
                        label="Questions from datasets/<behavior>/test_ab.json",
                        min_width=200,
                    )
                cal_run = gr.Button("Run sweep", variant="primary", elem_id="cal-run")
                cal_status = gr.Markdown(elem_id="cal-status")
                heatmap = gr.Plot(label="A/B heatmap", elem_id="cal-heatmap")
                gr.Markdown(SMALL_MODEL_NOTE)
                cal_table = gr.Dataframe(
                    label="Sweep (rows: layers, columns: multipliers) — click a cell to use it in the chat",
                    interactive=False,
                    elem_id="cal-table",
                )
                cal_pick = gr.Markdown(elem_id="cal-pick")
                gr.Markdown(
                    "### Per-question reliability\nThe same sweep, one question at a time: the histogram of "
                    "each question's steerability (the slope of its p(behavior-matching letter) against α) "
                    "and the share of questions the vector moves the wrong way."
                )
                rel_layer = gr.Dropdown([], label="Layer", min_width=160, interactive=True, elem_id="rel-layer")
                rel_plot = gr.Plot(label="Steerability per question", elem_id="rel-plot")
                rel_note = gr.Markdown(elem_id="rel-note")
                gr.Markdown(
                    "### Compare vectors\nCosine similarity per layer between two vector sets: a shipped "
                    "behavior, a file uploaded in the Chat tab, or a file uploaded here."
                )
                with gr.Row():
                    pairs = []
                    for side in ("A", "B"):
                        with gr.Column(min_width=260):
                            pairs.append(
                                gr.Dropdown(behavior_choices, value=default_behavior, label=f"Vector set {side}")
                            )
                            pairs.append(
                                gr.File(
                                    label=f"or upload set {side}",
                                    height=130,
                                    file_types=[".safetensors", ".pt", ".gguf"],
                                    elem_id=f"cmp-file-{side.lower()}",
                                )
                            )
                cmp_btn = gr.Button("Compare", elem_id="cmp-run")
                cmp_note = gr.Markdown(elem_id="cmp-note")
                cosines = gr.Plot(label="Cosine similarity per layer", elem_id="cmp-plot")

        settings = [choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system]
        turn_outputs = [*chats[:3], send_btn, retry_btn, *chats[3:]]  # prompted panes last
        # Send and Enter: the validator, then a quick step (own queue slot, no waiting) that moves the message
        # from the box into the session's Outbox and disables Send and Retry, then the queued turn; the turn
        # never writes the message box, so text typed while it waits or streams stays, and Send stays
        # disabled from the click until the turn ends.
        outbox = gr.State(Outbox())  # messages taken at a click whose turn has not started (per session)
        prompted_inputs = [prompted_on, *prompt_boxes]  # checked by the validator too (check_send)
        taken = gr.on(
            [send_btn.click, prompt.submit],
            take_message,
            [prompt, history, *settings, *prompted_inputs, outbox],
            [prompt, send_btn, retry_btn],
            validator=check_send,
            concurrency_limit=None,
            show_progress="hidden",
            **PRIVATE,
        )  # queued (validators need the queue), never waits
        mixing = [mix_choice, mix_alpha]  # the last two inputs of send and retry
        sent = taken.success(
            send,
            [outbox, history, *settings, *prompted_inputs, *mixing],
            turn_outputs,
            show_progress="minimal",
            **PRIVATE,
            **queue_kw,
        )
        retried = retry_btn.click(take_retry, outbox, [send_btn, retry_btn], queue=False, **PRIVATE).success(
            retry,
            [outbox, history, *settings, *prompted_inputs, *mixing],
            turn_outputs,
            show_progress="minimal",
            **PRIVATE,
            **queue_kw,
        )
        # Stop and Clear act through the session's state (Outbox, Turn.status), not cancels= (see Outbox).
        stop_btn.click(
            stop,
            [history, outbox, prompt],
            [*chats[:3], send_btn, retry_btn, prompt, *chats[3:]],
            queue=False,
            **PRIVATE,
        )
        clear_btn.click(clear, [history, outbox], [*chats[:3], send_btn, retry_btn, *chats[3:]], queue=False, **PRIVATE)
        upload.upload(on_upload, [upload, uploads], [upload, choice, uploads, upload_note], **PRIVATE)
        demo.unload(end_session)
        for trigger in (choice.change, layer.change, alpha.change, demo.load):
            trigger(update_note, [choice, uploads, layer, alpha], note, show_progress="hidden", **PRIVATE)
        cal_done = cal_run.click(
            calibrate,
            [choice, uploads, cal_layers, cal_mults, cal_questions, cal_items],
            [heatmap, cal_table, sweep_state, cal_status],
            **PRIVATE,
            **queue_kw,
        )
        cal_table.select(pick_cell, sweep_state, [layer, alpha, cal_pick], queue=False, **PRIVATE)
        choice.change(
            question_set,
            [choice, uploads, cal_questions, gr.State(question_sets)],
            cal_questions,
            queue=False,
            show_progress="hidden",
            **PRIVATE,
        )
        choice.change(
            calibrate_layers, [choice, uploads, cal_layers], cal_layers, queue=False, show_progress="hidden", **PRIVATE
        )
        uploads.change(
            lambda u: [gr.update(choices=behavior_choices + list(u or {}))] * 3,
            uploads,
            [choice, *pairs[0::2]],
            queue=False,
            show_progress="hidden",
            **PRIVATE,
        )
        for file, dropdown in zip(pairs[1::2], pairs[0::2]):  # kept per session like the chat's uploads
            file.upload(on_upload, [file, uploads], [file, dropdown, uploads, cmp_note], **PRIVATE)
        cmp_btn.click(compare_vectors, [*pairs, uploads], [cosines, cmp_note], **PRIVATE)
        prompted_on.change(
            lambda on: gr.update(visible=bool(on)),
            prompted_on,
            prompted_row,
            queue=False,
            show_progress="hidden",
            **PRIVATE,
        )
        choice.change(
            lambda c, text: (
                gr.update(samples=[[e] for e in example_prompts(cards, c, EXAMPLES)]),
                message_after_switch(cards, c, text, EXAMPLES) or gr.skip(),
            ),
            [choice, prompt],
            [examples.dataset, prompt],
            queue=False,
            **PRIVATE,
        )  # the card's examples
        choice.change(
            behavior_view, choice, [*chats, *prompt_boxes, *preset_btns], queue=False, show_progress="hidden", **PRIVATE
        )
        # choosing a behavior by hand (not a link) moves Layer and α to that behavior's own tuned defaults
        choice.input(follow_behavior, choice, [layer, alpha], queue=False, show_progress="hidden", **PRIVATE)
        for i, button in enumerate(preset_btns):
            button.click(use_preset(i), choice, alpha, queue=False, show_progress="hidden", **PRIVATE)
        strip_btn.click(
            lambda: gr.update(value=STRIP_BUSY, interactive=False), None, strip_btn, queue=False, **PRIVATE
        ).then(  # the strip's busy state shows on its button
            strip,
            [prompt, history, *settings],
            [strip_row, *strip_cards, *strip_use, strip_alphas, strip_note],
            show_progress="minimal",
            **PRIVATE,
            **queue_kw,
        ).then(lambda: gr.update(value=STRIP_BUTTON, interactive=True), None, strip_btn, queue=False, **PRIVATE)
        for i, button in enumerate(strip_use):
            button.click(
                lambda alphas, i=i: alphas[i], strip_alphas, alpha, queue=False, show_progress="hidden", **PRIVATE
            )
        # the behavior meter, links that reproduce a view, commands, the reliability view (H13b)
        link_run = gr.State(None)  # the message a link asked to send (run=1)
        linked = demo.load(
            open_link,
            None,
            [prompt, choice, alpha, layer, temperature, seed, max_new, top_p, system, link_run],
            concurrency_limit=None,
            show_progress="hidden",
            **PRIVATE,
        ).then(  # queued: a gr.Warning from a non-queued event never reaches the page
            send_linked,
            [link_run, outbox, history, *settings, *prompted_inputs, *mixing],
            turn_outputs,
            show_progress="hidden",
            **PRIVATE,
            **queue_kw,
        )  # hidden: a plain page load shows no queue status
        for done in (sent, retried, linked):
            done.then(show_meter, [history, meter_on], meter_view, queue=False, show_progress="hidden", **PRIVATE)
        meter_on.change(show_meter, [history, meter_on], meter_view, queue=False, show_progress="hidden", **PRIVATE)
        clear_btn.click(lambda: METER_EMPTY, None, meter_view, queue=False, show_progress="hidden", **PRIVATE)
        link_btn.click(
            copy_link,
            [
                link_base,
                history,
                prompt,
                choice,
                uploads,
                alpha,
                layer,
                temperature,
                seed,
                max_new,
                top_p,
                system,
                random_seed,
            ],
            [link_box, share_note],
            queue=False,
            js="(base, ...rest) => [window.location.origin + window.location.pathname, ...rest]",
            **PRIVATE,
        ).then(None, link_box, None, js=COPY_JS, queue=False)
        command_btn.click(
            copy_command,
            [history, prompt, choice, uploads, layer, alpha, temperature, seed, max_new, top_p, system],
            [command_box, share_note],
            queue=False,
            **PRIVATE,
        ).then(None, command_box, None, js=COPY_JS, queue=False)
        cal_run.click(
            lambda: (gr.update(choices=[], value=None), None, ""),
            None,
            [rel_layer, rel_plot, rel_note],
            queue=False,
            show_progress="hidden",
            **PRIVATE,
        )
        cal_done.then(reliability_after_sweep, [sweep_state, layer], [rel_layer, rel_plot, rel_note], **PRIVATE)
        rel_layer.input(show_reliability, [sweep_state, rel_layer], [rel_plot, rel_note], **PRIVATE)
        gr.api(compare, api_name="compare", **queue_kw)
        gr.api(compare_mix, api_name="compare_mix", **queue_kw)
        for trigger in (choice.change, layer.change, mix_choice.change, uploads.change):
            trigger(
                lambda c, u, m, n: mix_note(engine, c, m, u, n),
                [choice, uploads, mix_choice, layer],
                mix_cos,
                show_progress="hidden",
                **PRIVATE,
            )
        uploads.change(
            lambda u: gr.update(choices=mix_choices(behavior_choices, u)),
            uploads,
            mix_choice,
            queue=False,
            show_progress="hidden",
            **PRIVATE,
        )

        first_use_outputs = [first_use_note, build_choice, first_use_row, choice, mix_choice]

        def refresh_behaviors(current, uploads_now, select=None):
            """Per page load and after a build: the behaviors with vectors and the first-use offer as they are
            now (another visitor or the CLI may have built vectors since the app started)."""
            found, choices, *updates = first_use_view(engine, cards, current, uploads_now, config.behavior, select)
            behaviors[:], behavior_choices[:] = found, choices  # later dropdown updates (uploads, mixing) list them
            return tuple(updates)

        demo.load(
            refresh_behaviors, [choice, uploads], first_use_outputs, queue=False, show_progress="hidden", **PRIVATE
        )

        def build(behavior, current, uploads_now, progress=gr.Progress()):
            """The first-use button: build the vectors (gr.Progress), then offer and select the behavior."""
            status, _ = build_in_app(engine, behavior, progress)
            built = behavior in engine.behaviors()
            return (
                status,
                *refresh_behaviors(current, uploads_now, behavior if built else None),
                engine.recipe(behavior).layer if built else gr.skip(),
            )  # the model's default layer until tuned

        build_btn.click(
            build, [build_choice, choice, uploads], [build_status, *first_use_outputs, layer], **PRIVATE, **queue_kw
        )
    return demo.queue(max_size=app_cfg.max_queue)


def port_number(text: str) -> int:
    """--port: a TCP port, 1 to 65535 (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {port}")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from steering.cli.common import add_model_flags
    from steering.cli.parser import OneLineParser

    parser = OneLineParser(prog="app.py", description="LLaMA Steering web app")
    parser.add_argument("--share", action="store_true", default=None, help="ask Gradio for a public link")
    parser.add_argument("--host", help="default: config app.host (always 0.0.0.0 on a Hugging Face Space)")
    parser.add_argument("--port", type=port_number, help="default: config app.port")
    add_model_flags(parser)  # includes --threads (config model.threads; steering.models.set_threads)
    return parser.parse_args(argv)


def check_port(host: str, port: int) -> None:
    """Refuse a port that is taken (or a host this machine cannot listen on) before the model loads."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
            sock.bind((host, port))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = (
            " (another program may use the port; choose another with --port)"
            if exc.errno == errno.EADDRINUSE
            else " (check --host: it must be an address of this machine)"
            if exc.errno == errno.EADDRNOTAVAIL
            else ""
        )
        raise SteeringError(f"cannot listen on {host}:{port}: {reason}{hint}") from None


def check_device(device: str | None) -> None:
    """Refuse a device this machine does not have (e.g. --device cuda without CUDA) before the model loads."""
    import torch

    name = (device or "auto").strip()
    if name == "auto" or name == "cpu":
        return
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = name.partition(":")[2]
        if count == 0:
            raise SteeringError(f"device '{name}': CUDA is not available on this machine (use --device cpu or auto)")
        if index and (not index.isdigit() or int(index) >= count):
            raise SteeringError(f"device '{name}': this machine has CUDA devices 0..{count - 1}")
    elif name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise SteeringError("device 'mps': Apple MPS is not available on this machine (use --device cpu or auto)")


def launch_options(args: argparse.Namespace, config: Config, environ=os.environ) -> dict[str, Any]:
    """demo.launch(...) arguments: the flags --host/--port/--share over config `app:` (steering.config.override);
    a Space (SPACE_ID set) must listen on 0.0.0.0."""
    flags = {"host": args.host, "port": args.port, "share": args.share}
    app_cfg = override(config, app=flags, source="command line").app
    password = environ.get(app_cfg.password_env or "")
    return {
        "server_name": "0.0.0.0" if environ.get("SPACE_ID") else app_cfg.host,
        "server_port": app_cfg.port,
        "share": app_cfg.share,
        "auth": ("steering", password) if password else None,
        "max_file_size": f"{app_cfg.max_upload_mb:g}mb",
        "css": CSS + DEMO_CSS + METER_CSS + PHONE_CSS,
    }


def main(argv: list[str] | None = None) -> int:
    """Start the app; bad arguments, a taken port or a missing device end with one line and exit code 2."""
    from steering.cli.loading import model_overrides
    from steering.config import load_config
    from steering.models import set_threads

    args = parse_args(argv)
    try:
        config = override(load_config(args.config), model=model_overrides(args), source="command line")
        options = launch_options(args, config)
        check_port(options["server_name"], options["server_port"])
        check_device(config.model.device)
        set_threads(config.model.threads)
        engine = Engine.from_config(config)
        engine.warm_up()  # the fast path (compiled before the first user), when the model settings ask for it
        demo = build_app(engine, config)
    except SteeringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        demo.launch(**options)
    except OSError as exc:  # e.g. the port was taken meanwhile
        print(
            f"error: cannot start the web server on {options['server_name']}:{options['server_port']}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
