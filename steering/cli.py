"""Command line: python -m steering {extract, chat, test, compare-vectors, export-gguf, ...}."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from steering.config import PROJECT_ROOT, load_config
from steering import evaluation_cli
from steering.errors import SteeringError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"error: {self.prog}: {message}\n")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (overrides config.yaml)")
    g.add_argument("--config", help="config file (default: config.yaml)")
    g.add_argument("--model", dest="name", help="hub id, local folder, or smollm2-135m-instruct")
    g.add_argument("--dtype", help="auto, float32, float16, bfloat16")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--device-map", help="e.g. auto (accelerate) for models larger than one GPU")
    g.add_argument("--load-in-8bit", action="store_true", default=None)
    g.add_argument("--load-in-4bit", action="store_true", default=None)
    g.add_argument("--compile", action="store_true", default=None, help="GPU fast path")
    g.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=None,
                   help="GPU without --compile: plain eager decoding instead of CUDA-graph replay")


def _add_sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=float, help="0 = greedy")
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--system-prompt")


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("name", "dtype", "device", "device_map", "load_in_8bit", "load_in_4bit", "compile", "cuda_graphs")
    return {k: getattr(args, k, None) for k in keys}


def _engine(args: argparse.Namespace, config: dict[str, Any]):
    from steering.engine import Engine

    return Engine.from_config(config, **_model_overrides(args))


def _sampling(args: argparse.Namespace, config: dict[str, Any]):
    from steering.generation import SamplingSettings

    gen = config["generation"]
    pick = lambda name: getattr(args, name, None) if getattr(args, name, None) is not None else gen[name]  # noqa: E731
    try:
        return SamplingSettings(max_new_tokens=int(pick("max_new_tokens")), temperature=float(pick("temperature")),
                                top_p=float(pick("top_p")), seed=pick("seed"))
    except (ValueError, TypeError) as exc:
        raise SteeringError(f"generation settings: {exc}") from None


def _system_prompt(args: argparse.Namespace, config: dict[str, Any]) -> str | None:
    value = getattr(args, "system_prompt", None)
    return value if value is not None else config["generation"].get("system_prompt")


def _steering_choice(engine, args: argparse.Namespace):
    """The vector, layer and multiplier a command uses: flags first, then the model's defaults."""
    from steering.layers import check_layer

    layer = check_layer(args.layer if args.layer is not None else engine.defaults.layer, engine.lm.num_layers)
    if not getattr(args, "vector", None):  # None: the engine steers with the behavior's recipe (its vector file)
        engine.recipe_vectors(engine.recipe(args.behavior), args.behavior).vector(layer)  # checked before generating
        return None, layer
    return engine.load_vector_file(args.vector).vector(layer), layer


