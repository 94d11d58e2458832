"""The CAA paper's repository as import-caa reads it: which files are where, behavior folder names, and what is
refused (links out of the checkout, absurd layer numbers, datasets that fail this project's checks)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from steering.core.datasets import load_ab_dataset, load_open_ended
from steering.core.limits import check_behavior_name
from steering.errors import SteeringError
from steering.io.caa_pt import CAA_NAME, load_caa_layout, load_pt_vector
from steering.io.vector_set import VectorSet

# the paper's file -> this project's file, per behavior
DATASET_FILES = (
    ("generate", "generate_dataset.json", "generate.json", "ab"),
    ("test", "test_dataset_ab.json", "test_ab.json", "ab"),
    ("test", "test_dataset_open_ended.json", "test_open_ended.json", "open"),
)
# the paper's vector folders -> the suffix of this project's file name
VECTOR_FOLDERS = (("vectors", ""), ("normalized_vectors", ".normalized"))
MAX_LAYER = 1023  # a layer number above this is a damaged or hostile file name (no model is that deep)


def behavior_slug(folder_name: str) -> str:
    """This project's behavior name for a paper folder name: lower case, accents dropped ('Ü' -> 'u', by
    Unicode NFKD decomposition), runs of other characters '-'.

    Raises:
        SteeringError: nothing usable is left (e.g. a name of punctuation only), or letters or digits with no
            plain a-z / 0-9 form (e.g. 'ß', '名'): those are not guessed at, --rename names the folder.
    """

    plain = "".join(c for c in unicodedata.normalize("NFKD", folder_name) if not unicodedata.combining(c))
    foreign = sorted({c for c in plain if not c.isascii() and c.isalnum()})
    if foreign:
        raise SteeringError(
            f"behavior folder {folder_name!r}: {''.join(foreign)!r} has no plain a-z/0-9 form; "
            f"name it with --rename {folder_name}=NAME"
        )
    slug = re.sub(r"[^a-z0-9_-]+", "-", plain.lower()).strip("-")
    if not slug:
        raise SteeringError(f"behavior folder {folder_name!r}: no letters or digits to name it by; use --rename")
    return check_behavior_name(slug)


def read_items(path: Path, kind: str, limits: Any) -> list[Any]:
    """The file's items after this project's checks (steering.core.datasets), as they will be written."""

    if kind == "ab":
        load_ab_dataset(path, None, limits)  # one-line errors naming the file and the item index
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
        return [{key: item[key] for key in keys} for item in data]
    return [{"question": question} for question in load_open_ended(path, limits)]


def inside(root: Path, path: Path, source: Path) -> None:
    """Refuse a path that leads out of the checkout (a symbolic link to elsewhere): nothing outside is read.

    Raises:
        SteeringError: naming the path (relative to the checkout) and where it leads.
    """
    if not path.resolve().is_relative_to(root):
        raise SteeringError(
            f"{path.relative_to(source)}: a link to outside the checkout "
            f"({path.resolve()}); not followed (copy the file in, or remove the link)"
        )


def check_vector_files(root: Path, where: Path, groups: dict[str, list[Path]], source: Path) -> None:
    """Refuse a vector folder or file that leads out of the checkout, and a layer number over MAX_LAYER.

    Raises:
        SteeringError: naming the file (relative to the checkout).
    """
    inside(root, where, source)
    for file in (f for files in groups.values() for f in files):
        inside(root, file, source)
        match = CAA_NAME.match(file.name)
        digits = match.group(1) if match else ""
        if len(digits) > len(str(MAX_LAYER)) or int(digits or 0) > MAX_LAYER:
            raise SteeringError(
                f"{file.relative_to(source)}: layer {digits[:12]}{'...' if len(digits) > 12 else ''}"
                f" is not a layer number (expected 0 to {MAX_LAYER}); rename or remove the file"
            )


def vector_groups(folder: Path) -> dict[str, list[Path]]:
    """vec_layer_<L>_<model>.pt files of a folder by model name as written in the file names."""
    groups: dict[str, list[Path]] = {}
    for file in sorted(folder.glob("vec_layer_*.pt")):
        match = CAA_NAME.match(file.name)
        if match:
            groups.setdefault(match.group(2) or "", []).append(file)
    return groups


def read_vector_group(where: Path, model: str, files: list[Path], rel: Path) -> Any:
    """One model's vec_layer_<L>_<model>.pt files of a vector folder, read and checked (weights_only: a file
    cannot run code; torch.load's own errors become one line).

    Args:
        where: the folder; model: the model part of the file names ("" for unnamed vec_layer_<L>.pt files).
        files: that model's files (vector_groups); rel: the folder relative to the checkout, for messages.

    Returns:
        steering.io.vector_set.VectorSet: one (hidden_size,) vector per layer.

    Raises:
        SteeringError: an unreadable file, or NaN, inf, an absurd norm or a bad shape (named by file), or
            layers of different sizes.
    """

    if model:
        vset = load_caa_layout(where, model)  # this model's files only; one-line errors
    else:  # unnamed vec_layer_<L>.pt files
        vset = VectorSet({int(CAA_NAME.match(f.name).group(1)): load_pt_vector(f) for f in files}, {}, str(rel))
    for file in files:  # NaN, inf, absurd norms, shapes: named by file
        layer = int(CAA_NAME.match(file.name).group(1))
        VectorSet({layer: vset.vectors[layer]}).checked_as(str(rel / file.name))
    return vset.checked_as(f"{rel}/vec_layer_<L>_{model}.pt")  # one size for all layers
