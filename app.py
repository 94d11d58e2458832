"""LLaMA Steering web app: one prompt, three answers (steered toward, unsteered, steered away).

This file loads the model and starts the UI; the UI itself is steering/ui (build.build_app puts it together:
the Chat and Calibrate tabs, their events, the API). It holds no model logic: it wires Gradio to
steering.engine.Engine.

    python app.py [--share] [--host H] [--port P] [--model ID] [--load-in-8bit | --load-in-4bit] ...
"""

import argparse
import importlib
import sys
from typing import TYPE_CHECKING, Any

from steering.cli.common import add_model_flags
from steering.cli.loading import model_overrides
from steering.cli.parser import OneLineParser
from steering.config import load_config, override
from steering.errors import SteeringError
from steering.ui.launch import check_device, check_port, launch_options, port_number

__all__ = ["Engine", "Outbox", "build_app", "conversations", "launch_options", "main", "parse_args"]

# The model and the UI (torch, transformers, Gradio: seconds to import) are imported when the app starts or a
# name below is first used (PEP 562), not before the flags are parsed: `--help` and bad flags answer at once.
_LAZY = {
    "Engine": "steering.engine",
    "Outbox": "steering.ui.chat",
    "build_app": "steering.ui.build",
    "conversations": "steering.ui.chat",
}
if TYPE_CHECKING:
    from steering.engine import Engine
    from steering.ui.build import build_app
    from steering.ui.chat import Outbox, conversations


def __getattr__(name: str) -> Any:
    """Import one of the app's heavy names on first use (Engine, Outbox, build_app, conversations)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """app.py's flags: --share, --host, --port, and the model flags of `steering chat`."""
    parser = OneLineParser(prog="app.py", description="LLaMA Steering web app")
    parser.add_argument("--share", action="store_true", default=None, help="ask Gradio for a public link")
    parser.add_argument("--host", help="default: config app.host (always 0.0.0.0 on a Hugging Face Space)")
    parser.add_argument("--port", type=port_number, help="default: config app.port")
    add_model_flags(parser)  # includes --threads (config model.threads; steering.device.set_threads)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the app; bad arguments, a taken port or a missing device end with one line and exit code 2."""
    args = parse_args(argv)
    from steering.device import set_threads
    from steering.engine import Engine
    from steering.ui.build import build_app

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
