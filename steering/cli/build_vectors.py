"""Vectors on first use from the command line: `build-vectors`, and the offer `chat`/`test` make when the
loaded model has no vectors for a behavior (steering.extract.first_use builds them)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable

from steering.cli import loading
from steering.cli.common import add_model_flags
from steering.config import Config, home_hint
from steering.core.limits import check_behavior_name
from steering.errors import SteeringError

if TYPE_CHECKING:
    from steering.extract.first_use import BuildResult


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_vectors(
    engine: Any,
    behavior: str,
    build: bool = False,
    ask: Callable[[str], str] | None = None,
    out: Callable[[str], None] = _stderr,
) -> BuildResult | None:
    """Make sure the loaded model has vectors for `behavior`; build them when allowed (the CLI's offer).

    Args:
        engine: the Engine.
        behavior: the behavior a command steers with.
        build: build without asking (--build-vectors).
        ask: a prompt function (input) to ask with on a terminal; None = do not ask.
        out: where the line saying what was built goes (default: stderr, so `chat --json` stays JSON).

    Returns:
        The BuildResult when vectors were built, else None (they were there already).

    Raises:
        SteeringError: no vectors and no dataset, or no vectors and the build was not allowed (the
            message says how to build them).
    """
    from steering.extract.first_use import build_vectors, buildable_behaviors  # lazy: imports torch
    from steering.io.vector_store import vector_path

    if vector_path(engine.vectors_dir, behavior, engine.lm.slug).exists():
        return None
    if behavior not in buildable_behaviors(engine.config):
        return None  # nothing to build from: Engine.vectors_for gives its own message
    if not build and ask is not None:
        answer = (
            ask(
                f"No '{behavior}' vectors for {engine.lm.name} yet. Build them now from the shipped "
                f"dataset (a few seconds to minutes)? [Y/n] "
            )
            .strip()
            .lower()
        )
        build = answer in ("", "y", "yes")
    if not build:
        raise SteeringError(
            f"no '{behavior}' vectors for {engine.lm.name} yet; build them with "
            f"--build-vectors or: python -m steering build-vectors --behavior {behavior}"
        )
    result = build_vectors(engine, behavior, progress=tqdm_progress(f"building '{behavior}' vectors"))
    out(f"built {result.path} ({result.summary()})")
    return result


def tqdm_progress(desc: str) -> Callable[[int, int], None]:
    """A build_vectors progress callback drawing a tqdm bar (closed when the last pair is done)."""
    from tqdm.auto import tqdm  # lazy: only when a build runs (--help stays fast)

    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=desc, unit="pair"))
        bar[0].n = done
        bar[0].refresh()
        if done >= total:
            bar[0].close()

    return update


def register(sub: Any) -> None:
    """Add the `build-vectors` sub-command to steering.cli's parser."""

    p = sub.add_parser(
        "build-vectors",
        help="build and cache the loaded model's vectors for behaviors whose "
        "dataset ships and that have none yet (first use)",
    )
    add_model_flags(p)
    p.add_argument(
        "--behavior",
        nargs="+",
        dest="behaviors",
        help="these behaviors (default: every shipped behavior without vectors for the model)",
    )
    p.add_argument("--max-pairs", type=int, help="only the first N pairs of each dataset")
    p.add_argument("--batch-size", type=int)
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild vectors that exist (a warning says what a replacement with fewer pairs or layers loses)",
    )
    p.set_defaults(func=cmd_build_vectors)


def cmd_build_vectors(args: Any, config: Config) -> int:
    """Build the missing (or the named) behaviors' vectors for the loaded model, with tqdm bars.

    A behavior that cannot be built (e.g. its dataset is not valid JSON) is skipped with a one-line report
    and the others are built; the exit code is then 2 (0 when every build succeeded).
    """
    from steering.extract.first_use import build_vectors, buildable_behaviors, missing_behaviors  # lazy: torch

    names = [check_behavior_name(name) for name in args.behaviors or []]
    for name in names:  # before the slow model load
        if name not in buildable_behaviors(config):
            raise SteeringError(
                f"no dataset for '{name}' to build vectors from (shipped: "
                f"{', '.join(buildable_behaviors(config)) or 'none'}){home_hint()}"
            )
    engine = loading.load_engine(args, config)
    todo = names or missing_behaviors(engine)
    if not todo:
        print(f"every shipped behavior has vectors for {engine.lm.name}; nothing to build")
        return 0
    failed = []
    for name in todo:  # a broken dataset is reported in one line and the others are still built
        try:
            result = build_vectors(
                engine,
                name,
                progress=tqdm_progress(f"building '{name}' vectors"),
                max_pairs=args.max_pairs,
                batch_size=args.batch_size,
                force=args.force,
            )
        except SteeringError as exc:
            if names and len(names) == 1:
                raise
            failed.append(name)
            _stderr(f"skipped '{name}': {exc}")
            continue
        print(f"built {result.path} ({result.summary()})")
    if failed:
        _stderr(f"{len(failed)} of {len(todo)} behaviors not built: {', '.join(failed)}")
        return 2
    return 0
