"""`compare-vectors` (cosine similarity per layer of two vector sets) and `export-gguf` (a llama.cpp control vector)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from steering.cli.common import add_config_flag, add_threads_flag, check_destination, check_input_file
from steering.config import Config

FOLDER_MODEL_HELP = (
    "in a folder in the paper's layout holding several models' files (vec_layer_<L>_<model>.pt), read this "
    "model's (hub id or name)"
)


def register(sub: Any) -> None:
    """Add the `compare-vectors` and `export-gguf` sub-commands (their flags) to the sub-parsers `sub`."""
    p = sub.add_parser("compare-vectors", help="cosine similarity per layer between two vector sets")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.add_argument("--model", dest="folder_model", metavar="NAME", help=FOLDER_MODEL_HELP)
    add_config_flag(p)
    add_threads_flag(p)
    p.set_defaults(func=cmd_compare_vectors)

    p = sub.add_parser("export-gguf", help="write a vector set as a llama.cpp control vector")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--layers", type=int, nargs="+")
    p.add_argument("--model-hint", default="llama")
    p.add_argument("--model", dest="folder_model", metavar="NAME", help=FOLDER_MODEL_HELP)
    add_config_flag(p)
    add_threads_flag(p)
    p.set_defaults(func=cmd_export_gguf)


def cmd_compare_vectors(args: argparse.Namespace, config: Config) -> int:
    """`compare-vectors`: print the cosine similarity per layer of two vector sets (and their mean).

    Args:
        args: parsed flags: `a`, `b` (vector files or folders: .safetensors, .pt, .gguf), --json, --model
            (`folder_model`: whose files to read from a folder holding several models' files).
        config: the loaded config.yaml tree (unused beyond the common flags).

    Returns:
        0; prints one cosine in [-1, 1] per layer the two sets share (JSON with --json).

    Raises:
        SteeringError: a missing or unreadable vector file, or sets that share no layer or differ in size
            (see `steering.io.vector_set.cosine_by_layer`).
    """
    from steering.io.vector_set import cosine_by_layer  # lazy: imports torch (--help stays fast)
    from steering.io.vector_store import load_vectors

    a = load_vectors(check_input_file(args.a, "a", folder_ok=True), args.folder_model)
    b = load_vectors(check_input_file(args.b, "b", folder_ok=True), args.folder_model)
    cosines = cosine_by_layer(a, b)
    if args.json:
        print(json.dumps({str(k): round(v, 6) for k, v in cosines.items()}, indent=2))
    else:
        print(f"cosine similarity per layer: {args.a} vs {args.b}")
        for layer, value in cosines.items():
            print(f"  layer {layer:3d}  {value:+.4f}")
        print(f"  mean       {sum(cosines.values()) / len(cosines):+.4f}")
    return 0


def cmd_export_gguf(args: argparse.Namespace, config: Config) -> int:
    """`export-gguf`: write a vector set as a llama.cpp control vector (.gguf), layer 0 left out.

    Args:
        args: parsed flags: `source` (vector file or folder), `out` (.gguf path), --layers, --model-hint,
            --model (`folder_model`: whose files to read from a folder holding several models' files).
        config: the loaded config.yaml tree (unused beyond the common flags).

    Returns:
        0 after writing `out`.

    Raises:
        SteeringError: an unwritable `out`, an unreadable source, a layer the source lacks, or a layer list
            with nothing left once layer 0 is dropped.
    """
    from steering.io.gguf_vectors import gguf_layers, save_gguf  # lazy: imports torch (--help stays fast)
    from steering.io.vector_set import VectorSet
    from steering.io.vector_store import load_vectors

    if args.layers:
        gguf_layers(args.layers, args.out)  # the one GGUF layer check (also in save_gguf and extract --gguf)
    check_destination(args.out, "out")  # before reading anything
    vset = load_vectors(check_input_file(args.source, "source", folder_ok=True), args.folder_model)
    layers = args.layers or vset.layers
    chosen = VectorSet({layer: vset.vector(layer) for layer in layers}, vset.metadata)
    path = save_gguf(chosen, args.out, model_hint=args.model_hint)  # skips layer 0
    kept, note = gguf_layers(layers)
    print(
        f"wrote {path} ({len(kept)} layers{'; ' + note if note else ''}); "
        f"use: llama-cli -m MODEL.gguf --control-vector {path}"
    )
    return 0
