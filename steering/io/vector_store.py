"""A checkout's vector files: reading any format, where a behavior's file lives, what a write would replace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from steering.core.limits import check_behavior_name
from steering.errors import SteeringError
from steering.io.caa_pt import load_caa_layout
from steering.io.gguf_vectors import load_gguf
from steering.io.vector_files import load_safetensors, safetensors_header
from steering.io.vector_set import VectorSet, layer_ranges


def load_vectors(path: str | Path, model: str | None = None, label: str | None = None) -> VectorSet:
    """Read a vector file of any supported format (not yet checked against a model: see VectorSet.validate).

    Args:
        path: a .safetensors, .gguf or .pt file, or a folder in the paper's layout.
        model: the loaded model's name or hub id, to pick its files in a folder with several models' files.
        label: how messages and `source` name the file (default: the path). Use it where the path must not
            be shown (remote callers, temporary upload folders).

    Returns:
        VectorSet: {layer: (hidden_size,) float32 vector}, its metadata, and `source` (the label or path).

    Raises:
        SteeringError: missing, unknown format, unreadable or unsafe file.
    """
    path = Path(path)
    name = label or str(path)
    if not path.exists():
        raise SteeringError(f"{name}: file not found")
    if path.is_dir():
        return load_caa_layout(path, model, label)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_safetensors(path, label)
    if suffix == ".pt":
        return load_caa_layout(path, label=label)
    if suffix == ".gguf":
        return load_gguf(path, label)
    raise SteeringError(f"{name}: unknown vector format '{suffix}' (expected .safetensors, .pt or .gguf)")


def vector_path(vectors_dir: str | Path, behavior: str, model_slug: str) -> Path:
    """Where a behavior's vectors for a model live: <vectors_dir>/<behavior>/<model_slug>.safetensors.

    Raises:
        SteeringError: `behavior` is not a valid name (steering.core.limits.check_behavior_name): never a path.
    """
    return Path(vectors_dir) / check_behavior_name(behavior) / f"{model_slug}.safetensors"


def available_behaviors(vectors_dir: str | Path, model_slug: str) -> list[str]:
    """Behaviors (valid names only) that have a vector file for the model under `vectors_dir`."""
    root = Path(vectors_dir)
    names = (p.parent.name for p in root.glob(f"*/{model_slug}.safetensors"))
    return sorted(name for name in names if _valid_name(name))


def _valid_name(name: str) -> bool:
    try:
        check_behavior_name(name)
    except SteeringError:
        return False
    return True


# ---------------------------------------------------------------- what a write would replace


@dataclass(frozen=True)
class VectorFileInfo:
    """What an existing vector file holds, from its header (tensors are not read for safetensors)."""

    path: Path
    layers: list[int]
    pairs: int | None  # contrast pairs it was extracted from (metadata 'pairs'), None when not recorded
    metadata: dict[str, str]

    def summary(self) -> str:
        """E.g. '30 layers (0..29), 250 pairs, read mode letter, made 2026-01-01T00:00:00+00:00'."""
        parts = [f"{len(self.layers)} layer{'s' if len(self.layers) != 1 else ''} ({layer_ranges(self.layers)})"]
        parts.append(f"{self.pairs} pairs" if self.pairs is not None else "pairs not recorded")
        if self.metadata.get("read_mode"):
            parts.append(f"read mode {self.metadata['read_mode']}")
        if self.metadata.get("created"):
            parts.append(f"made {self.metadata['created']}")
        return ", ".join(parts)


def describe_vector_file(path: str | Path) -> VectorFileInfo | None:
    """Describe the vector file at `path` (layers, pair count, metadata), or None when nothing is there.

    Raises:
        SteeringError: something is there but it is not a readable vector file.
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file() and path.suffix.lower() == ".safetensors":
        metadata, layers = safetensors_header(path)
    else:
        vset = load_vectors(path)
        metadata, layers = dict(vset.metadata), vset.layers
    metadata.pop("layers", None)
    try:
        pairs = int(metadata["pairs"]) if "pairs" in metadata else None
    except ValueError:
        pairs = None
    return VectorFileInfo(path, layers, pairs, metadata)


def replacement_check(path: str | Path, layers: Iterable[int], pairs: int | None, force: bool = False) -> str | None:
    """What writing new vectors at `path` would replace; refuse to lose layers or pairs unless `force`.

    Call it before the model loads (extract: the destination file, the layers and pair count asked for).

    Args:
        path: the destination vector file.
        layers: the layers the new file will hold.
        pairs: the contrast pairs it will be extracted from.
        force: replace whatever is there (the --force flag).

    Returns:
        None when nothing is at `path`, else a one-line note to print ('replaces <path>: 30 layers ...').

    Raises:
        SteeringError: without `force`, when the existing file has a layer the new one lacks, was made from
            more pairs, or is not a readable vector file.
    """
    path = Path(path)
    try:
        old = describe_vector_file(path)
    except SteeringError as exc:
        if not force:
            raise SteeringError(f"{exc}; not replacing it without --force") from None
        return f"replaces {path} (not a readable vector file)"
    if old is None:
        return None
    layers = sorted(set(layers))
    lost_layers = sorted(set(old.layers) - set(layers))
    fewer_pairs = pairs is not None and old.pairs is not None and pairs < old.pairs
    if (lost_layers or fewer_pairs) and not force:
        lost = []
        if lost_layers:
            lost.append(f"layers {layer_ranges(lost_layers)}" if len(lost_layers) > 1 else f"layer {lost_layers[0]}")
        if fewer_pairs:
            lost.append(f"{(old.pairs or 0) - (pairs or 0)} of its {old.pairs} pairs")
        raise SteeringError(
            f"{path} holds {old.summary()}; the new file would have {len(layers)} "
            f"layer{'s' if len(layers) != 1 else ''}"
            f"{'' if pairs is None else f' from {pairs} pairs'} and lose {' and '.join(lost)}: "
            "pass --force to replace it, or --out to write elsewhere"
        )
    return f"replaces {path}: {old.summary()}"
