"""The command-line parser: one sub-command per module of steering.cli, each adding itself with `register(sub)`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steering.cli import bench, build_vectors, chat, evaluate, extract, import_caa, questions, tune, vectors


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
    prog = "steering" if Path(sys.argv[0]).name == "steering" else "python -m steering"  # the installed command
    parser = OneLineParser(prog=prog, description="Contrastive Activation Addition for chat models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in (extract, chat, questions, vectors, evaluate, bench, tune, import_caa, build_vectors):
        module.register(sub)
    return parser
