"""The command-line parser: one sub-command per module of steering.cli, each adding itself with `register(sub)`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from steering.cli import bench, build_vectors, chat, evaluate, extract, import_caa, questions, tune, vectors


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`error: PROG: message`, exit status 2), no usage dump."""

    def error(self, message: str) -> None:  # one line, no usage dump
        """Print `error: PROG: message` on stderr and exit with status 2."""
        self.exit(2, f"error: {self.prog}: {message}\n")


class CommandParser(OneLineParser):
    """The top-level parser: arguments a sub-command does not know are reported under that sub-command's name
    (`error: steering bench: unrecognized arguments: --nope`), as its other errors are, not under the top level's.

    Attributes:
        commands: {sub-command name: its parser} (set by build_parser).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """argparse's parse_args, with unknown arguments reported by the sub-command's parser (exit status 2)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = self.commands.get(getattr(parsed, "command", None) or "", self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser: extract, chat, test, compare-vectors, export-gguf, evaluate, bench, tune,
    import-caa and build-vectors.

    Returns:
        The argparse parser; each subcommand sets `func(args, config) -> int`. Its errors are one line.
    """
    prog = "steering" if Path(sys.argv[0]).name == "steering" else "python -m steering"  # the installed command
    parser = CommandParser(prog=prog, description="Contrastive Activation Addition for chat models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in (extract, chat, questions, vectors, evaluate, bench, tune, import_caa, build_vectors):
        module.register(sub)
    parser.commands = dict(sub.choices)
    return parser
