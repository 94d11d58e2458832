"""Before the app starts: its command-line checks (port, host, device) and demo.launch's options.

Light to import (no torch, no Gradio, no UI modules at import time): app.py parses its flags with it, so
`python app.py --help` and a bad flag answer before the heavy imports.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from collections.abc import Mapping
from typing import Any

from steering.config import Config, override
from steering.errors import SteeringError
from steering.ui.layout import CSS, METER_CSS, PHONE_CSS


def port_number(text: str) -> int:
    """--port: a TCP port, 1 to 65535 (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {port}")
    return port


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
    name = (device or "auto").strip()
    if name == "auto" or name == "cpu":
        return
    import torch  # lazy: app.py imports this module before parsing flags (--help answers before torch loads)

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


def launch_options(args: argparse.Namespace, config: Config, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """demo.launch(...) arguments: the flags --host/--port/--share over config `app:` (steering.config.override);
    a Space (SPACE_ID set) must listen on 0.0.0.0."""
    from steering.ui.explainer import DEMO_CSS  # lazy: imports torch (app.py --help stays light)

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
