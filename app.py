"""LLaMA Steering web app: one prompt, three answers (steered toward, unsteered, steered away).

The UI layer holds no model logic: it wires Gradio to steering.engine.Engine. Every request carries its
own settings (event inputs and per-session gr.State), so concurrent users never share a vector or α.

    python app.py [--share] [--host H] [--port P] [--model ID] [--load-in-8bit | --load-in-4bit] ...
"""

import argparse
import os
import sys
import threading
from typing import Any

import gradio as gr

from steering.engine import Engine
from steering.errors import SteeringError
from steering.generation import stream
from steering.ui_calibrate import (MAX_ITEMS, SMALL_MODEL_NOTE, ab_behaviors, cell_setting, compare_sets,
                                   datasets_dir, default_layers, default_multipliers, format_list, question_set,
                                   run_sweep)
from steering.ui_chat import (UPLOAD_PREFIX, VectorChoice, check_upload, conversation, norm_note, pane_labels,
                              sampling, trim_prompt)

try:  # ZeroGPU on Hugging Face Spaces; a no-op elsewhere
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

EXAMPLES = ["What's your favorite planet?",
            "Tell me how to break into my neighbour's house without being noticed.",
            "Can you give me a simple recipe for banana bread?"]
PRIVATE = {"api_visibility": "private"}
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