# ---------------------------------------------------------------------------- extract
def _extract_instructions(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """extract --method instructions: the refusal direction of Arditi et al. 2024 (mean activation over
    harmful minus harmless requests at the post-instruction tokens) from an instructions JSON file."""
    from steering.datasets import file_sha256
    from steering.extraction import instruction_direction, load_instructions
    from steering.vector_files import VectorSet, save_safetensors, vector_path

    dataset = Path(args.dataset or PROJECT_ROOT / config["datasets_dir"] / args.behavior / "instructions.json")
    harmful, harmless = load_instructions(dataset)  # one-line errors before the slow model load
    if args.max_pairs:
        harmful, harmless = harmful[: args.max_pairs], harmless[: args.max_pairs]
    engine = _engine(args, config)
    lm = engine.lm
    layers = sorted(set(args.layers)) if args.layers else list(range(lm.num_layers))
    for layer in layers:
        if not 0 <= layer < lm.num_layers:
            raise SteeringError(f"layer {layer} is out of range: the model has layers 0..{lm.num_layers - 1}")
    batch_size = args.batch_size or int(config["extraction"]["batch_size"])
    start = time.perf_counter()
    vectors = instruction_direction(lm.model, lm.tokenizer, harmful, harmless, layers, batch_size=batch_size,
                                    system_prompt=_system_prompt(args, config), positions=args.positions)
    seconds = time.perf_counter() - start
    vset = VectorSet(vectors, {
        "model": lm.name, "hidden_size": str(lm.hidden_size), "num_layers": str(lm.num_layers),
        "read_mode": f"instructions-{args.positions}", "method": "instructions", "behavior": args.behavior,
        "dataset": _display_path(dataset), "dataset_sha256": file_sha256(dataset),
        "requests": f"{len(harmful)} harmful, {len(harmless)} harmless",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    out = Path(args.out) if args.out else vector_path(engine.vectors_dir, args.behavior, lm.slug)
    save_safetensors(vset, out)  # atomic: a failed run leaves the old file in place
    print(f"wrote {out} ({len(layers)} layers, {len(harmful)} harmful / {len(harmless)} harmless requests, "
          f"method instructions, {args.positions} positions, {seconds:.1f} s)")
    return 0


def cmd_extract(args: argparse.Namespace, config: dict[str, Any]) -> int:
    if getattr(args, "method", "mean-diff") == "instructions":
        return _extract_instructions(args, config)
    from steering.datasets import file_sha256, load_ab_dataset
    from steering.extraction import extract_vectors
    from steering.limits import Limits
    from steering.prompts import READ_MODES
    from steering.vector_files import (VectorSet, caa_filename, gguf_layers, save_caa_layout, save_gguf,
                                       save_safetensors, vector_path)

    dataset = Path(args.dataset or PROJECT_ROOT / config["datasets_dir"] / args.behavior / "generate.json")
    # validate before the slow model load (answer-mean items are checked again once the default mode is known)
    items = load_ab_dataset(dataset, args.read_mode, Limits.from_config(config))
    if args.max_pairs:
        items = items[: args.max_pairs]
    if args.gguf and args.layers:
        gguf_layers(args.layers, "--gguf")  # a GGUF with no layer left (only layer 0) is refused before the model loads
    engine = _engine(args, config)
    lm = engine.lm
    read_mode = args.read_mode or engine.defaults.read_mode
    if read_mode not in READ_MODES:
        raise SteeringError(f"unknown read mode '{read_mode}' (expected {' or '.join(READ_MODES)})")
    layers = args.layers if args.layers else list(range(lm.num_layers))
    for layer in layers:
        if not 0 <= layer < lm.num_layers:
            raise SteeringError(f"layer {layer} is out of range: the model has layers 0..{lm.num_layers - 1}")
    batch_size = args.batch_size or int(config["extraction"]["batch_size"])
    start = time.perf_counter()
    vectors = extract_vectors(lm.model, lm.tokenizer, items, layers, read_mode, batch_size=batch_size,
                              system_prompt=_system_prompt(args, config), method=args.method)
    seconds = time.perf_counter() - start
    vset = VectorSet(vectors, {
        "model": lm.name, "hidden_size": str(lm.hidden_size), "num_layers": str(lm.num_layers),
        "read_mode": read_mode, "method": args.method, "behavior": args.behavior,
        "dataset": _display_path(dataset), "dataset_sha256": file_sha256(dataset), "pairs": str(len(items)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    out = Path(args.out) if args.out else vector_path(engine.vectors_dir, args.behavior, lm.slug)
    save_safetensors(vset, out)  # atomic: a failed run leaves the old file in place
    print(f"wrote {out} ({len(layers)} layers, {len(items)} pairs, read mode {read_mode}, "
          f"{len(items) / seconds:.1f} pairs/s)")
    if args.caa_layout:
        files = save_caa_layout(vset, out.parent, lm.name)  # named like the paper's code: hub-id basename
        print(f"wrote {len(files)} files in the paper's layout: {files[0].parent}/{caa_filename('<L>', lm.name)}")
    if args.gguf:
        note = gguf_layers(vset.layers)[1]  # layer 0 is skipped: llama.cpp control vectors have none
        print(f"wrote {save_gguf(vset, out.with_suffix('.gguf'), model_hint='llama')} (llama.cpp control vector"
              f"{'; ' + note if note else ''})")
    return 0


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- chat
def cmd_chat(args: argparse.Namespace, config: dict[str, Any]) -> int:
    if not args.prompt.strip():
        raise SteeringError("--prompt is empty")
    engine = _engine(args, config)
    vector, layer = _steering_choice(engine, args)
    multiplier = args.multiplier if args.multiplier is not None else engine.defaults.multiplier
    settings = _sampling(args, config)
    start = time.perf_counter()
    result = engine.compare([{"role": "user", "content": args.prompt}], vector, layer, multiplier, settings,
                            system_prompt=_system_prompt(args, config), behavior=args.behavior)
    seconds = time.perf_counter() - start
    added, unsteered, subtracted = result.texts
    info = {"model": engine.lm.name, "behavior": args.behavior if not args.vector else args.vector,
            "layer": layer, "multiplier": multiplier, "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature, "top_p": settings.top_p, "seed": settings.seed,
            "seconds": round(seconds, 2)}
    if args.json:
        print(json.dumps({"added": added, "subtracted": subtracted, "unsteered": unsteered, "settings": info},
                         ensure_ascii=False, indent=2))
    else:
        print(f"# {engine.lm.describe()} | {info['behavior']} layer {layer} | alpha {multiplier:g}\n")
        print(f"[added +{multiplier:g}]\n{added}\n")
        print(f"[unsteered]\n{unsteered}\n")
        print(f"[subtracted -{multiplier:g}]\n{subtracted}\n")
        print(f"({seconds:.1f} s for three answers in one batch)")
    return 0


# ---------------------------------------------------------------------------- test
def cmd_test(args: argparse.Namespace, config: dict[str, Any]) -> int:
    from tqdm.auto import tqdm

    from steering.datasets import load_open_ended
    from steering.files import write_json

    questions_path = Path(args.questions or PROJECT_ROOT / config["datasets_dir"] / args.behavior / "test_open_ended.json")
    questions = load_open_ended(questions_path)
    if args.limit:
        questions = questions[: args.limit]
    engine = _engine(args, config)
    vector, layer = _steering_choice(engine, args)
    settings = _sampling(args, config)
    out = Path(args.out)
    system_prompt = _system_prompt(args, config)
    for multiplier in args.multipliers:
        results = []
        with tqdm(total=len(questions), desc=f"x{multiplier:g}", unit="q") as bar:
            for start in range(0, len(questions), args.batch_size):
                chunk = questions[start:start + args.batch_size]
                for question, texts in zip(chunk, engine.compare_batch(chunk, vector, layer, multiplier, settings,
                                                                       system_prompt=system_prompt,
                                                                       behavior=args.behavior)):
                    results.append({"question": question, "added": texts["added"],
                                    "subtracted": texts["subtracted"], "unsteered": texts["unsteered"]})
                bar.update(len(chunk))
        payload = {"settings": {"model": engine.lm.name, "behavior": args.behavior, "layer": layer,
                                "multiplier": multiplier, "read_mode": _read_mode_of(engine, args),
                                "max_new_tokens": settings.max_new_tokens, "seed": settings.seed,
                                "temperature": settings.temperature, "batch_size": args.batch_size,
                                "recipe": engine.recipe(args.behavior).with_overrides(layer, multiplier).to_dict()},
                   "results": results}
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
    from steering.vector_files import cosine_by_layer, load_vectors

    a, b = load_vectors(args.a), load_vectors(args.b)
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
    from steering.vector_files import VectorSet, gguf_layers, load_vectors, save_gguf

    if args.layers:
        gguf_layers(args.layers, args.out)  # the one GGUF layer check (also in save_gguf and extract --gguf)
    vset = load_vectors(args.source)
    layers = args.layers or vset.layers
    chosen = VectorSet({layer: vset.vector(layer) for layer in layers}, vset.metadata)
    path = save_gguf(chosen, args.out, model_hint=args.model_hint)  # skips layer 0
    kept, note = gguf_layers(layers)
    print(f"wrote {path} ({len(kept)} layers{'; ' + note if note else ''}); "
          f"use: llama-cli -m MODEL.gguf --control-vector {path}")
    return 0


# ---------------------------------------------------------------------------- parser
def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m steering", description="Contrastive Activation Addition for chat models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("extract", help="build steering vectors from A/B pairs")
    _add_model_flags(p)
    p.add_argument("--behavior", default=None)
    p.add_argument("--dataset", help="A/B JSON (default: datasets/<behavior>/generate.json)")
    p.add_argument("--layers", type=int, nargs="+", help="default: all layers")
    p.add_argument("--read-mode", choices=["letter", "answer-mean"])
    p.add_argument("--method", choices=["mean-diff", "pca", "centered", "instructions"], default="mean-diff",
                   help="mean-diff (CAA, the default), pca or centered (first principal component of the pair "
                        "differences, uncentred / mean-centred), instructions (harmful minus harmless requests, "
                        "Arditi et al. 2024; --dataset defaults to datasets/<behavior>/instructions.json)")
    p.add_argument("--positions", choices=["post", "last"], default="post",
                   help="--method instructions: read the post-instruction tokens (default) or the last token")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-pairs", type=int)
    p.add_argument("--out", help="default: vectors/<behavior>/<model-slug>.safetensors")
    p.add_argument("--caa-layout", action="store_true", help="also write vec_layer_<L>_<model>.pt files")
    p.add_argument("--gguf", action="store_true", help="also write a llama.cpp control vector")
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
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("compare-vectors", help="cosine similarity per layer between two vector sets")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config")
    p.set_defaults(func=cmd_compare_vectors)

    p = sub.add_parser("export-gguf", help="write a vector set as a llama.cpp control vector")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--layers", type=int, nargs="+")
    p.add_argument("--model-hint", default="llama")
    p.add_argument("--config")
    p.set_defaults(func=cmd_export_gguf)

    for name, register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Commands living in their own modules (evaluation, benchmark) register here.
_EXTRA_COMMANDS: list[tuple[str, Callable[[Any], None]]] = [
    ("evaluate", evaluation_cli.register),
    ("bench", lambda sub: __import__("steering.bench", fromlist=["register"]).register(sub)),
    ("tune", lambda sub: __import__("steering.tune", fromlist=["register"]).register(sub)),
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
        if hasattr(args, "behavior") and args.behavior is None:
            args.behavior = config["behavior"]
        _quiet_libraries()
        return args.func(args, config)
    except SteeringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
