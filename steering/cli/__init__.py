"""Command line: `python -m steering` / `steering` {extract, chat, test, compare-vectors, export-gguf, evaluate,
bench, tune, import-caa, build-vectors}.

Modules, one job each:
  parser     build_parser: the one-line-error parser, every sub-command's `register(sub)`
  checks     flag checks made before files are read or a model loads (counts, ranges, output paths)
  loading    the model flags as ModelSettings overrides and `load_engine` (the one model loader; tests replace it)
  common     shared flags (model, --behavior, --threads), input/output path checks, the system prompt
  steer      what chat and test share: sampling flags and settings, the vector and layer to steer with
  extract    `extract`                      chat       `chat`
  questions  `test` (the paper's test.py)   vectors    `compare-vectors`, `export-gguf`
  evaluate   `evaluate` (its runner: steering.evaluation.run)
  tune       `tune` (the search: steering.evaluation.tune)
  bench      `bench` (the measurements: steering.bench)
  import_caa `import-caa` (the import: steering.extract.import_caa)
  build_vectors  `build-vectors` and the offer chat/test make (the build: steering.extract.first_use)

Importing the command modules does not import torch: each command imports the model code when it runs.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Sequence

from steering.cli.checks import check_arguments
from steering.cli.loading import model_overrides
from steering.cli.parser import build_parser
from steering.config import load_config, override
from steering.errors import SteeringError

__all__ = ["build_parser", "main"]


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging  # lazy: transformers is slow to import

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # weight-loading bars; our own long work keeps its bars
    except ImportError:
        pass
    logging.basicConfig(format="%(message)s")
    logging.getLogger("steering").setLevel(logging.INFO)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `steering` / `python -m steering`: parse, load the config, check the flags, run the command.

    Args:
        argv: the arguments without the program name (None: sys.argv[1:]).

    Returns:
        The exit status: the command's (0 on success), 2 on a SteeringError or OSError (printed as one line
        `error: ...` on stderr, never a traceback), 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
        if hasattr(args, "behavior") and args.behavior is None:
            args.behavior = config.behavior
        check_arguments(args, config)  # every flag's range (named by its flag), before a file or model loads
        # the model flags over config `model:` (the app does the same; steering.config.override)
        config = override(config, model=model_overrides(args), source="command line")
        _quiet_libraries()
        if hasattr(args, "threads"):
            from steering.device import set_threads  # lazy: imports torch (--help stays fast)

            set_threads(config.model.threads)
        return args.func(args, config)
    except SteeringError as exc:
        detail = f" ({exc.detail})" if getattr(exc, "detail", None) else ""
        print(_one_line(f"error: {exc}{detail}"), file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the checks could not foresee (disk full, removed meanwhile)
        where = f"{exc.filename}: " if exc.filename else ""
        print(_one_line(f"error: {where}{exc.strerror or exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
