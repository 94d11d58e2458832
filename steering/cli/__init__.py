"""Command line: python -m steering {extract, chat, test, compare-vectors, export-gguf, ...}."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from steering.cli import evaluate as evaluation_cli
from steering.cli.common import (  # shared with evaluation_cli, tune (and app.py's flags)
    add_behavior_command as _add_behavior_command,
)
from steering.cli.common import (
    add_model_flags as _add_model_flags,
)
from steering.cli.common import (
    add_threads_flag as _add_threads_flag,
)
from steering.cli.common import (
    check_destination,
    check_input_file,
)
from steering.cli.common import (
    display_path as _display_path,
)
from steering.cli.common import (
    parse_float as _float,
)
from steering.cli.common import (
    system_prompt as _system_prompt,
)
from steering.config import PROJECT_ROOT, load_config
from steering.errors import SteeringError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"error: {self.prog}: {message}\n")


def _add_sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=_float, help="0 = greedy")
    p.add_argument("--top-p", type=_float)
    p.add_argument("--seed", type=int)
    p.add_argument("--system-prompt")


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "name",
        "dtype",
        "device",
        "device_map",
        "load_in_8bit",
        "load_in_4bit",
        "compile",
        "cuda_graphs",
        "threads",
    )
    return {k: getattr(args, k, None) for k in keys}


def _engine(args: argparse.Namespace, config: dict[str, Any]):
    from steering.engine import Engine

    return Engine.from_config(config, **_model_overrides(args))


def _sampling(args: argparse.Namespace, config: dict[str, Any]):
    """The sampling settings of a command: its flags, else config `generation:`, checked against `limits:`.

    Raises:
        SteeringError: a value that is not a number, not finite, or out of range (seed outside
            0..2**63-1, max_new_tokens outside 1..limits.max_new_tokens, temperature < 0, top_p outside (0, 1]).
    """
    from steering.core.limits import Limits, check_finite, check_seed
    from steering.decode.generation import SamplingSettings

    gen = config["generation"]

    def pick(name: str) -> tuple[Any, str]:
        value = getattr(args, name, None)
        return (value, _flag(name)) if value is not None else (gen.get(name), f"config generation.{name}")

    (tokens, tokens_name), (seed, seed_name) = pick("max_new_tokens"), pick("seed")
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise SteeringError(f"{tokens_name} must be a whole number, got {tokens!r}")
    _check_new_tokens(tokens, Limits.from_config(config), tokens_name)
    values = {name: check_finite(pick(name)[0], pick(name)[1]) for name in ("temperature", "top_p")}
    try:
        return SamplingSettings(
            max_new_tokens=tokens,
            temperature=values["temperature"],
            top_p=values["top_p"],
            seed=None if seed is None else check_seed(seed, seed_name),
        )
    except (ValueError, TypeError) as exc:
        raise SteeringError(f"generation settings: {exc}") from None


def _behavior_recipe(engine, args: argparse.Namespace):
    """The --behavior's recipe for the loaded model (its tuned defaults file, else config.yaml's)."""
    return engine.recipe(args.behavior)


def _steering_choice(engine, args: argparse.Namespace):
    """The vector, layer and multiplier a command uses: flags first, then the model's defaults."""
    from steering.core.layers import check_layer

    # the default layer is the chosen behavior's own (its tuned recipe), not the config's default behavior's
    default = engine.defaults.layer if getattr(args, "vector", None) else _behavior_recipe(engine, args).layer
    layer = check_layer(args.layer if args.layer is not None else default, engine.lm.num_layers)
    if not getattr(args, "vector", None):  # None: the engine steers with the behavior's recipe (its vector file)
        from steering.extract.first_use import ensure_vectors  # no vectors yet for this model: build them (first use)

        if (
            ensure_vectors(
                engine,
                args.behavior,
                build=bool(getattr(args, "build_vectors", False)),
                ask=input if sys.stdin.isatty() else None,
            )
            is not None
            and args.layer is None
        ):
            layer = engine.recipe(args.behavior).layer  # the model's default layer until tuned
        engine.recipe_vectors(engine.recipe(args.behavior), args.behavior).vector(layer)  # checked before generating
        return None, layer
    return engine.load_vector_file(args.vector).vector(layer), layer


