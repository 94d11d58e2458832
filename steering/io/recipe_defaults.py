"""The per-model defaults file: vectors/<behavior>/<model-slug>.defaults.json holds the steering Recipe that
`steering tune` chose for that model and behavior, and how it was chosen (scores, search, data). The Engine reads
it (steering.engine); `tune` writes it atomically (steering.io.files.write_json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Mapping

from steering.core.limits import check_behavior_name
from steering.core.recipe import Recipe
from steering.errors import SteeringError
from steering.io.files import write_json

__all__ = ["DEFAULTS_SUFFIX", "DefaultsFile", "defaults_path", "load_defaults", "save_defaults"]

DEFAULTS_SUFFIX = ".defaults.json"


def defaults_path(vectors_dir: str | Path, behavior: str, model_slug: str) -> Path:
    """vectors/<behavior>/<model-slug>.defaults.json: the tuned recipe next to the behavior's vectors."""
    return Path(vectors_dir) / check_behavior_name(behavior) / f"{model_slug}{DEFAULTS_SUFFIX}"


@dataclass
class DefaultsFile:
    """The content of a defaults file: the recipe and how it was chosen (scores, search, data)."""

    recipe: Recipe
    info: dict[str, Any] = field(default_factory=dict)


def load_defaults(path: str | Path) -> DefaultsFile | None:
    """Read a defaults file; None when there is none. A broken file is a one-line SteeringError."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SteeringError(f"{path}: not a readable JSON defaults file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or "recipe" not in data:
        raise SteeringError(f"{path}: expected an object with a 'recipe' key")
    recipe = Recipe.from_dict(data["recipe"], where=f"{path}: recipe")
    return DefaultsFile(recipe, {k: v for k, v in data.items() if k != "recipe"})


def save_defaults(path: str | Path, recipe: Recipe, info: Mapping[str, Any] | None = None) -> Path:
    """Write the recipe (and `info`: model, scores, search, ...) to `path` atomically (steering.io.files)."""
    payload = {
        "recipe": recipe.to_dict(),
        **dict(info or {}),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(path, payload)
    return Path(path)
