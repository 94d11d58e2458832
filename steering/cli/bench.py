"""`python -m steering bench`: the subcommand's flags and what it runs (the CPU or the GPU report).

The measurements live in steering.bench (which never imports steering.cli, nor torch until a section runs);
this module hands them the model loader (steering.cli.loading.load_engine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from steering.bench.common import SECTIONS
from steering.bench.cpu import run_cpu_bench
from steering.bench.gpu import run_gpu_bench
from steering.bench.tables import format_cpu_table, format_gpu_table, format_users_table
from steering.bench.users_setup import run_users_bench
from steering.cli import loading
from steering.cli.common import add_model_flags
from steering.config import PROJECT_ROOT, Config
from steering.errors import SteeringError
from steering.io.files import write_text

EngineFactory = Callable[[argparse.Namespace, dict[str, Any]], Any]
USERS_JSON = PROJECT_ROOT / "results" / "bench"  # --users writes here without --json


def cmd_bench(args: argparse.Namespace, config: Config, engine_factory: EngineFactory | None = None) -> int:
    """Run the benchmark, print its table; with --json FILE also write FILE and the table as FILE's .md.

    Args:
        args: the flags of register's parser.
        config: the loaded config.yaml.
        engine_factory: (args, config) -> Engine, the model loader of the CPU report (default:
            steering.cli.loading.load_engine, looked up when the command runs).

    Returns:
        The exit status, 0.
    """
    engine_factory = engine_factory or loading.load_engine
    if args.repeats is None:
        args.repeats = 3 if args.users else 5  # (steering.cli refuses a count below 1 before this runs)
    if args.users:
        if min(args.users) < 1:
            raise SteeringError(f"--users: each user count must be at least 1, got {min(args.users)}")
        results = run_users_bench(args, config, engine_factory)
        table = format_users_table(
            results["users"], gpu=bool(args.synthetic_7b), machine=results["machine"], model=results.get("model")
        )
        print(table)
        path = (
            Path(args.json) if args.json else USERS_JSON / ("users-gpu.json" if args.synthetic_7b else "users-cpu.json")
        )
        write_results(path, results, table)
        return 0
    if args.synthetic_7b:
        results = run_gpu_bench(
            args.tokens, args.repeats, layers=args.layers_7b, skip_quantized=args.skip_quantized, work_dir=args.work_dir
        )
        table = format_gpu_table(results)
    else:
        results = run_cpu_bench(args, config, engine_factory)
        table = format_cpu_table(results)
    print(table)
    if args.json:
        write_results(Path(args.json), results, table)
    return 0


def write_results(path: Path, results: dict[str, Any], table: str) -> None:
    """Write the results as JSON at `path` and the table next to it (`path` with suffix .md); say so."""
    write_text(path, json.dumps(results, indent=2, default=str) + "\n")
    write_text(path.with_suffix(".md"), table + "\n")
    print(f"wrote {path} and {path.with_suffix('.md')}")


def register(sub: Any) -> None:
    """Add the `bench` subcommand to the subparsers `sub` (steering.cli.parser.build_parser's)."""
    p = sub.add_parser("bench", help="performance: batched panes, hook overhead, extraction, load, memory")
    add_model_flags(p)
    p.add_argument("--json", help="also write the results here (and the table next to it as .md)")
    p.add_argument(
        "--only", nargs="+", choices=SECTIONS, help=f"sections to run (default: all of {', '.join(SECTIONS)})"
    )
    p.add_argument("--tokens", type=int, default=64, help="new tokens per generation (EOS ignored)")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats of each generation variant (default 5); with --users the interleaved rounds "
        "of every user count, medians reported (default 3)",
    )
    p.add_argument("--hook-repeats", type=int, default=9)
    p.add_argument("--pairs", type=int, default=48, help="A/B pairs for the extraction benchmark")
    p.add_argument("--extract-repeats", type=int, default=3)
    p.add_argument("--load-repeats", type=int, default=3)
    p.add_argument("--behavior", default=None)
    p.add_argument(
        "--synthetic-7b",
        action="store_true",
        help="GPU: random Llama-2-7B-shaped fp16 model, eager vs compiled fast path, 8-bit, nf4",
    )
    p.add_argument("--layers-7b", type=int, default=32, help="decoder layers of the synthetic model (32 = 7B)")
    p.add_argument("--skip-quantized", action="store_true", help="--synthetic-7b without the 8-bit / 4-bit runs")
    p.add_argument("--work-dir", help="--synthetic-7b: folder for the saved random model")
    p.add_argument(
        "--users",
        type=int,
        nargs="+",
        metavar="N",
        help="several users at once through the scheduler instead of the sections: e.g. 1 2 4 (CPU), "
        "1 4 16 with --synthetic-7b (GPU); writes results/bench/users-cpu.json (or --json)",
    )
    p.add_argument(
        "--fast-path",
        action="store_true",
        help="--users: batch in the fast path's static caches (CUDA graphs per batch bucket on a GPU) "
        "instead of the eager path",
    )
    p.set_defaults(func=cmd_bench)
