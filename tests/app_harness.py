"""Launch the web app in-process on a free local port (shared by the app test modules)."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent  # the checkout (app.py is imported from it: pytest.ini pythonpath)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(engine: Any, app_overrides: dict[str, Any] | None = None, **generation: Any) -> Iterator[str]:
    """The app on the given engine, its `generation` config section overridden (and its `app` section by
    `app_overrides`, e.g. {"concurrency_per_model": 1}: one request at a time); yields the local URL."""
    import app
    from steering.config import override

    config = override(engine.config, generation=generation, app=app_overrides or {})
    demo = app.build_app(engine, config)
    port = free_port()
    options = app.launch_options(app.parse_args(["--host", "127.0.0.1", "--port", str(port)]), config, {})
    demo.launch(**{**options, "share": False}, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def handlers_of(demo: Any) -> dict[str, Any]:
    """{handler name: its BlockFunction} of a built app (the first one of each name)."""
    fns: dict[str, Any] = {}
    for block_fn in demo.fns.values():
        fns.setdefault(getattr(block_fn.fn, "__name__", ""), block_fn)
    return fns


class ChatInputs:
    """Builds the dict Gradio passes to the chat's handlers (their inputs are a set of components), from
    field names: `data(settings, prompt=..., history=..., outbox=...)`; `problems(verdicts)` reads the Send
    validator's answer back as {field or component name: message} for the inputs it refused."""

    def __init__(self, handlers: dict[str, Any]) -> None:
        events = handlers["send"].fn.__self__  # steering.ui.chat_events.ChatEvents
        self.tab, self.controls = events.tab, events.controls

    def data(self, settings: Any = None, **extra: Any) -> dict[Any, Any]:
        """Every ChatSettings field of `settings` at its component, and `extra` at tab.<name>."""
        return self.controls.values(settings, {getattr(self.tab, name): value for name, value in extra.items()})

    def problems(self, verdicts: dict[Any, Any]) -> dict[str, str]:
        """{name: message} of the refused inputs (a ChatSettings field name, or "prompt" for the message box)."""
        names = {id(c): name for name, c in self.controls.by_field.items()} | {id(self.tab.prompt): "prompt"}
        return {names.get(id(c), "?"): v["message"] for c, v in verdicts.items() if not v["is_valid"]}