# ---------------------------------------------------------------------------- checks before the model loads
# Flags that count something, in any subcommand: whole numbers >= 1 (a batch size of -3, a limit of 0 or
# --max-pairs -2, which used to drop the last two pairs, are refused in one line before the model loads).
COUNT_FLAGS = (
    "batch_size",
    "gen_batch_size",
    "max_pairs",
    "limit",
    "limit_ab",
    "limit_open",
    "max_new_tokens",
    "threads",
    "tokens",
    "repeats",
    "hook_repeats",
    "pairs",
    "extract_repeats",
    "load_repeats",
    "layers_7b",
    "batch_rows",
)


# Output paths of commands that write them only at the end (extract, test, evaluate and export-gguf check
# theirs in the command): (flag dest, is a folder).
OUTPUT_FLAGS = {"bench": (("json", False), ("work_dir", True)), "tune": (("out", False), ("cache", False))}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _check_new_tokens(value: int, limits: Any, name: str = "--max-new-tokens") -> None:
    if not 1 <= value <= limits.max_new_tokens:
        raise SteeringError(
            f"{name} {value} is out of range: expected 1 to {limits.max_new_tokens} (config limits.max_new_tokens)"
        )


def check_arguments(args: argparse.Namespace, config: dict[str, Any]) -> None:  # noqa: C901 (a flat list of checks)
    """Refuse bad flag values of any subcommand in one line, before files are read or a model loads.

    Checked by flag name, so every command (and any later one using the same names) gets the same rules:
    counts (COUNT_FLAGS) >= 1; --max-new-tokens within config limits.max_new_tokens; --layer/--layers >= 0;
    --multiplier, --strengths and every --*multipliers value finite with |value| <= limits.max_abs_multiplier;
    every other number finite; --seed in 0..2**63-1; --temperature >= 0; --top-p in (0, 1]; --behavior a
    name, never a path; the OUTPUT_FLAGS destinations writable.

    Raises:
        SteeringError: the first bad value, named with its flag.
    """
    from steering.core.limits import Limits, check_behavior_name, check_finite, check_multiplier, check_seed

    limits = Limits.from_config(config)
    values = vars(args)
    for dest in COUNT_FLAGS:
        for value in _as_list(values.get(dest)):
            if isinstance(value, int) and value < 1:
                raise SteeringError(f"{_flag(dest)} must be at least 1, got {value}")
    if values.get("max_new_tokens") is not None:
        _check_new_tokens(values["max_new_tokens"], limits)
    for dest in ("layer", "layers"):
        for layer in _as_list(values.get(dest)):
            if layer < 0:
                raise SteeringError(f"{_flag(dest)}: layer {layer} is out of range: layers count from 0")
    for dest, value in values.items():
        if dest in ("multiplier", "strengths") or dest.endswith("multipliers"):
            for number in _as_list(value):
                check_multiplier(number, limits, _flag(dest))
        for number in _as_list(value):  # every other number flag of any command: finite
            if isinstance(number, float):
                check_finite(number, _flag(dest))
    if values.get("seed") is not None:
        check_seed(values["seed"], "--seed")
    if values.get("temperature") is not None and check_finite(values["temperature"], "--temperature") < 0:
        raise SteeringError(f"--temperature must be 0 (greedy) or more, got {values['temperature']:g}")
    if values.get("top_p") is not None and not 0 < check_finite(values["top_p"], "--top-p") <= 1:
        raise SteeringError(f"--top-p must be in (0, 1], got {values['top_p']:g}")
    if "behavior" in values:
        check_behavior_name(values["behavior"])
    for dest, folder in OUTPUT_FLAGS.get(values.get("command"), ()):  # refused now, not after the whole run
        if isinstance(values.get(dest), str) and not values.get("dry_run"):
            check_destination(values[dest], _flag(dest), folder=folder)


