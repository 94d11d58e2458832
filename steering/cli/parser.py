"""The command-line parser: one sub-command per module of steering.cli, each adding itself with `register(sub)`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steering.cli import bench, chat, evaluate, extract, questions, tune, vectors
from steering.extract import import_caa


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`error: PROG: message`, exit status 2), no usage dump."""

    def error(self, message: str) -> None:  # one line, no usage dump
        """Print `error: PROG: message` on stderr and exit with status 2."""
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser: extract, chat, test, compare-vectors, export-gguf, evaluate, bench, tune,
    import-caa and build-vectors.

    Returns:
        The argparse parser; each subcommand sets `func(args, config) -> int`. Its errors are one line.
    """
    # lazy: steering.extract.first_use imports torch at module level (the other command modules do not)
    from steering.extract import first_use

    prog = "steering" if Path(sys.argv[0]).name == "steering" else "python -m steering"  # the installed command
    parser = OneLineParser(prog=prog, description="Contrastive Activation Addition for chat models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in (extract, chat, questions, vectors, evaluate, bench, tune, import_caa, first_use):
        module.register(sub)
    return parser