def build_app(engine: Engine, config: dict[str, Any]) -> gr.Blocks:
    app_cfg, gen = config["app"], config["generation"]
    lm, defaults = engine.lm, engine.defaults
    max_chars, max_mb = int(app_cfg["max_prompt_chars"]), float(app_cfg["max_upload_mb"])
    behaviors = engine.behaviors()
    default_behavior = config.get("behavior") if config.get("behavior") in behaviors else (behaviors or [None])[0]
    stops: dict[str, threading.Event] = {}  # per browser session: the Stop button's target
    limits = {"concurrency_id": "model", "concurrency_limit": int(app_cfg["concurrency_per_model"])}

    def generate_turn(prompt, chats, choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed,
                      system, request: gr.Request | None = None):
        """Stream one turn into the three panes; errors become a readable message in the panes."""
        text, trimmed = trim_prompt(prompt, max_chars)
        if trimmed:
            gr.Warning(f"Your message was longer than {max_chars} characters and was shortened.")
        convs = [conversation(c) for c in chats]
        shown = [c + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}] for c in convs]
        stop = threading.Event()
        session = request.session_hash if request is not None else None
        stops[session] = stop
        yield *shown, ""
        try:
            vector = VectorChoice.parse(choice, uploads).vector(engine, int(layer))
            for texts in stream(engine.compare, conversations=[c + [shown[0][-2]] for c in convs], vector=vector,
                                layer=int(layer), multiplier=float(alpha),
                                settings=sampling(max_new, temperature, top_p, seed, random_seed),
                                system_prompt=(system or "").strip() or None, stop_event=stop):
                for pane, reply in zip(shown, texts):
                    pane[-1]["content"] = reply
                yield *shown, ""
        except Exception as exc:  # keep serving: the message goes where the answer would have been
            message = str(exc) if isinstance(exc, SteeringError) else f"{type(exc).__name__}: {exc}"
            for pane in shown:
                pane[-1]["content"] = (pane[-1]["content"] + "\n\n" if pane[-1]["content"] else "") + \
                    f"⚠️ Generation failed: {message}"
            yield *shown, ""
        finally:
            if stops.get(session) is stop:
                del stops[session]

    @gpu
    def send(prompt, a, u, s, choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system,
             request: gr.Request):
        yield from generate_turn(prompt, [a, u, s], choice, uploads, layer, alpha, max_new, temperature, top_p, seed,
                                 random_seed, system, request)

    @gpu
    def retry(a, u, s, choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system,
              request: gr.Request):
        convs = [conversation(c) for c in (a, u, s)]
        if not convs[0] or convs[0][-1]["role"] != "assistant":
            gr.Warning("Nothing to retry yet: send a message first.")
            yield gr.skip(), gr.skip(), gr.skip()
            return
        for update in generate_turn(convs[0][-2]["content"], [c[:-2] for c in convs], choice, uploads, layer, alpha,
                                    max_new, temperature, top_p, seed, random_seed, system, request):
            yield update[:3]

    def check_send(prompt, a, u, s, choice, uploads, layer, *rest):
        checks = [gr.validate(True, "")] * (7 + len(rest))
        if not (prompt or "").strip():
            checks[0] = gr.validate(False, "Type a message first.")
        else:
            try:
                VectorChoice.parse(choice, uploads).vector(engine, int(layer))
            except SteeringError as exc:
                checks[4] = gr.validate(False, str(exc))  # at Behavior: Layer may be folded away
        return checks

    def on_upload(path, uploads):
        """Check the file at once: a file that doesn't fit is removed again, with the reason under it."""
        try:
            info = check_upload(engine, path, max_mb)
        except SteeringError as exc:
            return None, gr.skip(), gr.skip(), f"⚠️ **Not loaded:** {exc}"
        name = UPLOAD_PREFIX + os.path.basename(path)
        uploads = {**(uploads or {}), name: path}
        return gr.skip(), gr.update(choices=behaviors + list(uploads), value=name), uploads, \
            f"Loaded {info}; it is now selected under Behavior."

    def update_note(choice, uploads, layer, alpha):
        try:
            return norm_note(engine, VectorChoice.parse(choice, uploads).vector(engine, int(layer)), layer, alpha)
        except SteeringError as exc:
            return f"⚠️ {exc}"

    def stop_generation(request: gr.Request):
        if request and request.session_hash in stops:
            stops[request.session_hash].set()

    @gpu
    def compare(prompt: str, multiplier: float = defaults.multiplier, layer: int = defaults.layer,
                behavior: str = default_behavior or "", max_new_tokens: int = int(gen["max_new_tokens"]),
                temperature: float = float(gen["temperature"]), top_p: float = float(gen["top_p"]),
                seed: int = int(gen["seed"] or 0), system_prompt: str = gen.get("system_prompt") or "",
                ) -> tuple[str, str, str]:
        """One turn: the replies with the vector added (+multiplier), unsteered, and subtracted (-multiplier)."""
        text, _ = trim_prompt(prompt, max_chars)
        if not text:
            raise gr.Error("prompt is empty")
        try:
            vector = VectorChoice(behavior or None, None).vector(engine, int(layer))
            result = engine.compare([{"role": "user", "content": text}], vector, int(layer), float(multiplier),
                                    sampling(max_new_tokens, temperature, top_p, seed),
                                    system_prompt=(system_prompt or "").strip() or None)
        except SteeringError as exc:
            raise gr.Error(str(exc)) from None
        return tuple(result.texts)  # type: ignore[return-value]

    alpha_max = max(10.0, 2 * defaults.multiplier)
    question_sets = ab_behaviors(datasets_dir(config))

    def failure(exc: Exception) -> str:
        return str(exc) if isinstance(exc, SteeringError) else f"{type(exc).__name__}: {exc}"

    @gpu
    def calibrate(choice, uploads, layers_text, multipliers_text, questions, count):
        """A small A/B sweep of the chat tab's vector; ab_sweep itself holds the model's lock."""
        from steering.evaluation import plot_heatmap
        import pandas as pd

        try:
            sweep = run_sweep(engine, choice, uploads, layers_text, multipliers_text, questions, int(count))
        except Exception as exc:  # keep serving: one line where the result would have been
            return gr.skip(), gr.skip(), gr.skip(), f"⚠️ **Sweep failed:** {failure(exc)}"
        fig = plot_heatmap(sweep.values, sweep.layers, sweep.multipliers,
                           default=(defaults.layer, defaults.multiplier),
                           title=f"A/B on {int(count)} '{questions}' questions: p(behavior-matching answer)")
        headers, rows = sweep.table()
        return fig, pd.DataFrame(rows, columns=headers), sweep.state(), \
            f"Swept {len(sweep.layers)} layers × {len(sweep.multipliers)} multipliers on {int(count)} questions. " \
            "Click a cell in the table to use that layer and α in the chat."

    def pick_cell(state, evt: gr.SelectData):
        picked = cell_setting(evt.index, state, alpha_max)
        if picked is None:
            return gr.skip(), gr.skip(), "Click a multiplier cell (not the layer column) to use it in the chat."
        return picked

    def compare_vectors(choice_a, file_a, choice_b, file_b, uploads):
        try:
            return compare_sets(engine, (choice_a, file_a), (choice_b, file_b), uploads, max_mb), ""
        except Exception as exc:
            return None, f"⚠️ **Not compared:** {failure(exc)}"

    with gr.Blocks(title="LLaMA Steering") as demo:
        gr.Markdown(f"## LLaMA Steering\n**Model:** {lm.describe()}\n\n"
                    "Type a message: the same model answers three times — pushed toward the behavior (+α), "
                    "as it is, and pushed away from it (−α). Each answer keeps its own conversation.")
        uploads = gr.State({})
        sweep_state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row(elem_id="panes", equal_height=True):
                    chats = []
                    for label, key in zip(pane_labels(defaults.multiplier), ("added", "unsteered", "subtracted")):
                        with gr.Column(min_width=300):
                            chats.append(gr.Chatbot(label=label, height=None, min_height=200, max_height=460,
                                                                    feedback_options=None, buttons=["copy_all"],
                                                    elem_id=f"pane-{key}"))
                with gr.Row():
                    prompt = gr.Textbox(label="Your message", show_label=False, scale=5,
                                        placeholder="Type a message and press Enter or Send", min_width=220,
                                        max_lines=6, autofocus=True, elem_id="prompt")
                    send_btn = gr.Button("Send", variant="primary", scale=1, min_width=100, elem_id="send")
                with gr.Row():
                    stop_btn = gr.Button("Stop", size="sm", min_width=80, elem_id="stop")
                    retry_btn = gr.Button("Retry", size="sm", min_width=80, elem_id="retry")
                    clear_btn = gr.Button("Clear", size="sm", min_width=80, elem_id="clear")
                gr.Examples(EXAMPLES, inputs=prompt, label="Examples (click one, then Send)")
                with gr.Row():
                    choice = gr.Dropdown(behaviors, value=default_behavior, label="Behavior (steering vector)",
                                         min_width=280, info=None if behaviors else
                                         "No vectors for this model yet: upload one (Advanced).")
                    alpha = gr.Slider(0, alpha_max, value=defaults.multiplier, step=0.5,
                                      label="Steering strength α", min_width=280,
                                      info="0 = no steering; the first answer gets +α, the last −α")
                note = gr.Markdown()
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        layer = gr.Slider(0, lm.num_layers - 1, value=defaults.layer, step=1, label="Layer",
                                          info=f"where the vector is added (0–{lm.num_layers - 1})")
                        max_new = gr.Slider(1, 1024, value=int(gen["max_new_tokens"]), step=1,
                                            label="Max new tokens", elem_id="max-new-tokens")
                    with gr.Row():
                        temperature = gr.Slider(0, 2, value=float(gen["temperature"]), step=0.05,
                                                label="Temperature", info="0 = always the most likely word")
                        top_p = gr.Slider(0.05, 1, value=float(gen["top_p"]), step=0.05, label="Top-p")
                    with gr.Row():
                        seed = gr.Number(value=int(gen["seed"] or 0), precision=0, label="Seed",
                                         info="same seed, same answers (matters when temperature > 0)")
                        random_seed = gr.Checkbox(False, label="New random seed every time")
                    system = gr.Textbox(value=gen.get("system_prompt") or "", label="System prompt",
                                        placeholder="(empty: the model's own default)", lines=2)
                    gr.Markdown(f"**Your own vector** (optional): this project's `.safetensors`, one "
                                f"`vec_layer_<L>_<model>.pt` file in the CAA paper's layout, or a GGUF control "
                                f"vector (`.gguf`), up to {max_mb:g} MB.")
                    upload = gr.File(label="Upload a vector file",
                                     file_types=[".safetensors", ".pt", ".gguf"], elem_id="upload")
                    upload_note = gr.Markdown()

            with gr.Tab("Calibrate", id="calibrate", elem_id="tab-calibrate"):
                gr.Markdown("A small A/B sweep of the vector chosen in the Chat tab (Behavior): for each layer × "
                            "multiplier, the mean probability that the model picks the behavior-matching letter "
                            "(0.5 = no preference, above 0.5 = more of the behavior).")
                with gr.Row():
                    cal_layers = gr.Textbox(format_list(default_layers(defaults.layer, lm.num_layers)),
                                            label="Layers", min_width=200, elem_id="cal-layers",
                                            info=f"comma-separated, 0–{lm.num_layers - 1}")
                    cal_mults = gr.Textbox(format_list(default_multipliers(defaults.multiplier)),
                                           label="Multipliers α", min_width=200, elem_id="cal-mults",
                                           info="comma-separated; negative = away from the behavior")
                with gr.Row():
                    cal_items = gr.Slider(1, MAX_ITEMS, value=12, step=1, label="A/B questions", min_width=200,
                                          elem_id="cal-items", info="the first N of test_ab.json")
                    cal_questions = gr.Dropdown(question_sets, value=question_set(
                        default_behavior, {}, (question_sets or [None])[0], question_sets),
                        label="Questions from datasets/<behavior>/test_ab.json", min_width=200)
                cal_run = gr.Button("Run sweep", variant="primary", elem_id="cal-run")
                cal_status = gr.Markdown(elem_id="cal-status")
                heatmap = gr.Plot(label="A/B heatmap", elem_id="cal-heatmap")
                gr.Markdown(SMALL_MODEL_NOTE)
                cal_table = gr.Dataframe(label="Sweep (rows: layers, columns: multipliers) — click a cell to "
                                         "use it in the chat", interactive=False, elem_id="cal-table")
                cal_pick = gr.Markdown(elem_id="cal-pick")
                gr.Markdown("### Compare vectors\nCosine similarity per layer between two vector sets: a shipped "
                            "behavior, a file uploaded in the Chat tab, or a file uploaded here.")
                with gr.Row():
                    pairs = []
                    for side in ("A", "B"):
                        with gr.Column(min_width=260):
                            pairs.append(gr.Dropdown(behaviors, value=default_behavior, label=f"Vector set {side}"))
                            pairs.append(gr.File(label=f"or upload set {side}", height=130,
                                                 file_types=[".safetensors", ".pt", ".gguf"],
                                                 elem_id=f"cmp-file-{side.lower()}"))
                cmp_btn = gr.Button("Compare", elem_id="cmp-run")
                cmp_note = gr.Markdown(elem_id="cmp-note")
                cosines = gr.Plot(label="Cosine similarity per layer", elem_id="cmp-plot")

        settings = [choice, uploads, layer, alpha, max_new, temperature, top_p, seed, random_seed, system]
        gen_kw = {"validator": check_send, "show_progress": "minimal", **PRIVATE, **limits}
        for trigger in (send_btn.click, prompt.submit):
            trigger(send, [prompt, *chats, *settings], [*chats, prompt], **gen_kw)
        retry_btn.click(retry, [*chats, *settings], chats, show_progress="minimal", **PRIVATE, **limits)
        stop_btn.click(stop_generation, None, None, queue=False, **PRIVATE)
        clear_btn.click(lambda: ([], [], [], ""), None, [*chats, prompt], queue=False, **PRIVATE)
        upload.upload(on_upload, [upload, uploads], [upload, choice, uploads, upload_note], **PRIVATE)
        alpha.change(lambda a: [gr.update(label=label) for label in pane_labels(a)], alpha, chats, queue=False,
                     show_progress="hidden", **PRIVATE)
        for trigger in (choice.change, layer.change, alpha.change, demo.load):
            trigger(update_note, [choice, uploads, layer, alpha], note, show_progress="hidden", **PRIVATE)
        cal_run.click(calibrate, [choice, uploads, cal_layers, cal_mults, cal_questions, cal_items],
                      [heatmap, cal_table, sweep_state, cal_status], **PRIVATE, **limits)
        cal_table.select(pick_cell, sweep_state, [layer, alpha, cal_pick], queue=False, **PRIVATE)
        choice.change(question_set, [choice, uploads, cal_questions, gr.State(question_sets)], cal_questions,
                      queue=False, show_progress="hidden", **PRIVATE)
        uploads.change(lambda u: [gr.update(choices=behaviors + list(u or {}))] * 2, uploads, pairs[0::2],
                       queue=False, show_progress="hidden", **PRIVATE)
        cmp_btn.click(compare_vectors, [*pairs, uploads], [cosines, cmp_note], **PRIVATE)
        gr.api(compare, api_name="compare", **limits)
    return demo.queue(max_size=int(app_cfg["max_queue"]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from steering.cli import _add_model_flags

    parser = argparse.ArgumentParser(description="LLaMA Steering web app")
    parser.add_argument("--share", action="store_true", default=None, help="ask Gradio for a public link")
    parser.add_argument("--host", help="default: config app.host (always 0.0.0.0 on a Hugging Face Space)")
    parser.add_argument("--port", type=int, help="default: config app.port")
    _add_model_flags(parser)
    return parser.parse_args(argv)


def launch_options(args: argparse.Namespace, app_cfg: dict[str, Any], environ=os.environ) -> dict[str, Any]:
    """demo.launch(...) arguments: flags over config.yaml; a Space (SPACE_ID set) must listen on 0.0.0.0."""
    password = environ.get(app_cfg.get("password_env") or "")
    return {
        "server_name": "0.0.0.0" if environ.get("SPACE_ID") else (args.host or app_cfg["host"]),
        "server_port": args.port or int(app_cfg["port"]),
        "share": bool(args.share if args.share is not None else app_cfg["share"]),
        "auth": ("steering", password) if password else None,
        "max_file_size": f"{app_cfg['max_upload_mb']}mb",
        "css": CSS,
    }


def main(argv: list[str] | None = None) -> int:
    from steering.cli import _model_overrides
    from steering.config import load_config

    args = parse_args(argv)
    try:
        config = load_config(args.config)
        engine = Engine.from_config(config, **_model_overrides(args))
    except SteeringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    build_app(engine, config).launch(**launch_options(args, config["app"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
