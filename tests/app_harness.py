"""Launch the web app in-process on a free local port (shared by the app test modules)."""

from __future__ import annotations

import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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
