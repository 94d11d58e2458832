"""Vectors on first use: a model without vectors for a behavior whose dataset ships gets them built on request.

Any chat model works without a manual `extract` step: when the loaded model has no
vectors/<behavior>/<model-slug>.safetensors for a behavior whose A/B dataset ships
(datasets/<behavior>/, the card's `generate` file, else generate.json), the CLI (`build-vectors`, or
`chat`/`test` with --build-vectors or an answer at the prompt; progress with tqdm) and the app (a button;
progress with gr.Progress) build them: CAA's mean difference (Rimsky et al. 2023, arXiv 2312.06681,
section 3) at every layer, in the model's read mode, the same extraction as `python -m steering extract`.
The file is written atomically with its metadata (model, sizes, dataset and sha256, pairs, read mode,
'made_by: first use'), so a failed or interrupted build leaves the previous state (no file). Until the
behavior is tuned (`python -m steering tune` writes vectors/<behavior>/<slug>.defaults.json) it steers at
the model's default layer: its config.yaml `models:` entry, else round(default_model_settings.layer_fraction
x layer count) (steering.config.model_defaults). The command line (build-vectors, the offer to build):
steering.cli.build_vectors.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from steering.config import Config, home_hint
from steering.core.behaviors import generate_file
from steering.core.datasets import file_sha256, load_ab_dataset
from steering.core.layers import check_layer
from steering.core.limits import check_behavior_name
from steering.errors import SteeringError
from steering.extract.extraction import extract_vectors
from steering.io.files import display_path
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet
from steering.io.vector_store import describe_vector_file, vector_path

# One build per (vectors file) at a time in this process: two users pressing the button build once.
_BUILDING: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()
CHUNK_PAIRS = 32  # pairs per extraction call: the progress steps


@dataclass(frozen=True)
class BuildResult:
    """What build_vectors wrote: the file, its layers and pair count, the seconds it took, and the layer the
    behavior steers at until it is tuned."""

    path: Path
    layers: list[int]
    pairs: int
    seconds: float
    default_layer: int

    def summary(self) -> str:
        """One line for the user: layers, pairs, seconds, and the layer steered at until the behavior is tuned."""
        return (
            f"{len(self.layers)} layers, {self.pairs} pairs, {self.seconds:.1f} s; steering at layer "
            f"{self.default_layer} (the model's default) until tuned"
        )


def dataset_file(config: Config, behavior: str) -> Path:
    """The A/B file vectors of `behavior` are built from: the card's `generate` file, else generate.json.

    Raises:
        SteeringError: an invalid behavior name or an invalid behavior card.
    """

    return generate_file(config, check_behavior_name(behavior))


def buildable_behaviors(config: Config) -> list[str]:
    """Behaviors whose A/B dataset ships (a valid name and an existing generate file), sorted."""

    root = config.datasets_dir
    names = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            check_behavior_name(folder.name)
            if dataset_file(config, folder.name).is_file():
                names.append(folder.name)
        except SteeringError:  # not a behavior folder, or a card that does not load: not offered
            continue
    return names


def missing_behaviors(engine: Any) -> list[str]:
    """Behaviors whose dataset ships but that have no vectors for the loaded model (the CLI's default list;
    a dataset that does not load is reported when its build is tried, see offered_behaviors for the app)."""
    have = set(engine.behaviors())
    return [name for name in buildable_behaviors(engine.config) if name not in have]


# dataset file -> ((mtime_ns, size), problem or None): a page load re-checks only files that changed
_PROBLEMS: dict[str, tuple[tuple[int, int], str | None]] = {}


def dataset_problem(config: Config, behavior: str, read_mode: str | None = None) -> str | None:
    """Why `behavior`'s A/B dataset cannot be built from (its one-line error), or None when it loads.

    Args:
        config: the loaded config (datasets folder, caps).
        behavior: a behavior folder name.
        read_mode: the model's read mode (answer-mean needs option texts); None checks the format only.

    Returns:
        None, or the SteeringError's message (e.g. '.../generate.json: not valid JSON ...'). The result is
        cached per file and read mode until the file changes (size or modification time).
    """

    try:
        path = dataset_file(config, behavior)
        stat = path.stat()
    except SteeringError as exc:
        return str(exc)
    except OSError:
        return f"no dataset for '{behavior}'"
    key, stamp = f"{path.resolve()}|{read_mode}", (stat.st_mtime_ns, stat.st_size)
    cached = _PROBLEMS.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        load_ab_dataset(path, read_mode, config.limits)
        problem = None
    except SteeringError as exc:
        problem = str(exc)
    _PROBLEMS[key] = (stamp, problem)
    return problem


def offered_behaviors(engine: Any) -> tuple[list[str], dict[str, str]]:
    """What the app's first-use row offers: (behaviors without vectors whose dataset loads, {behavior: why
    not offered} for those whose dataset does not load)."""
    offered, problems = [], {}
    for name in missing_behaviors(engine):
        problem = dataset_problem(engine.config, name, engine.defaults.read_mode)
        if problem is None:
            offered.append(name)
        else:
            problems[name] = problem
    return offered, problems


def build_vectors(
    engine: Any,
    behavior: str,
    progress: Callable[[int, int], None] | None = None,
    layers: Sequence[int] | None = None,
    max_pairs: int | None = None,
    batch_size: int | None = None,
    force: bool = False,
    warn: Callable[[str], None] | None = None,
) -> BuildResult:
    """Extract the behavior's vectors for the loaded model and cache them under the vectors folder.

    Args:
        engine: a steering.engine.Engine (its model, config, read mode and vectors folder).
        behavior: a behavior name whose dataset ships (dataset_file).
        progress: called as progress(pairs done, pairs in all) before the first and after each chunk of
            CHUNK_PAIRS pairs (tqdm in the CLI, gr.Progress in the app).
        layers: decoder blocks to extract (default: all).
        max_pairs: only the first N pairs of the dataset.
        batch_size: pairs per forward pass (default: config extraction.batch_size).
        force: replace an existing vector file (default: refuse; another user may have built it meanwhile).
            A replacement that loses layers or pairs (e.g. with max_pairs) is announced through `warn` before
            the build starts: the same rule as `extract` (steering.io.vector_store.replacement_check).
        warn: where that warning line goes (default: stderr).

    Returns:
        BuildResult (the file: vectors/<behavior>/<model-slug>.safetensors).

    Raises:
        SteeringError: no dataset, a bad dataset item (file and index), vectors already there (without
            `force`), a layer out of range. Nothing is written then, and a failure during the extraction
            leaves the previous state (the file is written atomically at the end).
    """

    lm = engine.lm
    path = vector_path(engine.vectors_dir, behavior, lm.slug)  # refuses names that are not names
    dataset = dataset_file(engine.config, behavior)
    if not dataset.is_file():
        raise SteeringError(
            f"no dataset for '{behavior}' to build vectors from ({display_path(dataset)} is missing){home_hint()}"
        )
    limits = engine.config.limits
    read_mode = engine.defaults.read_mode
    items = load_ab_dataset(dataset, read_mode, limits)
    if max_pairs:
        items = items[:max_pairs]
    layers = sorted({check_layer(layer, lm.num_layers) for layer in layers}) if layers else list(range(lm.num_layers))
    batch_size = int(batch_size or engine.config.extraction.batch_size)
    with _GUARD:
        lock = _BUILDING.setdefault(str(path.resolve()), threading.Lock())
    with lock:
        if path.exists() and not force:
            raise SteeringError(
                f"'{behavior}' already has vectors for {lm.name}; nothing was built", detail=f"file: {path}"
            )
        if path.exists():
            loss = _replacement_loss(path, layers, len(items))
            if loss:
                (warn or _stderr)(f"warning: --force replaces {display_path(path)} ({loss})")
        start = time.perf_counter()
        sums = {layer: torch.zeros(lm.hidden_size, dtype=torch.float64) for layer in layers}
        done = 0
        if progress is not None:
            progress(0, len(items))
        for first in range(0, len(items), CHUNK_PAIRS):
            chunk = items[first : first + CHUNK_PAIRS]
            with lm.lock:  # one model user at a time (chat turns, sweeps)
                means = extract_vectors(
                    lm.model,
                    lm.tokenizer,
                    chunk,
                    layers,
                    read_mode,
                    batch_size=batch_size,
                    system_prompt=engine.config.generation.system_prompt,
                    progress=False,
                    max_prompt_tokens=limits.max_prompt_tokens,
                )
            for layer in layers:  # the mean difference over all pairs = the pair-weighted mean of chunk means
                sums[layer] += means[layer].double() * len(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, len(items))
        vectors = {layer: (sums[layer] / len(items)).float() for layer in layers}
        vset = VectorSet(
            vectors,
            {
                "model": lm.name,
                "hidden_size": str(lm.hidden_size),
                "num_layers": str(lm.num_layers),
                "read_mode": read_mode,
                "method": "mean-diff",
                "behavior": behavior,
                "dataset": display_path(dataset),
                "dataset_sha256": file_sha256(dataset),
                "pairs": str(len(items)),
                "made_by": "first use (steering.extract.first_use)",
                "default_layer": str(engine.defaults.layer),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        engine.validated(vset)  # sizes, finite, norms against the model, before anything is written
        save_safetensors(vset, path)
        engine.forget_vectors(behavior)
        seconds = time.perf_counter() - start
    return BuildResult(path, layers, len(items), seconds, engine.recipe(behavior).layer)


def _replacement_loss(path: Path, layers: Sequence[int], pairs: int) -> str | None:
    """What replacing the vector file at `path` with `layers` from `pairs` pairs loses, or None (nothing)."""

    try:  # the rule of extract's replacement_check: losing layers or pairs needs --force, and is said
        old = describe_vector_file(path)
    except SteeringError:
        return "it is not a readable vector file"
    if old is None:
        return None
    lost = []
    missing = sorted(set(old.layers) - set(layers))
    if missing:
        lost.append(f"{len(missing)} of its {len(old.layers)} layers")
    if old.pairs is not None and pairs < old.pairs:
        lost.append(f"{old.pairs - pairs} of its {old.pairs} pairs")
    if not lost:
        return None
    return (
        f"it holds {old.summary()}; the new file has {len(layers)} layers from {pairs} pairs and loses "
        f"{' and '.join(lost)}"
    )


def _stderr(line: str) -> None:

    print(line, file=sys.stderr, flush=True)
