"""`python -m steering tune`: the command line of the recipe search (steering.evaluation.tune): its flags, the
checks made before the model loads, one search per question file, the report and the defaults file it writes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from steering.cli import loading
from steering.cli.common import add_answer_flags, add_behavior_command
from steering.cli.common import parse_float as _float
from steering.cli.common import system_prompt as _system_prompt
from steering.config import Config, home, model_slug
from steering.core.behaviors import judge_for
from steering.core.datasets import file_sha256, load_open_ended, normalize_question
from steering.core.limits import check_behavior_name
from steering.errors import SteeringError
from steering.evaluation.coherence_rule import COHERENCE, DEMO_MIN_DISTINCT3, MAX_LOOPS
from steering.evaluation.refusal import RefusalDetector
from steering.io.files import display_path as _display_path


def register(sub: Any) -> None:
    """Add the `tune` sub-command (its flags) to the sub-parsers `sub`."""
    p = add_behavior_command(
        sub,
        "tune",
        "search vector x layer(s) x operator x strength on the tuning "
        "questions and write the winner to vectors/<behavior>/<model>.defaults.json",
    )
    p.add_argument(
        "--questions",
        nargs="+",
        help="tuning question file(s) (default: datasets/<behavior>/tune_open_ended.json); with several, "
        "each is a group and a setting must hold on every group",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=24,
        help="use N questions spread evenly over each file (default 24; more than the file has: all)",
    )
    p.add_argument("--vectors", nargs="+", help="vector files (methods) to try (default: the behavior's file)")
    p.add_argument("--layers", type=int, nargs="+", help="anchor layers (default: the model's layer -2, 0, +2)")
    p.add_argument("--bands", type=int, nargs="+", default=[1], help="band widths (default 1)")
    p.add_argument(
        "--plus", nargs="+", default=["add", "clamp"], help="added-side operators (add clamp ablate add_norm)"
    )
    p.add_argument(
        "--minus",
        nargs="+",
        default=["add", "ablate"],
        help="subtracted-side operators (add clamp ablate add_norm: addition that keeps each position's norm)",
    )
    p.add_argument(
        "--strengths", type=_float, nargs="+", help="strengths (default: relative 0.1 0.2 0.3; multiplier 1 2 4)"
    )
    p.add_argument(
        "--minus-strengths",
        type=_float,
        nargs="+",
        help="subtracted-side strengths, each paired with every --strengths value (the recipe's "
        "strength_minus; default: the same as --strengths)",
    )
    p.add_argument(
        "--minus-windows",
        type=_window,
        nargs="+",
        help="where the subtracted side steers: N = only the first N positions from the end of the instruction, "
        "'all' = every position (CAA); each value is searched (the recipe's minus_window; default: all)",
    )
    p.add_argument("--unit", default="relative", help="relative (x the hidden-state norm, default) or multiplier")
    p.add_argument(
        "--own-vectors",
        action="store_true",
        help="in a band, each layer its own vector (default: the anchor layer's at every layer)",
    )
    add_answer_flags(p, 32, "--batch-rows", "tuning")
    p.add_argument(
        "--min-distinct",
        type=_float,
        default=COHERENCE.min_distinct_ratio,
        help="coherent: distinct-3 >= this x unsteered",
    )
    p.add_argument(
        "--max-perplexity",
        type=_float,
        default=COHERENCE.max_perplexity_ratio,
        help="coherent: perplexity <= this x unsteered",
    )
    p.add_argument(
        "--max-loops",
        type=_loop_share,
        default=MAX_LOOPS,
        help=f"coherent: the share of looping answers (own distinct-3 < 0.5) on each side at most this many share "
        f"points above the unsteered answers' (0..1, default {MAX_LOOPS:g}; 'off' = not checked)",
    )
    p.add_argument(
        "--demo",
        nargs="+",
        metavar="PROMPT",
        help='prompts a demo shows first (e.g. "What\'s your favorite planet?"): the winner is the best coherent '
        "setting whose added answer to each shows the behavior, subtracted answer does not, and neither loops "
        f"(distinct-3 >= {DEMO_MIN_DISTINCT3:g}); none passing: the best coherent setting, with a warning",
    )
    p.add_argument("--out", help="defaults file (default: vectors/<behavior>/<model-slug>.defaults.json)")
    p.add_argument("--cache", help="cache file (default: next to --out, <model-slug>.tune-cache.json)")
    p.add_argument("--dry-run", action="store_true", help="report only; do not write the defaults file")
    p.add_argument(
        "--no-incumbent",
        action="store_true",
        help="do not score the recipe of the defaults file being replaced (default: it is scored with the search, "
        "shown as '(current)', and kept when it scores best)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing defaults file (without it, tune refuses before loading the model when the "
        "file it would write exists)",
    )
    p.set_defaults(func=cmd_tune)


def _window(text: str) -> int | None:
    """A --minus-windows value: 'all' (None: every position) or a whole number >= 1 (ArgumentTypeError otherwise)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'all', got {text!r}")
    return value


