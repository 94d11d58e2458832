"""Plain helpers for the web app (no Gradio import): chat histories, input checks, per-request settings.

Everything a request needs is passed in explicitly, so two users never share a vector or a multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from steering.errors import SteeringError
from steering.generation import SamplingSettings
from steering.prompts import Message

UPLOAD_PREFIX = "Uploaded: "
PANE_TITLES = ("Added steering", "Unsteered", "Subtracted steering")


def text_of(content: Any) -> str:
    """A chat message's text; Gradio may send content as a string, a block, or a list of blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(text_of(part) for part in content)
    return str(content)


def conversation(history: Sequence[Any] | None) -> list[Message]:
    """A pane's chat history as engine messages (only user/assistant turns with text)."""
    messages = []
    for item in history or []:
        role = item.get("role") if isinstance(item, dict) else getattr(item, "role", None)
        content = item.get("content") if isinstance(item, dict) else getattr(item, "content", None)
        if role in ("user", "assistant"):
            messages.append({"role": role, "content": text_of(content)})
    return messages


def pane_labels(alpha: float) -> tuple[str, str, str]:
    a = f"{abs(float(alpha)):g}"
    return (f"{PANE_TITLES[0]} (+α = +{a})", f"{PANE_TITLES[1]} (α = 0)", f"{PANE_TITLES[2]} (−α = −{a})")


def trim_prompt(prompt: str | None, max_chars: int) -> tuple[str, bool]:
    """The prompt stripped and cut to max_chars; the flag says whether it was cut."""
    text = (prompt or "").strip()
    return (text[:max_chars].rstrip(), True) if len(text) > max_chars else (text, False)


def sampling(max_new_tokens: Any, temperature: Any, top_p: Any, seed: Any, random_seed: bool = False) -> SamplingSettings:
    try:
        return SamplingSettings(
            max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_p=float(top_p),
            seed=None if random_seed or seed in (None, "") else int(seed),
        )
    except (TypeError, ValueError) as exc:
        raise SteeringError(f"generation settings: {exc}") from None


def check_upload(engine: Any, path: str | Path | None, max_mb: float) -> str:
    """Validate an uploaded vector file against the size limit and the model; a one-line SteeringError if not."""
    if not path:
        raise SteeringError("no file uploaded")
    path = Path(path)
    size_mb = path.stat().st_size / 2**20
    if size_mb > max_mb:
        raise SteeringError(f"{path.name} is {size_mb:.1f} MB; the limit is {max_mb:g} MB")
    try:
        vset = engine.load_vector_file(path)
    except SteeringError as exc:
        # the upload's temporary folder means nothing to the user: name the file only
        raise SteeringError(str(exc).replace(str(path), path.name)) from None
    return f"{path.name}: layers {_layer_text(vset.layers)}"


def _layer_text(layers: list[int]) -> str:
    if layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(map(str, layers))


@dataclass(frozen=True)
class VectorChoice:
    """Which vector a request uses: a shipped behavior name or an uploaded file's path."""

    behavior: str | None
    upload: str | None

    @classmethod
    def parse(cls, choice: str | None, uploads: dict[str, str] | None) -> "VectorChoice":
        uploads = uploads or {}
        if choice and choice in uploads:
            return cls(None, uploads[choice])
        return cls(choice or None, None)

    def vector_set(self, engine: Any) -> Any:
        """The whole validated VectorSet (all layers) of this choice."""
        if self.upload:
            try:
                return engine.load_vector_file(self.upload)
            except SteeringError as exc:
                raise SteeringError(str(exc).replace(str(self.upload), Path(self.upload).name)) from None
        if self.behavior:
            return engine.vectors_for(self.behavior)
        raise SteeringError("choose a steering vector (or upload one under Advanced)")

    def vector(self, engine: Any, layer: int) -> torch.Tensor:
        vset = self.vector_set(engine)
        try:
            return vset.vector(int(layer))
        except SteeringError as exc:
            raise SteeringError(str(exc).replace(str(self.upload), Path(self.upload).name) if self.upload else str(exc)) from None


def norm_note(engine: Any, vector: torch.Tensor, layer: int, alpha: float) -> str:
    rel = engine.relative_norm(vector, int(layer))
    return (f"Vector size at layer {int(layer)}: **{rel:.2f}×** a typical hidden state there, "
            f"so α = {float(alpha):g} adds **{rel * abs(float(alpha)):.2f}×** (too much garbles the text: on the "
            "embedded SmolLM2 it starts to loop from about 0.3× and garbles by 0.6×).")
