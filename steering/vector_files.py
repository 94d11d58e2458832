"""Reading, validating and writing steering vector files.

Formats:
- the project's safetensors: one tensor per layer named "layer.<L>", metadata strings;
- the paper's layout: vec_layer_<L>_<model>.pt, one 1-D tensor per file (read with weights_only=True);
- GGUF control vectors (repeng / llama.cpp --control-vector): tensors "direction.<L>", L = decoder block index.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import torch

from steering.errors import SteeringError
from steering.files import atomic_write

_CAA_NAME = re.compile(r"^vec_layer_(\d+)(?:_(.+))?\.pt$")
_DIRECTION = re.compile(r"^direction\.(\d+)$")
_LAYER_KEY = re.compile(r"^layer\.(\d+)$")


@dataclass
class VectorSet:
    vectors: dict[int, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def vector(self, layer: int) -> torch.Tensor:
        if layer not in self.vectors:
            raise SteeringError(
                f"{self.source or 'vector set'} has no vector for layer {layer} (it has layers {_ranges(self.layers)})"
            )
        return self.vectors[layer]

    def validate(self, hidden_size: int, num_layers: int) -> "VectorSet":
        """Check the set fits a model: sizes match, values finite, layers in range."""
        name = self.source or "vector set"
        if not self.vectors:
            raise SteeringError(f"{name}: contains no vectors")
        for layer, vec in self.vectors.items():
            if vec.ndim != 1:
                raise SteeringError(f"{name}: layer {layer}: expected a 1-D vector, found shape {tuple(vec.shape)}")
            if vec.shape[0] != hidden_size:
                raise SteeringError(
                    f"{name}: layer {layer}: vector size {vec.shape[0]} does not match the model's hidden size {hidden_size}"
                )
            if not torch.isfinite(vec).all():
                raise SteeringError(f"{name}: layer {layer}: vector contains NaN or infinite values")
            if not 0 <= layer < num_layers:
                raise SteeringError(f"{name}: layer {layer} is out of range: the model has layers 0..{num_layers - 1}")
        return self


def _ranges(layers: Iterable[int]) -> str:
    layers = sorted(layers)
    return f"{layers[0]}..{layers[-1]}" if layers and layers == list(range(layers[0], layers[-1] + 1)) else ", ".join(map(str, layers))


def _as_vector(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise SteeringError(f"{name}: expected a tensor, found {type(value).__name__}")
    if value.ndim == 2 and 1 in value.shape:
        value = value.reshape(-1)
    return value.detach().float().cpu()


# ---------------------------------------------------------------- safetensors (the project's format)

def save_safetensors(vset: VectorSet, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {k: str(v) for k, v in vset.metadata.items()}
    metadata.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    metadata["layers"] = json.dumps(vset.layers)
    tensors = {f"layer.{layer}": vec.detach().float().contiguous().cpu() for layer, vec in vset.vectors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def load_safetensors(path: Path) -> VectorSet:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SteeringError(f"{path}: not a readable safetensors file ({exc})") from None
    vectors = {}
    for key, value in tensors.items():
        match = _LAYER_KEY.match(key) or _DIRECTION.match(key)
        if not match:
            raise SteeringError(f"{path}: unexpected tensor '{key}' (expected names like 'layer.12')")
        vectors[int(match.group(1))] = _as_vector(value, f"{path}: {key}")
    metadata.pop("layers", None)
    return VectorSet(vectors, metadata, str(path))


# ---------------------------------------------------------------- the paper's .pt layout

def caa_filename(layer: int, model_slug: str) -> str:
    return f"vec_layer_{layer}_{model_slug}.pt"


def save_caa_layout(vset: VectorSet, folder: str | Path, model_slug: str) -> list[Path]:
    folder = Path(folder)
    written = []
    for layer, vec in sorted(vset.vectors.items()):
        path = folder / caa_filename(layer, model_slug)
        atomic_write(path, lambda tmp, v=vec: torch.save(v.detach().float().cpu().clone(), tmp))
        written.append(path)
    return written


def _load_pt(path: Path) -> torch.Tensor:
    try:
        # weights_only: a vector file must never be able to run code.
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SteeringError(f"{path}: not a plain tensor file that can be loaded safely ({detail})") from None
    return _as_vector(value, str(path))


def load_caa_layout(path: Path, model_slug: str | None = None) -> VectorSet:
    """A single vec_layer_<L>_*.pt file, or a folder of them (optionally only one model's)."""
    files = [path] if path.is_file() else sorted(path.glob("vec_layer_*.pt"))
    vectors = {}
    for file in files:
        match = _CAA_NAME.match(file.name)
        if not match:
            raise SteeringError(f"{file}: expected a name like vec_layer_<L>_<model>.pt")
        if path.is_dir() and model_slug and match.group(2) and match.group(2) != model_slug:
            continue
        vectors[int(match.group(1))] = _load_pt(file)
    if not vectors:
        raise SteeringError(f"{path}: no vec_layer_<L>_*.pt files found")
    return VectorSet(vectors, {"format": "caa-pt"}, str(path))


# ---------------------------------------------------------------- GGUF control vectors

def save_gguf(vset: VectorSet, path: str | Path, model_hint: str = "llama") -> Path:
    """Write a llama.cpp control vector (`llama-cli --control-vector FILE`)."""
    import gguf

    path = Path(path)
    if 0 in vset.vectors:
        # llama.cpp reserves direction.0: block 0's output cannot carry a control vector there.
        raise SteeringError(f"{path}: llama.cpp control vectors cannot hold layer 0; drop it or pick layers 1..")

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(vset.vectors))
        for layer, vec in sorted(vset.vectors.items()):
            writer.add_tensor(f"direction.{layer}", vec.detach().float().cpu().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    atomic_write(path, write)
    return path


def load_gguf(path: Path) -> VectorSet:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise SteeringError(f"{path}: not a readable GGUF file ({exc})") from None
    vectors = {}
    for tensor in reader.tensors:
        match = _DIRECTION.match(tensor.name)
        if not match:
            continue
        vectors[int(match.group(1))] = torch.tensor(tensor.data.astype("float32")).reshape(-1)
    if not vectors:
        raise SteeringError(f"{path}: no 'direction.<L>' tensors: not a control vector file")
    hint = reader.fields.get("controlvector.model_hint")
    metadata = {"format": "gguf-control-vector"}
    if hint is not None:
        metadata["model_hint"] = bytes(hint.parts[hint.data[0]]).decode("utf-8", "replace")
    return VectorSet(vectors, metadata, str(path))


# ---------------------------------------------------------------- any format

def load_vectors(path: str | Path, model_slug: str | None = None) -> VectorSet:
    path = Path(path)
    if not path.exists():
        raise SteeringError(f"{path}: file not found")
    if path.is_dir():
        return load_caa_layout(path, model_slug)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_safetensors(path)
    if suffix == ".pt":
        return load_caa_layout(path)
    if suffix == ".gguf":
        return load_gguf(path)
    raise SteeringError(f"{path}: unknown vector format '{suffix}' (expected .safetensors, .pt or .gguf)")


def cosine_by_layer(a: VectorSet, b: VectorSet) -> dict[int, float]:
    common = sorted(set(a.vectors) & set(b.vectors))
    if not common:
        raise SteeringError(f"{a.source} and {b.source} have no layer in common")
    out = {}
    for layer in common:
        va, vb = a.vectors[layer], b.vectors[layer]
        if va.shape != vb.shape:
            raise SteeringError(f"layer {layer}: vector sizes differ ({va.shape[0]} vs {vb.shape[0]})")
        out[layer] = float(torch.nn.functional.cosine_similarity(va, vb, dim=0))
    return out


def vector_path(vectors_dir: str | Path, behavior: str, model_slug: str) -> Path:
    return Path(vectors_dir) / behavior / f"{model_slug}.safetensors"


def available_behaviors(vectors_dir: str | Path, model_slug: str) -> list[str]:
    root = Path(vectors_dir)
    return sorted(p.parent.name for p in root.glob(f"*/{model_slug}.safetensors"))
