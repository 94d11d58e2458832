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
from steering.io.vector_set import VectorSet, as_vector, check_writable

CAA_NAME = re.compile(r"^vec_layer_(\d+)(?:_(.+))?\.pt$")


def normalize_model_name(name: str) -> str:
    """A model name for comparisons: hub-id basename, lower case, runs of other characters -> '-'.

    'meta-llama/Llama-2-7b-chat-hf', 'Llama-2-7b-chat-hf' and 'llama_2_7b_chat_hf' all give
    'llama-2-7b-chat-hf'.
    """
    base = str(name).replace("\\", "/").rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")


def model_name_matches(found: str, model: str) -> bool:
    """Whether a model name found in a file name (vec_layer_<L>_<found>.pt) names the loaded `model`.

    Equal after normalize_model_name (case, hub-id basename, separators), or `found` is the hub id with its
    "/" written as "_" or "--" (as hub caches write it: 'HuggingFaceTB_SmolLM2-135M-Instruct',
    'models--HuggingFaceTB--SmolLM2-135M-Instruct') and the part after that separator matches. When `model`
    is a hub id ('org/name'), the organisation must match too, so two organisations' models of one basename
    never match each other; a bare name accepts any organisation prefix.

    Args:
        found: the model part of a file name.
        model: the loaded model's name or hub id.
    """
    wanted = normalize_model_name(model)
    if not wanted:
        return False
    if normalize_model_name(found) == wanted:
        return True
    parts = str(model).replace("\\", "/").strip("/").split("/")
    org = normalize_model_name(parts[0]) if len(parts) == 2 and not str(model).startswith((".", "/")) else None
    for sep in ("--", "_"):
        start = found.find(sep)
        while start > 0:
            prefix, rest = found[:start], found[start + len(sep) :]
            prefix = prefix[len("models--") :] if prefix.lower().startswith("models--") else prefix
            if normalize_model_name(rest) == wanted and (org is None or normalize_model_name(prefix) == org):
                return True
            start = found.find(sep, start + 1)
    return False


def _pick_model(name: str, groups: dict[str, dict[int, Path]], shown: dict[str, str], model: str | None) -> str:
    """The key of the files to load from a folder's groups of files by model (see load_caa_layout)."""
    found = ", ".join(shown[k] for k in sorted(groups))
    move = "or move that model's files to a folder of their own"
    if model:
        wanted = normalize_model_name(model)
        if wanted in groups:
            return wanted
        matching = [k for k in sorted(groups) if model_name_matches(shown[k], model)]
        if len(matching) == 1:
            return matching[0]
        if len(matching) > 1:
            both = ", ".join(shown[k] for k in matching)
            raise SteeringError(
                f"{name}: files for {len(matching)} models ({both}) all match the loaded model {model}; "
                "move one model's files to a folder of their own"
            )
    if len(groups) == 1:
        return next(iter(groups))
    if model:
        raise SteeringError(
            f"{name}: holds vector files for {len(groups)} models ({found}); none matches the loaded model {model}: "
            f"name its files vec_layer_<L>_<hub id basename>.pt, {move}"
        )
    raise SteeringError(
        f"{name}: holds vector files for {len(groups)} models ({found}); name the model whose files to read "
        f"(compare-vectors, export-gguf: --model NAME), {move}"
    )


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
            checks the sizes). A hub id written with "_" or "--" for "/" matches too (model_name_matches).
        label: how messages and `source` name the path (default: the path).

    Raises:
        SteeringError: no such files; a folder with several models' files none (or more than one) of which
            matches `model` (the message lists the names found and what to do); two files for one layer; an
            unreadable, unsafe, non-finite or absurdly large vector.
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
    key = _pick_model(name, groups, shown, model)
    vectors = {}
    for layer, file in sorted(groups[key].items()):
        shown_file = file.name if label else str(file)
        vectors[layer] = load_pt_vector(file, shown_file)
        VectorSet({layer: vectors[layer]}).checked_as(shown_file)  # finite, bounded: the message names the file
    metadata = {"format": "caa-pt"}
    if key:
        metadata["model"] = shown[key]
    return VectorSet(vectors, metadata, name).checked()
