"""The steering engine: a loaded model, its vectors, and the three-variant generation the CLI and app use."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from steering.config import PROJECT_ROOT, SteeringDefaults, model_defaults
from steering.errors import SteeringError
from steering.generation import GenerationResult, SamplingSettings, SteeringSpec, generate
from steering.layers import check_layer
from steering.models import LoadedModel, ModelSettings, load_model
from steering.prompts import Message
from steering.vector_files import VectorSet, available_behaviors, load_vectors, vector_path

# Row order of a comparison batch; the multiplier of each row is sign x alpha.
VARIANTS = ("added", "unsteered", "subtracted")
SIGNS = (1.0, 0.0, -1.0)

# Neutral prompts for measuring the typical hidden-state norm at a layer.
_NORM_PROMPTS = [
    "Tell me about the weather today.",
    "How do I make a cup of tea?",
    "What is the capital of France?",
    "Write a short poem about the sea.",
]


@dataclass
class Engine:
    lm: LoadedModel
    config: dict[str, Any]

    def __post_init__(self) -> None:
        self.defaults: SteeringDefaults = model_defaults(self.config, self.lm.name, self.lm.num_layers)
        self._vectors: dict[str, VectorSet] = {}
        self._norms: dict[int, float] = {}
        self._fast: dict[str, Any] = {}  # generate() arguments of the GPU fast path (compiled or graphed)
        from steering.fast_path import enable_fast_path, graphs_supported

        if self.lm.settings.compile:
            self._fast = enable_fast_path(self.lm)
        elif self.lm.settings.cuda_graphs and graphs_supported(self.lm):
            self._fast = enable_fast_path(self.lm, compile=False)

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> "Engine":
        return cls(load_model(ModelSettings.from_config(config["model"], **overrides)), config)

    # ------------------------------------------------------------------ vectors
    @property
    def vectors_dir(self) -> Path:
        return PROJECT_ROOT / self.config.get("vectors_dir", "vectors")

    def behaviors(self) -> list[str]:
        return available_behaviors(self.vectors_dir, self.lm.slug)

    def vectors_for(self, behavior: str) -> VectorSet:
        """The behavior's vector set for this model, loaded once and validated against the model."""
        if behavior not in self._vectors:
            path = vector_path(self.vectors_dir, behavior, self.lm.slug)
            if not path.exists():
                known = ", ".join(self.behaviors()) or "none yet"
                raise SteeringError(
                    f"no '{behavior}' vectors for {self.lm.name} ({path} missing); known behaviors: {known}; "
                    f"make them with: python -m steering extract --behavior {behavior}"
                )
            self._vectors[behavior] = self.validated(load_vectors(path))
        return self._vectors[behavior]

    def validated(self, vset: VectorSet) -> VectorSet:
        return vset.validate(self.lm.hidden_size, self.lm.num_layers)

    def load_vector_file(self, path: str | Path) -> VectorSet:
        return self.validated(load_vectors(path, self.lm.slug))

    def forget_vectors(self, behavior: str) -> None:
        self._vectors.pop(behavior, None)

    # ------------------------------------------------------------------ norms
    @torch.inference_mode()
    def hidden_norm(self, layer: int) -> float:
        """Typical L2 norm of the residual stream at `layer` (mean over tokens of neutral prompts)."""
        check_layer(layer, self.lm.num_layers)
        if layer not in self._norms:
            from steering.record import recording, run_truncated

            tok = self.lm.tokenizer
            norms = []
            with self.lm.lock, recording(self.lm.model, [layer]) as recorder:
                for prompt in _NORM_PROMPTS:
                    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True)
                    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
                    # skip the first token: attention-sink tokens have outsized norms
                    recorder.select(torch.zeros(ids.shape[1] - 1, dtype=torch.long), torch.arange(1, ids.shape[1]))
                    run_truncated(self.lm.model, input_ids=ids.to(self.lm.device))
                    norms.append(recorder.records[layer].norm(dim=-1))
            self._norms[layer] = float(torch.cat(norms).median())
        return self._norms[layer]

    def relative_norm(self, vector: torch.Tensor, layer: int) -> float:
        return float(vector.float().norm()) / self.hidden_norm(layer)

    # ------------------------------------------------------------------ generation
    def compare(
        self,
        conversations: Sequence[Sequence[Message]] | Sequence[Message],
        vector: torch.Tensor,
        layer: int,
        multiplier: float,
        settings: SamplingSettings,
        system_prompt: str | None = None,
        on_text: Callable[[list[str]], None] | None = None,
        stop_event: threading.Event | None = None,
    ) -> GenerationResult:
        """Added (+alpha), unsteered (0) and subtracted (-alpha) replies as one batch of three rows.

        `conversations` is either one conversation (shared by all rows) or three, one per row
        (the app's panes diverge after the first turn).
        """
        check_layer(layer, self.lm.num_layers)
        if conversations and isinstance(conversations[0], dict):
            conversations = [list(conversations)] * 3  # type: ignore[list-item]
        if len(conversations) != 3:
            raise ValueError(f"expected 1 or 3 conversations, got {len(conversations)}")
        return self._generate(conversations, settings, system_prompt,  # type: ignore[arg-type]
                              multipliers=[sign * multiplier for sign in SIGNS], steer=SteeringSpec(layer, vector),
                              on_text=on_text, stop_event=stop_event)

    def compare_batch(
        self,
        prompts: Sequence[str],
        vector: torch.Tensor,
        layer: int,
        multiplier: float,
        settings: SamplingSettings,
        system_prompt: str | None = None,
    ) -> list[dict[str, str]]:
        """compare() for many single-turn prompts at once: 3 rows per prompt in one batch."""
        check_layer(layer, self.lm.num_layers)
        conversations = [[{"role": "user", "content": p}] for p in prompts for _ in SIGNS]
        # Many rows at once: the fast path's compiled step is built for the app's few rows, so not here.
        texts = self._generate(conversations, settings, system_prompt, fast=False,
                               multipliers=[sign * multiplier for _ in prompts for sign in SIGNS],
                               steer=SteeringSpec(layer, vector)).texts
        return [dict(zip(VARIANTS, texts[i:i + 3])) for i in range(0, len(texts), 3)]

    def plain(self, conversation: Sequence[Message], settings: SamplingSettings,
              system_prompt: str | None = None) -> str:
        """One unsteered reply, no hook at all (the reference the unsteered pane must equal)."""
        return self._generate([list(conversation)], settings, system_prompt).texts[0]

    def _generate(self, conversations: Sequence[Sequence[Message]], settings: SamplingSettings,
                  system_prompt: str | None, fast: bool = True, **kwargs: Any) -> GenerationResult:
        """generate() under the model's lock, through the GPU fast path when it is on."""
        with self.lm.lock:
            return generate(self.lm.model, self.lm.tokenizer, conversations, settings=settings,
                            system_prompt=system_prompt, **(self._fast if fast else {}), **kwargs)