def _unique(values: Any) -> list:
    """The values in their first order, each once (a flag value given twice is searched once)."""
    return list(dict.fromkeys(values))


def _spread(items: list, limit: int) -> list:
    """`limit` items spread evenly over the list (all of them for limit >= len)."""
    if limit >= len(items):
        return list(items)
    return [items[(i * len(items)) // limit] for i in range(limit)]


def cmd_tune(args: argparse.Namespace, config: Config) -> int:
    """`tune`: search layer x band x operator x strength for a behavior's recipe and write the winner.

    Scores every setting on a tuning split of open-ended questions (never the test set), as the module
    docstring describes, prints the table and writes vectors/<behavior>/<model slug>.defaults.json (or --out)
    unless --dry-run. Before the model loads it refuses an existing defaults file without --force (or
    --dry-run), and a --questions file sharing a question with the behavior's held-out sets
    (datasets/<behavior>/test_open_ended*.json); after the search it writes nothing when the winner steers
    nothing (contrast <= 0). The operators: CAA addition (Rimsky et al. 2023, arXiv 2312.06681, section 3),
    projection clamp, and directional ablation (Arditi et al. 2024, arXiv 2406.11717, section 2.4).

    Args:
        args: parsed flags of `tune` (--layers, --bands, --plus, --minus, --strengths, --minus-strengths,
            --unit, --questions, --vectors, --limit, --max-new-tokens, --out, --cache, --dry-run, ...).
        config: the loaded config.yaml tree.

    Returns:
        0 once the table is printed (and the defaults file written).

    Raises:
        SteeringError: a bad flag, behavior name, search space, questions or vector file, a held-out test
            question among the tuning questions, or an existing defaults file without --force / --dry-run
            (all checked before the model loads); nothing scored; a winner with contrast <= 0 (nothing written).
    """
    # lazy: these import torch (--help stays fast)
    from steering.decode.generation import SamplingSettings
    from steering.evaluation.tune import (
        CACHE_VERSION,
        DEFAULT_STRENGTHS,
        SearchSpace,
        VectorSource,
        apply_demo,
        combine_groups,
        questions_hash,
        run_tune,
        side_jobs,
    )
    from steering.io.recipe_defaults import defaults_path
    from steering.io.vector_store import vector_path

    check_behavior_name(args.behavior)
    limits = config.limits  # --limit, --max-new-tokens and --batch-rows are checked before this (check_arguments)
    unit = args.unit
    if unit not in DEFAULT_STRENGTHS:
        raise SteeringError(f"tune: --unit must be one of {', '.join(DEFAULT_STRENGTHS)}, found '{unit}'")
    strengths = args.strengths or DEFAULT_STRENGTHS.get(unit, [])
    space = SearchSpace(
        # a value given twice is searched once (dict.fromkeys keeps the first order)
        layers=_unique(args.layers or []) or [0],
        bands=_unique(args.bands),
        plus=_unique(args.plus),
        minus=_unique(args.minus),
        strengths=_unique(strengths),
        unit=unit,
        shared_vector=not args.own_vectors,
        minus_strengths=_unique(args.minus_strengths) if args.minus_strengths else None,
        minus_windows=_unique(args.minus_windows) if args.minus_windows else None,
    )
    space.check()  # before the slow model load
    question_paths = (
        [Path(q) for q in args.questions]
        if args.questions
        else [config.datasets_dir / args.behavior / "tune_open_ended.json"]
    )
    if len({path.resolve() for path in question_paths}) < len(question_paths):
        raise SteeringError("--questions: a file is named twice")
    held_out = _held_out_questions(config.datasets_dir / args.behavior, limits)
    groups = []  # (name, questions) per file
    for path in question_paths:
        part = _spread(_tuning_questions(path, held_out, limits), args.limit)
        if not part:
            raise SteeringError(f"{path}: no questions")
        groups.append((_display_path(path), part))
    questions_path = question_paths[0]
    demo = _demo_prompts(args.demo, held_out, limits)
    for path in args.vectors or []:
        if not Path(path).exists():
            raise SteeringError(f"--vectors: {path}: file not found")
    # the file it would write (the app's and the CLI's recipe, by default) is not replaced without --force
    shipped = defaults_path(config.vectors_dir, args.behavior, model_slug(config.model.name))  # == after loading
    _check_replacement(Path(args.out) if args.out else shipped, args)

    try:  # the behavior card's judge (steering.core.behaviors.judge_for; refusal: config's refusal_phrases override it)
        detector = (
            RefusalDetector.from_config(config) if args.behavior == "refusal" else judge_for(config, args.behavior)
        )
    except ValueError as exc:
        raise SteeringError(f"config evaluation.refusal_phrases: {exc}") from None
    engine = loading.load_engine(args, config)
    lm = engine.lm
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    for index, prompt in enumerate(demo):  # the token budget too, before the search (not hours later)
        try:
            engine.check_request([{"role": "user", "content": prompt}], settings, _system_prompt(args, config))
        except SteeringError as exc:
            raise SteeringError(f"--demo: prompt {index}: {exc}") from None
    if not args.layers:  # around the behavior's current anchor layer: its tuned defaults file's, else config.yaml's
        anchor = engine.recipe(args.behavior).layer
        space.layers = sorted({min(max(anchor + d, 0), lm.num_layers - 1) for d in (-2, 0, 2)})
    space.check(lm.num_layers)
    sources = []
    own = vector_path(engine.vectors_dir, args.behavior, lm.slug)
    for path in [Path(p) for p in args.vectors] if args.vectors else [own]:
        vset = engine.load_vector_file(path) if args.vectors else engine.vectors_for(args.behavior)
        is_own = path.resolve() == own.resolve()
        method = vset.metadata.get("method") or vset.metadata.get("read_mode")
        label = f"{path.name}" + (f" ({method})" if method else "")
        sources.append(VectorSource(None if is_own else _recipe_path(path), label, file_sha256(path), method, vset))
    out = Path(args.out) if args.out else defaults_path(engine.vectors_dir, args.behavior, lm.slug)
    if out.exists() and out.is_dir():
        raise SteeringError(f"--out {out}: is a folder")
    _check_replacement(out, args)  # again: the loaded model's slug and folder (the same outside tests)
    replaced = _read_replaced(out)
    if replaced is not None and not args.no_incumbent:
        _add_incumbent(space, sources, replaced, out, lm.num_layers)
    cache_path = (
        Path(args.cache) if args.cache else out.with_name(out.name.replace(".defaults.json", "") + ".tune-cache.json")
    )
    system_prompt = _system_prompt(args, config)
    n_settings = len(side_jobs(space, len(sources))[0])
    results, hashes = [], []

    def search(questions: list[str], cache: Path, context: dict[str, Any]) -> Any:
        """run_tune of this search on `questions`, with its own cache file and context."""
        return run_tune(
            engine,
            questions,
            sources,
            space,
            settings,
            detector,
            cache,
            context,
            system_prompt,
            batch_rows=args.batch_rows,
            min_distinct=args.min_distinct,
            max_perplexity=args.max_perplexity,
            max_loops=args.max_loops,
        )

    for index, (path, (name, part)) in enumerate(zip(question_paths, groups)):
        # each file its own cache (the first: --cache, so a one-file run keeps earlier caches usable)
        group_cache = cache_path if index == 0 else cache_path.with_name(f"{cache_path.stem}.{path.stem}.json")
        context = {
            "model": lm.name,
            "dtype": str(lm.dtype),
            "questions_sha256": questions_hash(part),
            "max_new_tokens": args.max_new_tokens,
            "system_prompt": system_prompt,
            "cache_version": CACHE_VERSION,  # not the judge: cached texts are judged again (rejudge)
        }
        hashes.append(context["questions_sha256"])
        print(
            f"# {lm.describe()}\n# tune: {len(part)} questions of {name}, {n_settings} settings; "
            f"cache {_display_path(group_cache)}",
            file=sys.stderr,
        )
        results.append(
            (
                name,
                search(part, group_cache, context),
            )
        )
    result = combine_groups(results)
    if demo:  # one more run over the demo prompts (its own cache), then the winner among the demo-ready settings
        demo_cache = cache_path.with_name(f"{cache_path.stem}.demo.json")
        context = {**context, "questions_sha256": questions_hash(demo)}
        print(
            f"# tune: {len(demo)} demo prompt(s), {n_settings} settings; cache {_display_path(demo_cache)}",
            file=sys.stderr,
        )
        demo_run = search(demo, demo_cache, context)
        result = apply_demo(result, demo_run, detector)
        result.generated_rows += demo_run.generated_rows
        result.seconds += demo_run.seconds
    return _report_and_write(args, result, sources, space, groups, hashes, questions_path, out, replaced, lm.name, demo)


def _report_and_write(
    args: argparse.Namespace,
    result: Any,
    sources: list,
    space: Any,
    groups: list,
    hashes: list[str],
    questions_path: Path,
    out: Path,
    replaced: dict[str, Any] | None,
    model_name: str,
    demo: list[str] | None = None,
) -> int:
    """Print the table and the winner; write the defaults file unless --dry-run, the winner steers nothing
    (SteeringError) or the winner is the current recipe (the file is kept). Returns 0."""
    from steering.evaluation.tune import defaults_record, demo_summary, report_markdown, winner_recipe
    from steering.io.recipe_defaults import save_defaults

    print(report_markdown(result), end="")
    if result.winner is None:
        raise SteeringError("tune: nothing was scored")
    recipe = winner_recipe(result.winner, sources, space)
    note = "" if result.coherent else " (no setting kept the text coherent: best score shown)"
    print(
        f"\nwinner: {result.winner['setting']['vector']}, {recipe.describe()}; refusal "
        f"{result.winner['added']['refusal_rate']:.2f} (+) / {result.winner['subtracted']['refusal_rate']:.2f} (−), "
        f"unsteered {result.unsteered['refusal_rate']:.2f}{note}"
    )
    for name, part in (result.winner.get("groups") or {}).items():
        print(
            f"  {name}: score {part['score']:+.2f}, contrast {part['contrast']:.2f}, "
            f"{'coherent' if part['coherent'] else 'NOT coherent'}, margin {part['margin']:+.3f}"
        )
    if demo:
        verdict = result.winner.get("demo") or {}
        for index, prompt in enumerate(demo):
            print(f"  demo {prompt!r}:\n    + {verdict['added'][index]!r}\n    − {verdict['subtracted'][index]!r}")
        if not verdict.get("ready"):
            print(
                f"warning: no coherent setting passed the demo prompts ({verdict.get('failed')}): the best coherent "
                "setting is shown",
                file=sys.stderr,
            )
    print(f"({result.generated_rows} answers generated, {result.seconds:.0f} s)", file=sys.stderr)
    contrast = result.winner["contrast"]
    if contrast <= 0:  # added refusal rate not above the subtracted one: a recipe that steers nothing
        if args.dry_run:
            print(f"no setting steered (best contrast {contrast:.2f})")
            return 0
        raise SteeringError(f"tune: no setting steered (best contrast {contrast:.2f}): nothing written")
    if result.winner["setting"].get("incumbent"):
        print(f"the current recipe in {_display_path(out)} scores best: the file is kept as it is")
        return 0
    if args.dry_run:
        return 0
    record = defaults_record(args, model_name, result, sources, space, groups, hashes, questions_path)
    if demo:
        record["demo"] = demo_summary(result, demo)
    if replaced is not None:  # the replaced file's recipe and history are kept, not lost
        record["replaced"] = replaced
    save_defaults(out, recipe, record)
    print(f"wrote {_display_path(out)}")
    return 0


def _read_replaced(out: Path) -> dict[str, Any] | None:
    """The JSON of the defaults file a run would replace (None when there is none or it is not a JSON object)."""
    if not out.is_file():
        return None
    try:
        data = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _add_incumbent(space: Any, sources: list, replaced: dict[str, Any], out: Path, num_layers: int) -> None:
    """Score the replaced file's recipe with the search (space.extra), when its vector file is one of `sources`
    and it fits the model; otherwise say on stderr why it is not compared."""
    from steering.core.recipe import Recipe

    try:
        recipe = Recipe.from_dict(replaced.get("recipe"), where=f"{_display_path(out)}: recipe")
        recipe.layers(num_layers)
    except SteeringError as exc:
        print(f"# tune: the current recipe is not compared ({exc})", file=sys.stderr)
        return
    index = next((i for i, source in enumerate(sources) if source.path == recipe.vector), None)
    if index is None:
        print(
            f"# tune: the current recipe's vectors ({recipe.vector or 'the behavior file'}) are not among --vectors: "
            "not compared",
            file=sys.stderr,
        )
        return
    space.extra.append((index, recipe))
    print(f"# tune: the current recipe ({recipe.describe()}) is scored too (--no-incumbent: not)", file=sys.stderr)


def _check_replacement(out: Path, args: argparse.Namespace) -> None:
    """Refuse (SteeringError, one line) to replace an existing defaults file `out` unless --force or --dry-run."""
    if args.force or args.dry_run or not out.exists():
        return
    what = "" if args.out else " (the recipe the app and CLI use)"
    raise SteeringError(
        f"{_display_path(out)} exists{what}; pass --force to replace it, --out FILE to write elsewhere, "
        "or --dry-run to only report"
    )


def _tuning_questions(path: Path, held_out: dict[str, Path], limits: Any) -> list[str]:
    """The questions of a tuning file (load_open_ended); SteeringError (one line: file, item index, held-out file)
    when one of them is a held-out test question (`held_out`, from _held_out_questions)."""
    questions = load_open_ended(path, limits)
    for index, question in enumerate(questions):
        source = held_out.get(normalize_question(question))
        if source is not None:
            raise SteeringError(
                f"tune: {_display_path(path)} item {index} is a held-out test question (in "
                f"{_display_path(source)}): tune on tuning questions only"
            )
    return questions


def _demo_prompts(prompts: list[str] | None, held_out: dict[str, Path], limits: Any) -> list[str]:
    """The --demo prompts, stripped ([] without --demo); SteeringError (one line: which prompt, what is wrong) for an
    empty or over-long one or a repeat. A held-out test question is allowed (the demo question may be one: it picks
    among settings, it scores none) and named on stderr, so that its set's numbers can be reported with that said."""
    cleaned: list[str] = []
    for index, prompt in enumerate(prompts or []):
        text = prompt.strip()
        if not text:
            raise SteeringError(f"--demo: prompt {index} is empty")
        if len(text) > limits.max_dataset_item_chars:
            raise SteeringError(
                f"--demo: prompt {index} is {len(text)} characters long; the limit is {limits.max_dataset_item_chars}"
            )
        if text in cleaned:  # exact: "what's…" and "What's…" are different token sequences with different answers
            raise SteeringError(f"--demo: prompt {index} repeats an earlier one: {text!r}")
        source = held_out.get(normalize_question(text))
        if source is not None:
            print(
                f"# tune: demo prompt {index} ({text!r}) is a held-out question of {_display_path(source)}: it picks "
                "among settings, so report that set's numbers with this said",
                file=sys.stderr,
            )
        cleaned.append(text)
    return cleaned


def _held_out_questions(folder: Path, limits: Any) -> dict[str, Path]:
    """The behavior's held-out open-ended questions (folder/test_open_ended*.json; none when there are no such
    files), each normalized (steering.core.datasets.normalize_question: lower case, no punctuation, single
    spaces) and mapped to the first file holding it."""
    held: dict[str, Path] = {}
    for path in sorted(folder.glob("test_open_ended*.json")):
        for question in load_open_ended(path, limits):
            held.setdefault(normalize_question(question), path)
    return held


def _recipe_path(path: Path) -> str:
    """How a recipe names a vector file: relative to the home folder (config.home()) when inside it."""
    try:
        return str(path.resolve().relative_to(home().resolve()))
    except ValueError:
        return str(path.resolve())


def _loop_share(text: str) -> float | None:
    """--max-loops: a share in [0, 1] or 'off' (None: not checked); a one-line argparse error otherwise."""
    if text.strip().lower() in ("off", "none"):
        return None
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (or 'off'), found '{text}'")
    return value
