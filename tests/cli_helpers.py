"""Test helpers for the command line (plain functions, imported as `from cli_helpers import ...`): the CLI in a
subprocess (`python -m steering`) or in this process (steering.cli.main), and the one-line error check every
refusal must pass. tests/conftest.py has the `no_model` fixture (loading a model fails the test)."""

from __future__ import annotations

import subprocess
import sys

from steering.config import PROJECT_ROOT


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m steering ARGS` in a subprocess from the project root; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "steering", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A failed run of run_cli whose stderr is one line `error: ...` (no traceback) containing every fragment."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def run_main(capsys, *argv) -> tuple[int, str, str]:
    """steering.cli.main(argv) in this process (each argument as str): (exit code, stdout, stderr)."""
    from steering.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(capsys, argv, *fragments: str) -> str:
    """steering.cli.main(argv) exits 2 with one stderr line `error: ...` (no traceback) containing every fragment;
    returns that line."""
    code, out, err = run_main(capsys, *argv)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_flag_refused(capsys, argv, *fragments: str) -> str:
    """steering.cli.main(argv) stops in argparse (a flag's type check, before any model loads) with exit 2 and one
    stderr line `error: ...` containing every fragment; returns that line."""
    import pytest

    from steering.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