# ---------------------------------------------------------------------------- extract
def _save_vector_set(
    vectors: dict,
    lm: Any,
    out: Path,
    dataset: Path,
    replaced: str | None,
    method: dict[str, str],
    counts: dict[str, str],
    summary: str,
) -> Any:
    """Save an extracted vector set and report it (both extract paths).

    Args:
        vectors: layer -> direction tensor of shape (hidden_size,).
        lm: the loaded model (name, hidden_size, num_layers go into the metadata).
        out: the .safetensors file, written atomically (a failed run leaves the old file in place).
        dataset: the dataset file read (its display path and sha256 go into the metadata).
        replaced: _replacement's note on the file being replaced, or None.
        method: the read_mode, method and behavior metadata entries.
        counts: the metadata entry saying how much data went in (pairs or requests).
        summary: what the "wrote <out> (...)" line says in its parentheses.

    Returns:
        The saved steering.io.vector_files.VectorSet.
    """
    from steering.core.datasets import file_sha256
    from steering.io.vector_files import VectorSet, save_safetensors

    vset = VectorSet(
        vectors,
        {
            "model": lm.name,
            "hidden_size": str(lm.hidden_size),
            "num_layers": str(lm.num_layers),
            **method,
            "dataset": _display_path(dataset),
            "dataset_sha256": file_sha256(dataset),
            **counts,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    save_safetensors(vset, out)
    print(f"wrote {out} ({summary})")
    if replaced:
        print(replaced.replace("replaces", "it replaced", 1))
    return vset


def _extract_instructions(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """extract --method instructions: the refusal direction of Arditi et al. 2024 (mean activation over
    harmful minus harmless requests at the post-instruction tokens) from an instructions JSON file."""
    from steering.extract.extraction import instruction_direction, load_instructions

    dataset = Path(args.dataset or PROJECT_ROOT / config["datasets_dir"] / args.behavior / "instructions.json")
    harmful, harmless = load_instructions(check_input_file(dataset, "--dataset"))  # before the slow model load
    if args.max_pairs:
        harmful, harmless = harmful[: args.max_pairs], harmless[: args.max_pairs]
    out = _extract_destination(args, config, None)  # writable; no layer of an existing file lost without --force
    engine = _engine(args, config)
    lm = engine.lm
    layers = sorted(set(args.layers)) if args.layers else list(range(lm.num_layers))
    for layer in layers:
        if not 0 <= layer < lm.num_layers:
            raise SteeringError(f"layer {layer} is out of range: the model has layers 0..{lm.num_layers - 1}")
    batch_size = args.batch_size or int(config["extraction"]["batch_size"])
    replaced = _replacement(out, layers, None, args.force)
    start = time.perf_counter()
    vectors = instruction_direction(
        lm.model,
        lm.tokenizer,
        harmful,
        harmless,
        layers,
        batch_size=batch_size,
        system_prompt=_system_prompt(args, config),
        positions=args.positions,
    )
    seconds = time.perf_counter() - start
    _save_vector_set(
        vectors,
        lm,
        out,
        dataset,
        replaced,
        {
            "read_mode": f"instructions-{args.positions}",
            "method": "instructions",
            "behavior": args.behavior,
        },
        {"requests": f"{len(harmful)} harmful, {len(harmless)} harmless"},
        f"{len(layers)} layers, {len(harmful)} harmful / {len(harmless)} harmless requests, "
        f"method instructions, {args.positions} positions, {seconds:.1f} s",
    )
    return 0


def cmd_extract(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """`extract`: build steering vectors from a behavior's A/B pairs and save them (CAA's generate_vectors.py).

    The method of Rimsky et al. 2023 (arXiv 2312.06681), section 3: for each layer, the mean over pairs of the
    residual-stream activation at the answer letter with the behavior-matching answer minus the one with the
    non-matching answer. `--method instructions` hands over to the refusal direction of Arditi et al. 2024
    (arXiv 2406.11717, section 2.3: harmful minus harmless requests). Everything that can be checked (dataset,
    layers, output file) is checked before the model loads.

    Args:
        args: parsed flags of `extract` (--dataset, --layers, --read-mode, --method, --out, --gguf, ...).
        config: the loaded config.yaml tree.

    Returns:
        0 on success; writes `--out` (default vectors/<behavior>/<model slug>.safetensors), one (hidden_size,)
        float vector per layer in residual-stream units, plus the .gguf / paper-layout copies when asked.

    Raises:
        SteeringError: a missing or malformed dataset, an unknown read mode, a layer outside the model, an
            unwritable output, or a replacement that would lose layers or pairs without --force.
    """
    if getattr(args, "method", "mean-diff") == "instructions":
        return _extract_instructions(args, config)
    from steering.core.behaviors import generate_file
    from steering.core.datasets import load_ab_dataset
    from steering.core.limits import Limits
    from steering.core.prompts import READ_MODES
    from steering.extract.extraction import extract_vectors
    from steering.io.vector_files import caa_filename, gguf_layers, save_caa_layout, save_gguf

    # default: the behavior card's `generate:` file (datasets/<behavior>/generate.json when the card names none)
    dataset = Path(args.dataset) if args.dataset else generate_file(config, args.behavior)
    check_input_file(dataset, "--dataset")
    # validate before the slow model load (answer-mean items are checked again once the default mode is known)
    items = load_ab_dataset(dataset, args.read_mode, Limits.from_config(config))
    if args.max_pairs:
        items = items[: args.max_pairs]
    if args.gguf and args.layers:
        gguf_layers(args.layers, "--gguf")  # a GGUF with no layer left (only layer 0) is refused before the model loads
    out = _extract_destination(args, config, len(items))  # checked before the slow model load and extraction
    engine = _engine(args, config)
    lm = engine.lm
    read_mode = args.read_mode or engine.defaults.read_mode
    if read_mode not in READ_MODES:
        raise SteeringError(f"unknown read mode '{read_mode}' (expected {' or '.join(READ_MODES)})")
    layers = sorted(set(args.layers)) if args.layers else list(range(lm.num_layers))
    for layer in layers:
        if not 0 <= layer < lm.num_layers:
            raise SteeringError(f"layer {layer} is out of range: the model has layers 0..{lm.num_layers - 1}")
    batch_size = args.batch_size or int(config["extraction"]["batch_size"])
    replaced = _replacement(out, layers, len(items), args.force)  # now with the model's actual layers
    start = time.perf_counter()
    vectors = extract_vectors(
        lm.model,
        lm.tokenizer,
        items,
        layers,
        read_mode,
        batch_size=batch_size,
        system_prompt=_system_prompt(args, config),
        method=args.method,
        max_prompt_tokens=Limits.from_config(config).max_prompt_tokens,
    )
    seconds = time.perf_counter() - start
    vset = _save_vector_set(
        vectors,
        lm,
        out,
        dataset,
        replaced,
        {
            "read_mode": read_mode,
            "method": args.method,
            "behavior": args.behavior,
        },
        {"pairs": str(len(items))},
        f"{len(layers)} layers, {len(items)} pairs, read mode {read_mode}, {len(items) / seconds:.1f} pairs/s",
    )
    if args.caa_layout:
        files = save_caa_layout(vset, out.parent, lm.name)  # named like the paper's code: hub-id basename
        print(f"wrote {len(files)} files in the paper's layout: {files[0].parent}/{caa_filename('<L>', lm.name)}")
    if args.gguf:
        note = gguf_layers(vset.layers)[1]  # layer 0 is skipped: llama.cpp control vectors have none
        print(
            f"wrote {save_gguf(vset, out.with_suffix('.gguf'), model_hint='llama')} (llama.cpp control vector"
            f"{'; ' + note if note else ''})"
        )
    return 0


def _extract_destination(args: argparse.Namespace, config: dict[str, Any], pairs: int | None) -> Path:
    """extract's output file (--out, else vectors/<behavior>/<model slug>.safetensors), checked before the
    model loads: writable (with its .gguf and paper-layout siblings), and not replacing a file that has
    layers or pairs the new one lacks unless --force (steering.io.vector_files.replacement_check)."""
    from steering.config import data_dir
    from steering.io.vector_files import describe_vector_file, vector_path
    from steering.models import ModelSettings, model_slug

    if args.out:
        out = check_destination(args.out, "--out")
        if out.suffix.lower() != ".safetensors":
            raise SteeringError(f"--out {out}: expected a .safetensors file name")
    else:
        slug = model_slug(ModelSettings.from_config(config["model"], **_model_overrides(args)).name)  # == lm.slug
        out = check_destination(vector_path(data_dir(config, "vectors_dir"), args.behavior, slug), "output")
    if args.gguf:
        check_destination(out.with_suffix(".gguf"), "--gguf")
    layers = args.layers
    if not layers:  # every layer of the model: it loses none of an existing file's (checked again after loading)
        try:
            info = describe_vector_file(out)
        except SteeringError:
            info = None  # replacement_check below names the problem
        layers = info.layers if info else []
    _replacement(out, layers, pairs, args.force)
    return out


def _replacement(out: Path, layers: Sequence[int], pairs: int | None, force: bool) -> str | None:
    from steering.io.vector_files import replacement_check

    return replacement_check(out, layers, pairs, force=force)


# ---------------------------------------------------------------------------- chat
def cmd_chat(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """`chat`: print the added (+alpha), unsteered and subtracted (-alpha) answers to one prompt.

    The three answers are generated in one batch by `Engine.compare`; the vector is `--vector` or the behavior's
    recipe (its vector file, built on first use when --build-vectors or the user agrees).

    Args:
        args: parsed flags of `chat` (--prompt, --multiplier, --layer, --behavior, --vector, --json, sampling).
        config: the loaded config.yaml tree.

    Returns:
        0; prints the three answers (or one JSON object with `added`, `unsteered`, `subtracted`, `settings`).

    Raises:
        SteeringError: an empty prompt, bad sampling settings, a multiplier outside the configured limits, a
            missing vector file or layer, or a prompt over the token budget.
    """
    from steering.core.limits import Limits, check_multiplier

    if not args.prompt.strip():
        raise SteeringError("--prompt is empty")
    settings = _sampling(args, config)  # checked before the model loads
    if args.vector:
        check_input_file(args.vector, "--vector", folder_ok=True)
    else:
        from steering.core.behaviors import card_warning

        if warning := card_warning(PROJECT_ROOT / config["datasets_dir"], args.behavior):
            print(warning, file=sys.stderr)  # a broken card: say so in one line, then go on
    engine = _engine(args, config)
    vector, layer = _steering_choice(engine, args)
    default_multiplier = engine.defaults.multiplier if args.vector else _behavior_recipe(engine, args).strength
    multiplier = args.multiplier if args.multiplier is not None else default_multiplier
    multiplier = check_multiplier(
        multiplier,
        Limits.from_config(config),
        "--multiplier" if args.multiplier is not None else "the default multiplier",
    )
    # the token budget (config limits:, the model's context) before generating
    engine.check_request([{"role": "user", "content": args.prompt}], settings, _system_prompt(args, config))
    start = time.perf_counter()
    result = engine.compare(
        [{"role": "user", "content": args.prompt}],
        vector,
        layer,
        multiplier,
        settings,
        system_prompt=_system_prompt(args, config),
        behavior=args.behavior,
    )
    seconds = time.perf_counter() - start
    added, unsteered, subtracted = result.texts
    info = {
        "model": engine.lm.name,
        "behavior": args.behavior if not args.vector else args.vector,
        "layer": layer,
        "multiplier": multiplier,
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
        "seconds": round(seconds, 2),
    }
    if args.json:
        print(
            json.dumps(
                {"added": added, "subtracted": subtracted, "unsteered": unsteered, "settings": info},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(f"# {engine.lm.describe()} | {info['behavior']} layer {layer} | alpha {multiplier:g}\n")
        print(f"[added +{multiplier:g}]\n{added}\n")
        print(f"[unsteered]\n{unsteered}\n")
        print(f"[subtracted -{multiplier:g}]\n{subtracted}\n")
        print(f"({seconds:.1f} s for three answers in one batch)")
    return 0


# ---------------------------------------------------------------------------- test
def cmd_test(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """`test`: answer open-ended questions at several multipliers (the paper's test.py, open-ended part).

    For each multiplier writes `<out>/test_results_x<multiplier>.json` with the added, subtracted and unsteered
    answer per question, and the settings (model, layer, recipe, sampling) used.

    Args:
        args: parsed flags of `test` (--questions, --multipliers, --out, --layer, --vector, --limit,
            --batch-size, sampling).
        config: the loaded config.yaml tree.

    Returns:
        0 once every file is written.

    Raises:
        SteeringError: a missing or malformed questions file, an unwritable --out folder, a missing vector, or a
            question over the token budget (all checked before the first answer).
    """
    from tqdm.auto import tqdm

    from steering.core.datasets import load_open_ended
    from steering.io.files import write_json

    questions_path = Path(
        args.questions or PROJECT_ROOT / config["datasets_dir"] / args.behavior / "test_open_ended.json"
    )
    check_input_file(questions_path, "--questions")
    questions = load_open_ended(questions_path)
    if args.limit:
        questions = questions[: args.limit]
    settings = _sampling(args, config)
    out = check_destination(args.out, "--out", folder=True)  # before the model loads, not after the first answers
    if args.vector:
        check_input_file(args.vector, "--vector", folder_ok=True)
    engine = _engine(args, config)
    vector, layer = _steering_choice(engine, args)
    system_prompt = _system_prompt(args, config)
    # every question's token budget before the first answer (not a failure halfway through the files)
    engine.check_request([[{"role": "user", "content": q}] for q in questions], settings, system_prompt)
    for multiplier in args.multipliers:
        results = []
        with tqdm(total=len(questions), desc=f"x{multiplier:g}", unit="q") as bar:
            for start in range(0, len(questions), args.batch_size):
                chunk = questions[start : start + args.batch_size]
                for question, texts in zip(
                    chunk,
                    engine.compare_batch(
                        chunk, vector, layer, multiplier, settings, system_prompt=system_prompt, behavior=args.behavior
                    ),
                ):
                    results.append(
                        {
                            "question": question,
                            "added": texts["added"],
                            "subtracted": texts["subtracted"],
                            "unsteered": texts["unsteered"],
                        }
                    )
                bar.update(len(chunk))
        payload = {
            "settings": {
                "model": engine.lm.name,
                "behavior": args.behavior,
                "layer": layer,
                "multiplier": multiplier,
                "read_mode": _read_mode_of(engine, args),
                "max_new_tokens": settings.max_new_tokens,
                "seed": settings.seed,
                "temperature": settings.temperature,
                "batch_size": args.batch_size,
                "recipe": engine.recipe(args.behavior).with_overrides(layer, multiplier).to_dict(),
            },
            "results": results,
        }
        path = out / f"test_results_x{multiplier:g}.json"
        write_json(path, payload)
        print(f"wrote {path}")
    return 0


def _read_mode_of(engine, args: argparse.Namespace) -> str:
    if getattr(args, "vector", None):
        return engine.load_vector_file(args.vector).metadata.get("read_mode", "unknown")
    return engine.vectors_for(args.behavior).metadata.get("read_mode", "unknown")


# ---------------------------------------------------------------------------- vector files
def cmd_compare_vectors(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """`compare-vectors`: print the cosine similarity per layer of two vector sets (and their mean).

    Args:
        args: parsed flags: `a`, `b` (vector files or folders: .safetensors, .pt, .gguf), --json.
        config: the loaded config.yaml tree (unused beyond the common flags).

    Returns:
        0; prints one cosine in [-1, 1] per layer the two sets share (JSON with --json).

    Raises:
        SteeringError: a missing or unreadable vector file, or sets that share no layer or differ in size
            (see `steering.io.vector_files.cosine_by_layer`).
    """
    from steering.io.vector_files import cosine_by_layer, load_vectors

    a = load_vectors(check_input_file(args.a, "a", folder_ok=True))
    b = load_vectors(check_input_file(args.b, "b", folder_ok=True))
    cosines = cosine_by_layer(a, b)
    if args.json:
        print(json.dumps({str(k): round(v, 6) for k, v in cosines.items()}, indent=2))
    else:
        print(f"cosine similarity per layer: {args.a} vs {args.b}")
        for layer, value in cosines.items():
            print(f"  layer {layer:3d}  {value:+.4f}")
        print(f"  mean       {sum(cosines.values()) / len(cosines):+.4f}")
    return 0


def cmd_export_gguf(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """`export-gguf`: write a vector set as a llama.cpp control vector (.gguf), layer 0 left out.

    Args:
        args: parsed flags: `source` (vector file or folder), `out` (.gguf path), --layers, --model-hint.
        config: the loaded config.yaml tree (unused beyond the common flags).

    Returns:
        0 after writing `out`.

    Raises:
        SteeringError: an unwritable `out`, an unreadable source, a layer the source lacks, or a layer list
            with nothing left once layer 0 is dropped.
    """
    from steering.io.vector_files import VectorSet, gguf_layers, load_vectors, save_gguf

    if args.layers:
        gguf_layers(args.layers, args.out)  # the one GGUF layer check (also in save_gguf and extract --gguf)
    check_destination(args.out, "out")  # before reading anything
    vset = load_vectors(check_input_file(args.source, "source", folder_ok=True))
    layers = args.layers or vset.layers
    chosen = VectorSet({layer: vset.vector(layer) for layer in layers}, vset.metadata)
    path = save_gguf(chosen, args.out, model_hint=args.model_hint)  # skips layer 0
    kept, note = gguf_layers(layers)
    print(
        f"wrote {path} ({len(kept)} layers{'; ' + note if note else ''}); "
        f"use: llama-cli -m MODEL.gguf --control-vector {path}"
    )
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser: extract, chat, test, compare-vectors, export-gguf and the registered
    extra commands (evaluate, bench, tune, import-caa, build-vectors).

    Returns:
        The argparse parser; each subcommand sets `func(args, config) -> int`. Its errors are one line.
    """
    prog = "steering" if Path(sys.argv[0]).name == "steering" else "python -m steering"  # the installed command
    parser = _Parser(prog=prog, description="Contrastive Activation Addition for chat models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = _add_behavior_command(sub, "extract", "build steering vectors from A/B pairs")
    p.add_argument(
        "--dataset", help="A/B JSON (default: the card's generate: file in datasets/<behavior>/, else generate.json)"
    )
    p.add_argument("--layers", type=int, nargs="+", help="default: all layers")
    p.add_argument("--read-mode", choices=["letter", "answer-mean"])
    p.add_argument(
        "--method",
        choices=["mean-diff", "pca", "centered", "instructions"],
        default="mean-diff",
        help="mean-diff (CAA, the default), pca or centered (first principal component of the pair "
        "differences, uncentred / mean-centred), instructions (harmful minus harmless requests, "
        "Arditi et al. 2024; --dataset defaults to datasets/<behavior>/instructions.json)",
    )
    p.add_argument(
        "--positions",
        choices=["post", "last"],
        default="post",
        help="--method instructions: read the post-instruction tokens (default) or the last token",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-pairs", type=int)
    p.add_argument("--out", help="default: vectors/<behavior>/<model-slug>.safetensors")
    p.add_argument("--caa-layout", action="store_true", help="also write vec_layer_<L>_<model>.pt files")
    p.add_argument("--gguf", action="store_true", help="also write a llama.cpp control vector")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing vector file even when it has layers or pairs the new one lacks",
    )
    p.add_argument("--system-prompt")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("chat", help="print the added, unsteered and subtracted answers to one prompt")
    _add_model_flags(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--multiplier", type=_float)
    p.add_argument("--layer", type=int)
    p.add_argument("--behavior", default=None)
    p.add_argument("--vector", help="a vector file instead of vectors/<behavior>/ (.safetensors, .pt, .gguf)")
    p.add_argument("--json", action="store_true")
    _add_sampling_flags(p)
    p.add_argument(
        "--build-vectors",
        action="store_true",
        help="no vectors for this model yet: build them from the behavior's dataset first",
    )
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("test", help="answer open-ended questions at several multipliers (the paper's test.py)")
    _add_model_flags(p)
    p.add_argument("--questions", help="default: datasets/<behavior>/test_open_ended.json")
    p.add_argument("--multipliers", type=_float, nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--layer", type=int)
    p.add_argument("--behavior", default=None)
    p.add_argument("--vector")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--batch-size", type=int, default=8, help="questions per batch (3 rows each)")
    _add_sampling_flags(p)
    p.add_argument(
        "--build-vectors",
        action="store_true",
        help="no vectors for this model yet: build them from the behavior's dataset first",
    )
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("compare-vectors", help="cosine similarity per layer between two vector sets")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config")
    _add_threads_flag(p)
    p.set_defaults(func=cmd_compare_vectors)

    p = sub.add_parser("export-gguf", help="write a vector set as a llama.cpp control vector")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--layers", type=int, nargs="+")
    p.add_argument("--model-hint", default="llama")
    p.add_argument("--config")
    _add_threads_flag(p)
    p.set_defaults(func=cmd_export_gguf)

    for _name, register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Commands living in their own modules (evaluation, benchmark) register here.
_EXTRA_COMMANDS: list[tuple[str, Callable[[Any], None]]] = [
    ("evaluate", evaluation_cli.register),
    (
        "bench",
        lambda sub: __import__("steering.bench", fromlist=["register"]).register(
            sub, _add_model_flags, lambda args, config: _engine(args, config)
        ),
    ),  # no import of cli from bench
    ("tune", lambda sub: __import__("steering.evaluation.tune", fromlist=["register"]).register(sub)),
    ("import-caa", lambda sub: __import__("steering.extract.import_caa", fromlist=["register"]).register(sub)),
    ("build-vectors", lambda sub: __import__("steering.extract.first_use", fromlist=["register"]).register(sub)),
]


def _quiet_libraries() -> None:
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # weight-loading bars; our own long work keeps its bars
    except ImportError:
        pass
    logging.basicConfig(format="%(message)s")
    logging.getLogger("steering").setLevel(logging.INFO)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `steering` / `python -m steering`: parse, load the config, check the flags, run the command.

    Args:
        argv: the arguments without the program name (None: sys.argv[1:]).

    Returns:
        The exit status: the command's (0 on success), 2 on a SteeringError or OSError (printed as one line
        `error: ...` on stderr, never a traceback), 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
        if hasattr(args, "behavior") and args.behavior is None:
            args.behavior = config["behavior"]
        check_arguments(args, config)  # every flag's range, before files are read or a model loads
        _quiet_libraries()
        if hasattr(args, "threads"):
            from steering.models import set_threads

            set_threads(args.threads if args.threads is not None else config["model"].get("threads", "auto"))
        return args.func(args, config)
    except SteeringError as exc:
        detail = f" ({exc.detail})" if getattr(exc, "detail", None) else ""
        print(_one_line(f"error: {exc}{detail}"), file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the checks could not foresee (disk full, removed meanwhile)
        where = f"{exc.filename}: " if exc.filename else ""
        print(_one_line(f"error: {where}{exc.strerror or exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
