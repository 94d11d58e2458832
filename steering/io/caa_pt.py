"""The paper's vector layout: vec_layer_<L>_<model>.pt, one 1-D tensor per file (read with weights_only=True).

The paper's code (Rimsky et al. 2023, arXiv 2312.06681) names files after the hub id's basename, e.g.
vec_layer_13_Llama-2-7b-chat-hf.pt, and keeps several models' files in one folder; a folder is matched to
the loaded model by normalize_model_name.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from steering.errors import SteeringError
from steering.io.files import atomic_write
from steering.io.vector_files import VectorSet, as_vector, check_writable

CAA_NAME = re.compile(r"^vec_layer_(\d+)(?:_(.+))?\.pt$")


def normalize_model_name(name: str) -> str:
    """A model name for comparisons: hub-id basename, lower case, runs of other characters -> '-'.

    'meta-llama/Llama-2-7b-chat-hf', 'Llama-2-7b-chat-hf' and 'llama_2_7b_chat_hf' all give
    'llama-2-7b-chat-hf'.
    """
    base = str(name).replace("\\", "/").rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")


def caa_filename(layer: int, model: str) -> str:
    """The paper's file name for one layer: vec_layer_<L>_<hub-id basename>.pt.

    Args:
        layer: decoder block index.
        model: a hub id ('meta-llama/Llama-2-7b-chat-hf') or a model name; only its basename is used, as in
            the paper's code, with characters other than letters, digits, '.', '_' and '-' replaced by '-'.
    """
    base = str(model).replace("\\", "/").rstrip("/").split("/")[-1]
    return f"vec_layer_{layer}_{re.sub(r'[^A-Za-z0-9._-]+', '-', base).strip('-') or 'model'}.pt"


def save_caa_layout(vset: VectorSet, folder: str | Path, model: str) -> list[Path]:
    """Write one vec_layer_<L>_<model>.pt file per layer (a plain 1-D float32 tensor each) in `folder`.

    Returns:
        The written paths, by layer.
    """
    folder = Path(folder)
    check_writable(vset, folder)
    written = []
    for layer, vec in sorted(vset.vectors.items()):
        path = folder / caa_filename(layer, model)

        def write(tmp: str, v: torch.Tensor = vec, p: Path = path) -> None:
            torch.save(v.detach().float().cpu().clone(), tmp)
            load_pt_vector(Path(tmp), str(p))

        atomic_write(path, write)
        written.append(path)
    return written


def load_pt_vector(path: Path, label: str | None = None) -> torch.Tensor:
    """One tensor file written by torch.save, read with weights_only=True; `label` names it in messages.

    Raises:
        SteeringError: damaged or not a torch file, or it holds Python objects (refused unread: they could run code).
    """
    name = label or str(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: not one line
            warnings.simplefilter("ignore")
            # weights_only: a vector file must never be able to run code.
            value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise SteeringError(f"{name}: not a readable tensor file (damaged, or not written by torch.save)") from None
        # PyTorch's own text here advises re-loading with weights_only=False, which would run the code.
        raise SteeringError(
            f"{name}: not a plain tensor file: it holds Python objects that are not tensors, which could run "
            "code when loaded, so it was refused unread"
        ) from None
    except Exception:  # damaged zip, not a torch file at all, ...
        raise SteeringError(f"{name}: not a readable tensor file (damaged, or not written by torch.save)") from None
    return as_vector(value, name)


def load_caa_layout(path: Path, model: str | None = None, label: str | None = None) -> VectorSet:
    """A single vec_layer_<L>_*.pt file, or a folder of them (the paper's layout).

    Args:
        path: one .pt file, or a folder holding vec_layer_<L>_<model>.pt files.
        model: the loaded model's name or hub id. In a folder, files whose model part matches it after
            normalize_model_name (case, hub-id basename, separators) are loaded; a folder holding one
            model's files (or unnamed vec_layer_<L>.pt files) is loaded whatever that name is (the caller
            checks the sizes).
        label: how messages and `source` name the path (default: the path).

    Raises:
        SteeringError: no such files; a folder with several models' files none of which matches `model`
            (the message lists the names found); two files for one layer; an unreadable or unsafe file.
    """
    name = label or str(path)
    if path.is_file():
        files = [path]
    else:
        files = sorted(path.glob("vec_layer_*.pt"))
    groups: dict[str, dict[int, Path]] = {}
    shown: dict[str, str] = {}
    for file in files:
        match = CAA_NAME.match(file.name)
        if not match:
            raise SteeringError(
                f"{file if label is None else file.name}: expected a name like vec_layer_<L>_<model>.pt"
            )
        key = normalize_model_name(match.group(2) or "")
        shown.setdefault(key, match.group(2) or "(no model name)")
        layer = int(match.group(1))
        group = groups.setdefault(key, {})
        if layer in group:
            raise SteeringError(
                f"{name}: two files for layer {layer} of model {shown[key]}: {group[layer].name} and {file.name}"
            )
        group[layer] = file
    if not groups:
        raise SteeringError(f"{name}: no vec_layer_<L>_<model>.pt files found")
    wanted = normalize_model_name(model) if model else None
    if wanted is not None and wanted in groups:
        key = wanted
    elif len(groups) == 1:
        key = next(iter(groups))
    else:
        found = ", ".join(shown[k] for k in sorted(groups))
        reason = f"none matches the loaded model {model}" if model else "say which by passing a single file"
        raise SteeringError(f"{name}: holds vector files for {len(groups)} models ({found}); {reason}")
    vectors = {}
    for layer, file in sorted(groups[key].items()):
        shown_file = file.name if label else str(file)
        vectors[layer] = load_pt_vector(file, shown_file)
        VectorSet({layer: vectors[layer]}).checked_as(shown_file)  # finite, bounded: the message names the file
    metadata = {"format": "caa-pt"}
    if key:
        metadata["model"] = shown[key]
    return VectorSet(vectors, metadata, name).checked()
