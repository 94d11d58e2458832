"""What the GPU scripts (gpu_check.py, gpu_profile.py, gpu_70b.py) share: their command line (--out, --smoke,
a GPU check) and a report made of sections, each recorded as it finishes (a failing one does not stop the rest).

The scripts run as `python scripts/NAME.py` from the repository root: this folder is then on sys.path, so they
import this module as `gpu_common`.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, gpus: int = 1) -> tuple[Any, Path]:
    """Add --out and --smoke to `parser`, parse `argv`, create the output folder and check the GPUs.

    Args:
        parser: the script's parser with its own options.
        argv: the command line (None: sys.argv[1:]).
        gpus: CUDA GPUs the script needs without --smoke.

    Returns:
        (the parsed arguments, the output folder).

    Raises:
        SystemExit: without --smoke, when fewer than `gpus` CUDA GPUs are visible.
    """
    import torch

    parser.add_argument("--out", required=True, help="folder for the report (created)")
    parser.add_argument("--smoke", action="store_true", help="a tiny model on the CPU (checks the script)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.smoke and torch.cuda.device_count() < gpus:
        raise SystemExit(f"needs {'a CUDA GPU' if gpus == 1 else f'{gpus} CUDA GPUs'} (or --smoke)")
    return args, out


class Sections:
    """Runs a script's sections one after another into `store` ({name: {"ok", "seconds", ...what it returned}}
    or {"ok": False, "error", "traceback"}), prints one line per section and, when `save` is given, calls it
    after each one (the report is on disk even if a later section crashes the process)."""

    def __init__(self, store: dict[str, Any], save: Callable[[], None] | None = None) -> None:
        self.store = store
        self.save = save

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        """Run `fn` and record its dict (or the exception it raised) under `name`.

        Args:
            name: the section's key in the report.
            fn: the section; returns a dict of results (or None).
        """
        began = time.perf_counter()
        try:
            self.store[name] = {"ok": True, **(fn() or {})}
        except BaseException as exc:  # recorded, the other sections still run
            self.store[name] = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-3000:],
            }
        self.store[name]["seconds"] = round(time.perf_counter() - began, 2)
        print(f"[{'ok' if self.store[name]['ok'] else 'FAILED'}] {name} ({self.store[name]['seconds']} s)", flush=True)
        if self.save is not None:
            self.save()


def json_saver(report: dict[str, Any], path: Path) -> Callable[[], None]:
    """A function that writes `report` to `path` as indented JSON (values JSON cannot hold as their str)."""
    return lambda: path.write_text(json.dumps(report, indent=2, default=str))
