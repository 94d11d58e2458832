"""`python -m steering import-caa PATH`: the command line of steering.extract.import_caa."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from steering.cli.common import add_config_flag, add_threads_flag, check_destination
from steering.config import Config
from steering.errors import SteeringError
from steering.io.files import display_path


def register(sub: Any) -> None:
    """Add the `import-caa` sub-command to steering.cli's parser."""

    p = sub.add_parser(
        "import-caa",
        help="bring the CAA paper's datasets and vectors (a local checkout of its "
        "repository) into this project's layout",
    )
    p.add_argument("path", help="the root of a local checkout of the paper's repository")
    p.add_argument(
        "--dest", help="write into DEST/datasets and DEST/vectors (default: config.yaml's datasets_dir and vectors_dir)"
    )
    p.add_argument("--behaviors", nargs="+", help="only these behavior folders of the paper (default: all)")
    p.add_argument(
        "--rename",
        nargs="+",
        default=[],
        metavar="PAPER=OURS",
        help="name a paper folder differently here, e.g. corrigible-neutral-HHH=corrigible-neutral",
    )
    p.add_argument("--force", action="store_true", help="replace files that exist with other content")
    p.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    add_config_flag(p)
    add_threads_flag(p)
    p.set_defaults(func=cmd_import_caa)


def _parse_rename(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old or not new:
            raise SteeringError(f"--rename {value!r}: expected PAPER_FOLDER=OUR_NAME")
        out[old] = new
    return out


def cmd_import_caa(args: Any, config: Config) -> int:
    """Run import-caa: print what was found, written, left alone and skipped (and why).

    Returns:
        0, or 1 when a file was not written because it exists with other content (no --force).
    """
    from steering.extract.import_caa import plan_import, run_import  # lazy: imports torch (--help stays fast)

    rename = _parse_rename(args.rename)
    source = Path(args.path)
    if args.dest:
        datasets_dest, vectors_dest = Path(args.dest) / "datasets", Path(args.dest) / "vectors"
    else:
        datasets_dest, vectors_dest = config.datasets_dir, config.vectors_dir
    planned, report = plan_import(source, datasets_dest, vectors_dest, args.behaviors, rename, config.limits)
    if not args.dry_run:
        check_destination(datasets_dest, "datasets folder", folder=True)
        check_destination(vectors_dest, "vectors folder", folder=True)
    run_import(planned, report, force=args.force, dry_run=args.dry_run, show=lambda p: display_path(p))
    for line in report.lines():
        print(line)
    return 1 if report.conflicts else 0
