"""`extract`: build steering vectors from a behavior's A/B pairs (CAA) or harmful/harmless requests, and save them."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steering.cli import loading
from steering.cli.common import add_behavior_command, check_destination, check_input_file, system_prompt
from steering.config import Config, model_slug, override
from steering.core.behaviors import generate_file
from steering.core.datasets import file_sha256, load_ab_dataset
from steering.core.prompts import READ_MODES
from steering.errors import SteeringError
from steering.io.files import display_path


def register(sub: Any) -> None:
    """Add the `extract` sub-command (its flags) to the sub-parsers `sub`."""
    p = add_behavior_command(sub, "extract", "build steering vectors from A/B pairs")
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
        The saved steering.io.vector_set.VectorSet.
    """
    from steering.io.vector_files import save_safetensors  # lazy: imports torch (--help stays fast)
    from steering.io.vector_set import VectorSet

    vset = VectorSet(
        vectors,
        {
            "model": lm.name,
            "hidden_size": str(lm.hidden_size),
            "num_layers": str(lm.num_layers),
            **method,
            "dataset": display_path(dataset),
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


def _extraction_inputs(
    args: argparse.Namespace, config: Config, lm: Any, dataset: Path
) -> tuple[list[int], dict[str, Any]]:
    """What both extract paths read with, once the model is loaded: the layers (--layers, else every layer;
    each checked against the model) and the options extract_vectors and instruction_direction both take
    (batch size, system prompt, prompt-token cap, the dataset named in messages).

    Raises:
        SteeringError: a --layers value out of range for the model.
    """
    from steering.core.layers import check_layer  # lazy: imports torch (--help stays fast)

    layers = sorted(set(args.layers)) if args.layers else list(range(lm.num_layers))
    for layer in layers:
        check_layer(layer, lm.num_layers)
    options = {
        "batch_size": args.batch_size or config.extraction.batch_size,
        "system_prompt": system_prompt(args, config),
        "max_prompt_tokens": config.limits.max_prompt_tokens,
        "source": str(dataset),
    }
    return layers, options


def _extract_instructions(args: argparse.Namespace, config: Config) -> int:
    """extract --method instructions: the refusal direction of Arditi et al. 2024 (mean activation over
    harmful minus harmless requests at the post-instruction tokens) from an instructions JSON file."""
    from steering.extract.instructions import (  # lazy: imports torch (--help stays fast)
        instruction_direction,
        load_instructions,
    )

    dataset = Path(args.dataset or config.datasets_dir / args.behavior / "instructions.json")
    harmful, harmless = load_instructions(check_input_file(dataset, "--dataset"))  # before the slow model load
    if args.max_pairs:
        harmful, harmless = harmful[: args.max_pairs], harmless[: args.max_pairs]
    out = _extract_destination(args, config, None)  # writable; no layer of an existing file lost without --force
    engine = loading.load_engine(args, config)
    lm = engine.lm
    layers, options = _extraction_inputs(args, config, lm, dataset)
    replaced = _replacement(out, layers, None, args.force)
    start = time.perf_counter()
    vectors = instruction_direction(
        lm.model, lm.tokenizer, harmful, harmless, layers, positions=args.positions, **options
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


def cmd_extract(args: argparse.Namespace, config: Config) -> int:
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
    from steering.extract.extraction import extract_vectors  # lazy: imports torch (--help stays fast)
    from steering.io.caa_pt import caa_filename, save_caa_layout
    from steering.io.gguf_vectors import gguf_layers, save_gguf

    # default: the behavior card's `generate:` file (datasets/<behavior>/generate.json when the card names none)
    dataset = Path(args.dataset) if args.dataset else generate_file(config, args.behavior)
    check_input_file(dataset, "--dataset")
    # validate before the slow model load (answer-mean items are checked again once the default mode is known)
    items = load_ab_dataset(dataset, args.read_mode, config.limits)
    if args.max_pairs:
        items = items[: args.max_pairs]
    if args.gguf and args.layers:
        gguf_layers(args.layers, "--gguf")  # a GGUF with no layer left (only layer 0) is refused before the model loads
    out = _extract_destination(args, config, len(items))  # checked before the slow model load and extraction
    engine = loading.load_engine(args, config)
    lm = engine.lm
    read_mode = args.read_mode or engine.defaults.read_mode
    if read_mode not in READ_MODES:
        raise SteeringError(f"unknown read mode '{read_mode}' (expected {' or '.join(READ_MODES)})")
    layers, options = _extraction_inputs(args, config, lm, dataset)
    replaced = _replacement(out, layers, len(items), args.force)  # now with the model's actual layers
    start = time.perf_counter()
    vectors = extract_vectors(lm.model, lm.tokenizer, items, layers, read_mode, method=args.method, **options)
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


def _extract_destination(args: argparse.Namespace, config: Config, pairs: int | None) -> Path:
    """extract's output file (--out, else vectors/<behavior>/<model slug>.safetensors), checked before the
    model loads: writable (with its .gguf and paper-layout siblings), and not replacing a file that has
    layers or pairs the new one lacks unless --force (steering.io.vector_store.replacement_check)."""
    from steering.io.vector_store import describe_vector_file, vector_path  # lazy: imports torch (--help stays fast)

    if args.out:
        out = check_destination(args.out, "--out")
        if out.suffix.lower() != ".safetensors":
            raise SteeringError(f"--out {out}: expected a .safetensors file name")
    else:
        slug = model_slug(override(config, model=loading.model_overrides(args)).model.name)  # == lm.slug
        out = check_destination(vector_path(config.vectors_dir, args.behavior, slug), "output")
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
    from steering.io.vector_store import replacement_check  # lazy: imports torch (--help stays fast)

    return replacement_check(out, layers, pairs, force=force)
