"""Helpers shared by the command-line modules (steering.cli, steering.cli.evaluate, steering.evaluation.tune): the
model and --behavior flags, number and thread-count argument types, the system prompt, and the checks of
input and output paths made before any slow work starts.

Kept free of imports of the command modules (and of torch), so that each of them can import it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from steering.config import HOME_ENV, Config, home
from steering.errors import SteeringError


def config_help() -> str:
    """--config's help: where the default config file really is (steering.config.home's rule, and the path now).

    Returns:
        The help text (percent signs escaped for argparse).
    """

    try:
        now = f"here: {home() / 'config.yaml'}"
    except SteeringError as exc:  # a bad $LLAMA_STEERING_HOME: the command will say so when it loads the config
        now = str(exc)
    text = (
        f"config file (default: config.yaml in the home folder: ${HOME_ENV} when set, else the source checkout "
        f"this package runs from, else the current folder; {now})"
    )
    return text.replace("%", "%%")


def add_config_flag(p: Any) -> None:
    """Add --config (the config file; default: <home>/config.yaml) to a parser or an argument group."""
    p.add_argument("--config", metavar="FILE", help=config_help())


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Add the model flags (config file, model, dtype, device, quantisation, fast path, threads) as one group;
    each overrides config.yaml's model section when given (steering.cli.loading.model_overrides reads them)."""
    g = p.add_argument_group("model (overrides config.yaml)")
    add_config_flag(g)
    g.add_argument("--model", dest="name", help="hub id, local folder, or smollm2-135m-instruct")
    g.add_argument("--dtype", help="auto, float32, float16, bfloat16")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--device-map", help="e.g. auto (accelerate) for models larger than one GPU")
    g.add_argument("--load-in-8bit", action="store_true", default=None)
    g.add_argument("--load-in-4bit", action="store_true", default=None)
    g.add_argument("--compile", action="store_true", default=None, help="GPU fast path")
    g.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_false",
        default=None,
        help="GPU without --compile: plain eager decoding instead of CUDA-graph replay",
    )
    add_threads_flag(g)


def add_behavior_command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A sub-command's parser with the model flags and --behavior, in that order (extract, evaluate, tune).

    Args:
        sub: the sub-parsers object of steering.cli.build_parser.
        name: the sub-command's name.
        help: its one-line help.

    Returns:
        The new parser, for the command's own flags.
    """
    p = sub.add_parser(name, help=help)
    add_model_flags(p)
    p.add_argument("--behavior", default=None)
    return p


def add_answer_flags(p: argparse.ArgumentParser, max_new_tokens: int, rows_flag: str, answers: str) -> None:
    """The flags of a command that generates open-ended answers in batches (evaluate, tune).

    Args:
        p: the command's parser.
        max_new_tokens: the default of --max-new-tokens, the answers' length in tokens.
        rows_flag: the flag of how many answers one generate call makes (default 64).
        answers: what the answers are, for the help text ("open-ended", "tuning").
    """
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=max_new_tokens,
        help=f"{answers} answer length (default {max_new_tokens})",
    )
    p.add_argument(rows_flag, type=int, default=64, help=f"{answers} answers per generate call (default 64)")
    p.add_argument("--system-prompt")


def add_threads_flag(p: Any) -> None:
    """Add --threads (torch CPU threads: a count or auto) to a parser or argument group."""
    p.add_argument(
        "--threads",
        type=parse_threads,
        help="torch CPU threads: a count or auto (default: config "
        "model.threads; auto = half the cores or OMP_NUM_THREADS)",
    )


def system_prompt(args: argparse.Namespace, config: Config) -> str | None:
    """--system-prompt when given (even empty), else config.yaml's generation.system_prompt (None if unset)."""
    value = getattr(args, "system_prompt", None)
    return value if value is not None else config.generation.system_prompt


def check_input_file(path: str | Path, flag: str, folder_ok: bool = False) -> Path:
    """An input path that exists and is a file (or, with `folder_ok`, a folder); one-line errors otherwise."""
    path = Path(path)
    try:
        if not path.exists():
            raise SteeringError(f"{path}: file not found")
        if path.is_dir() and not folder_ok:
            raise SteeringError(f"{flag} {path}: is a folder, expected a file")
    except OSError as exc:
        raise SteeringError(f"{flag} {path}: cannot be read ({exc.strerror or exc})") from None
    return path


def check_destination(path: str | Path, flag: str, folder: bool = False) -> Path:
    """Refuse a destination that cannot be written, before any slow work starts.

    A file destination must not be a folder; a folder destination must not be a file. Writability is
    probed by creating (and removing) a temporary file in the nearest folder that exists, which is what
    the atomic writers will do later (os.access misjudges read-only mounts and root).

    Args:
        path: the file (or, with `folder`, the folder) that will be written.
        flag: how the message names it, e.g. "--out".
        folder: `path` is a folder (created when missing) rather than a file.

    Returns:
        `path` as a Path.

    Raises:
        SteeringError: the destination is of the wrong kind, sits under a file, or cannot be written.
    """
    path = Path(path)
    existing = None
    try:
        if folder and path.exists() and not path.is_dir():
            raise SteeringError(f"{flag} {path}: exists and is not a folder")
        if not folder and path.is_dir():
            raise SteeringError(f"{flag} {path}: is a folder, expected a file name")
        existing = (path if folder else path.parent).absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise SteeringError(f"{flag} {path}: cannot write there: {existing} is a file, not a folder")
        fd, probe = tempfile.mkstemp(prefix=".steering-write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = f" in {existing}" if existing is not None and existing != path.absolute() else " there"
        raise SteeringError(f"{flag} {path}: cannot write{where} ({exc.strerror or exc})") from None
    return path


def parse_float(text: str) -> float:
    """argparse type for a number: a one-line "expected a number, found '...'" error otherwise."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found '{text}'") from None


def parse_threads(text: str) -> int | str:
    """--threads: a whole number (checked >= 1 with the other counts) or 'auto'."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, found '{text}'") from None
