"""The one place a command loads its model: the model flags as ModelSettings overrides, and `load_engine`.

Every command that needs the model calls `loading.load_engine(args, config)` through this module, so a test
replaces the loader in one place (`monkeypatch.setattr("steering.cli.loading.load_engine", ...)`).
"""

from __future__ import annotations

import argparse
from typing import Any

from steering.config import Config


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model flags of `args` (steering.cli.common.add_model_flags) as ModelSettings overrides; None = not given."""
    keys = (
        "name",
        "dtype",
        "device",
        "device_map",
        "load_in_8bit",
        "load_in_4bit",
        "compile",
        "cuda_graphs",
        "threads",
    )
    return {k: getattr(args, k, None) for k in keys}


def load_engine(args: argparse.Namespace, config: Config) -> Any:
    """Load the command's model: a steering.engine.Engine from `config` with the model flags of `args` applied.

    Raises:
        SteeringError: the model cannot be found or loaded (steering.models.load_model).
    """
    from steering.engine import Engine  # lazy: torch and transformers load only when a command needs the model

    engine = Engine.from_config(config, **model_overrides(args))
    engine.warm_up()  # the fast path, when the model settings ask for it
    return engine
