"""The project's vector file: safetensors, one tensor per layer named "layer.<L>", metadata strings.

The vectors themselves are a steering.io.vector_set.VectorSet (checked before writing and after reading there).
The other formats have their own modules: the paper's .pt layout (steering.io.caa_pt), GGUF control vectors
(steering.io.gguf_vectors); steering.io.vector_store reads any of them (load_vectors) and knows where a
behavior's file lives and what a write would replace.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from steering.errors import SteeringError
from steering.io.vector_set import VectorSet, as_vector, check_writable, write_checked

DIRECTION_KEY = re.compile(r"^direction\.(\d+)$")  # a GGUF control vector's tensor name (also read in safetensors)
LAYER_KEY = re.compile(r"^layer\.(\d+)$")


def save_safetensors(vset: VectorSet, path: str | Path) -> Path:
    """Write `vset` as the project's safetensors file (tensors 'layer.<L>', metadata strings), atomically.

    Args:
        vset: the vectors; each is written as a (hidden_size,) float32 tensor 'layer.<L>', its metadata
            as strings (plus "created" when missing, and "layers").
        path: the file to write (replaced only once the new file reads back).

    Returns:
        Path: `path`.

    Raises:
        SteeringError: the set is empty or holds non-finite / absurd vectors, or the file does not read back.
    """

    path = Path(path)
    check_writable(vset, path)
    metadata = {k: str(v) for k, v in vset.metadata.items()}
    metadata.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    metadata["layers"] = json.dumps(vset.layers)
    tensors = {f"layer.{layer}": vec.detach().float().contiguous().cpu() for layer, vec in vset.vectors.items()}

    return write_checked(path, vset, lambda tmp: save_file(tensors, tmp, metadata=metadata), load_safetensors)


def load_safetensors(path: Path, label: str | None = None) -> VectorSet:
    """Read the project's safetensors vector file; `label` names it in messages (default: the path)."""

    name = label or str(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SteeringError(f"{name}: not a readable safetensors file ({exc})") from None
    vectors = {}
    for key, value in tensors.items():
        match = LAYER_KEY.match(key) or DIRECTION_KEY.match(key)
        if not match:
            raise SteeringError(f"{name}: unexpected tensor '{key}' (expected names like 'layer.12')")
        vectors[int(match.group(1))] = as_vector(value, f"{name}: {key}")
    metadata.pop("layers", None)
    return VectorSet(vectors, metadata, name).checked()


def safetensors_header(path: Path) -> tuple[dict[str, str], list[int]]:
    """The metadata and the layers of a safetensors vector file, read from its header (no tensor is read).

    Raises:
        SteeringError: `path` is not a readable safetensors file.
    """

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            keys = list(handle.keys())
    except (SafetensorError, OSError, ValueError) as exc:
        raise SteeringError(f"{path}: exists but is not a readable safetensors file ({exc})") from None
    layers = sorted(int(m.group(1)) for m in (LAYER_KEY.match(k) or DIRECTION_KEY.match(k) for k in keys) if m)
    return metadata, layers
