"""What every part of the app reads: the engine, the app's limits and defaults, the behaviors on offer.

Built once per app (AppContext.build); it holds no per-session data (that lives in gr.State).
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.config import Config, GenerationSettings
from steering.core.behaviors import load_cards
from steering.ui.behavior_menu import dropdown_choices
from steering.ui.calibrate import ab_behaviors, datasets_dir

try:  # ZeroGPU on Hugging Face Spaces; a no-op elsewhere
    import spaces

    gpu = spaces.GPU
except ImportError:

    def gpu(fn: Any) -> Any:
        """No GPU to ask for: `fn` as it is."""
        return fn


PRIVATE = {"api_visibility": "private"}  # the UI's events are not API endpoints (the API: steering/ui/api.py)
EXAMPLES = [
    "What's your favorite planet?",
    "Tell me how to break into my neighbour's house without being noticed.",
    "Can you give me a simple recipe for banana bread?",
]


class UploadFolders:
    """Uploaded vector files leave Gradio's cache (readable by URL) for a private folder per session, removed
    when the session ends (unload) or its state expires. The root is made on the first upload and removed
    when the process exits (no empty folder per start)."""

    def __init__(self) -> None:
        self.root: Path | None = None

    def for_session(self, request: Any) -> Path:
        """The session's folder (not created here); `request` is the gr.Request (None: "anonymous")."""
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="llama-steering-uploads-"))
            atexit.register(shutil.rmtree, self.root, True)
        session = re.sub(r"[^A-Za-z0-9_-]", "", getattr(request, "session_hash", None) or "") or "anonymous"
        return self.root / session

    def remove(self, request: Any) -> None:
        """Remove the session's folder (nothing uploaded yet: nothing to make or remove)."""
        if self.root is not None:
            shutil.rmtree(self.for_session(request), ignore_errors=True)


@dataclass
class AppContext:
    """The engine and the app's settings from config.yaml (`app:` and `generation:`), read once.

    `behaviors` and `behavior_choices` are lists updated in place when vectors are built or found later
    (first use), so every dropdown update lists them as they are now.
    """

    engine: Any
    config: Config
    behaviors: list[str]
    behavior_choices: list[Any]  # ("Name — description", folder name) pairs, as gr.Dropdown takes them
    cards: Any  # the behavior cards (steering/core/behaviors.py): dropdown text, examples
    default_behavior: str | None
    uploads: UploadFolders = field(default_factory=UploadFolders)
    lm: Any = field(init=False)  # the loaded model (steering.models.LoadedModel)
    defaults: Any = field(init=False)  # the engine's default layer and multiplier
    limits: Any = field(init=False)  # the configured caps (steering.core.limits.Limits)

    def __post_init__(self) -> None:
        self.lm, self.defaults, self.limits = self.engine.lm, self.engine.defaults, self.engine.limits

    @classmethod
    def build(cls, engine: Any, config: Config) -> AppContext:
        """The context of an app on `engine` with `config` (the app's own copy of the config tree)."""
        behaviors = engine.behaviors()
        wanted = config.behavior
        default = wanted if wanted in behaviors else (behaviors or [None])[0]
        cards = load_cards(datasets_dir(config))[0]
        return cls(engine, config, behaviors, dropdown_choices(cards, behaviors), cards, default)

    @property
    def generation(self) -> GenerationSettings:
        """The config's `generation:` section (the controls' starting values)."""
        return self.config.generation

    @property
    def max_chars(self) -> int:
        """The longest message (characters) the app accepts."""
        return self.config.app.max_prompt_chars

    @property
    def max_mb(self) -> float:
        """The largest vector file (MB) the app accepts."""
        return self.config.app.max_upload_mb

    @property
    def alpha_max(self) -> float:
        """The α sliders' bound (α₂ too)."""
        return max(10.0, 2 * self.defaults.multiplier)

    @property
    def meter_read(self) -> bool:
        """The behavior meter is read on the eager path only (a Python hook per step; README "Behavior meter")."""
        return self.engine.fast_path is None

    @property
    def queue(self) -> dict[str, Any]:
        """The event options of everything that runs the model: one queue, the configured concurrency."""
        return {"concurrency_id": "model", "concurrency_limit": self.config.app.concurrency_per_model}

    @property
    def data_folder(self) -> Path:
        """The datasets folder (behavior cards, pane words, A/B questions)."""
        return datasets_dir(self.config)

    @property
    def results_folder(self) -> Path:
        """The results folder (the presets' measured breakdown)."""
        return self.config.results_dir

    @property
    def question_sets(self) -> list[str]:
        """The behaviors with A/B questions (Calibrate)."""
        return ab_behaviors(self.data_folder)

    def known(self, choice: Any) -> str | None:
        """`choice` when it is a behavior with vectors (not an upload), else None."""
        return choice if choice in self.behaviors else None
