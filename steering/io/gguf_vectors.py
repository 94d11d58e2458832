"""GGUF control vectors (repeng / llama.cpp --control-vector): tensors "direction.<L>", L = decoder block index."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import gguf
import torch

from steering.errors import SteeringError
from steering.io.vector_files import DIRECTION_KEY
from steering.io.vector_set import VectorSet, check_writable, write_checked


def gguf_layers(layers: Iterable[int], path: str | Path | None = None) -> tuple[list[int], str]:
    """The layers a llama.cpp control vector can hold, and a note saying what was left out.

    llama.cpp rejects a control vector tensor 'direction.0' (its layer indices start at 1), so layer 0 is
    skipped; every other layer is kept. One check for every GGUF writer (extract --gguf, export-gguf).

    Args:
        layers: the layers asked for (decoder block indices).
        path: the destination, for the message.

    Returns:
        (sorted layers that will be written, '' or 'layer 0 skipped: ...').

    Raises:
        SteeringError: no layer is left (e.g. only layer 0 was asked for): such a file would hold no vectors.
    """
    layers = sorted(set(layers))
    kept = [layer for layer in layers if layer > 0]
    if not kept:
        where = f"{path}: " if path else ""
        raise SteeringError(
            f"{where}a llama.cpp control vector cannot hold layer 0 and no other layer was chosen; "
            "choose layers 1 and up"
        )
    note = "layer 0 skipped: llama.cpp control vectors have no layer 0" if 0 in layers else ""
    return kept, note


def save_gguf(vset: VectorSet, path: str | Path, model_hint: str = "llama") -> Path:
    """Write a llama.cpp control vector (`llama-cli --control-vector FILE`) atomically.

    Layer 0 is skipped (see gguf_layers, which gives the note to show); the file is read back before it
    replaces anything.

    Args:
        vset: the vectors; layer L is written as llama.cpp's "direction.L" ((hidden_size,) float32).
        path: the .gguf file to write.
        model_hint: the architecture stored as controlvector.model_hint (llama.cpp checks it).

    Returns:
        Path: `path`.

    Raises:
        SteeringError: no layer but 0, non-finite or absurd vectors, or the file does not read back.
    """

    path = Path(path)
    check_writable(vset, path)
    layers, _ = gguf_layers(vset.layers, path)
    chosen = VectorSet({layer: vset.vectors[layer] for layer in layers}, dict(vset.metadata), vset.source)

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(chosen.vectors))
        for layer in layers:
            writer.add_tensor(f"direction.{layer}", chosen.vectors[layer].detach().float().cpu().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return write_checked(path, chosen, write, load_gguf)


def load_gguf(path: Path, label: str | None = None) -> VectorSet:
    """Read a GGUF control vector ('direction.<L>' tensors); `label` names it in messages."""

    name = label or str(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise SteeringError(
            f"{name}: not a readable GGUF file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    vectors = {}
    for tensor in reader.tensors:
        match = DIRECTION_KEY.match(tensor.name)
        if not match:
            continue
        vectors[int(match.group(1))] = torch.tensor(tensor.data.astype("float32")).reshape(-1)
    if not vectors:
        raise SteeringError(f"{name}: no 'direction.<L>' tensors: not a control vector file")
    hint = reader.fields.get("controlvector.model_hint")
    metadata = {"format": "gguf-control-vector"}
    if hint is not None:
        metadata["model_hint"] = bytes(hint.parts[hint.data[0]]).decode("utf-8", "replace")
    return VectorSet(vectors, metadata, name).checked()
