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
        """The behavior's vector set for this model, loaded once and validated against the model.

        Args:
            behavior: a behavior name (steering.limits.check_behavior_name), never a path.

        Raises:
            SteeringError: invalid name, no vectors, or a file that does not fit the model. The message
                names no server path and no shell command (it may reach remote callers); the local
                details (file path, the command that makes the vectors) are in the error's `detail`.
        """
        if behavior not in self._vectors:
            path = vector_path(self.vectors_dir, behavior, self.lm.slug)  # refuses names that are not names
            if not path.exists():
                known = ", ".join(self.behaviors()) or "none yet"
                raise SteeringError(
                    f"no '{behavior}' vectors for {self.lm.name}; known behaviors: {known}",
                    detail=f"{path} is missing; make them with: python -m steering extract --behavior {behavior}",
                )
            try:
                vset = self.validated(load_vectors(path, self.lm.name, label=f"the '{behavior}' vectors"))
            except SteeringError as exc:
                raise SteeringError(str(exc), detail=f"file: {path}") from None
            self._vectors[behavior] = vset
        return self._vectors[behavior]

    def validated(self, vset: VectorSet) -> VectorSet:
        """`vset` checked against this model: sizes, layers, finite values, and norms bounded relative to
        the typical hidden-state norm at each layer (vector_files.MAX_RELATIVE_NORM); raises SteeringError."""
        vset.validate(self.lm.hidden_size, self.lm.num_layers)  # cheap checks before any model run
        return vset.validate(self.lm.hidden_size, self.lm.num_layers, hidden_norms=self.hidden_norms(vset.layers))

    def load_vector_file(self, path: str | Path, label: str | None = None) -> VectorSet:
        """A vector file or paper-layout folder (picking this model's files), validated against the model.

        Args:
            path: .safetensors, .gguf, .pt or a folder of vec_layer_<L>_<model>.pt files.
            label: how messages name the file instead of its path (e.g. the upload's own file name).
        """
        return self.validated(load_vectors(path, self.lm.name, label=label))

    def forget_vectors(self, behavior: str) -> None:
        self._vectors.pop(behavior, None)

    # ------------------------------------------------------------------ norms
    def hidden_norm(self, layer: int) -> float:
        """Typical L2 norm of the residual stream at `layer` (median over tokens of neutral prompts)."""
        check_layer(layer, self.lm.num_layers)
        return self.hidden_norms([layer])[layer]

    @torch.inference_mode()
    def hidden_norms(self, layers: Sequence[int]) -> dict[int, float]:
        """hidden_norm for several layers, measured in one pass per prompt and cached.

        Args:
            layers: decoder block indices (0..num_layers - 1).

        Returns:
            {layer: median L2 norm of that block's output over the tokens of 4 neutral chat prompts,
            the first token (an attention sink with outsized norm) left out}.
        """
        missing = sorted({check_layer(layer, self.lm.num_layers) for layer in layers} - set(self._norms))
        if missing:
            from steering.record import recording, run_truncated

            tok = self.lm.tokenizer
            norms: dict[int, list[torch.Tensor]] = {layer: [] for layer in missing}
            with self.lm.lock, recording(self.lm.model, missing) as recorder:
                for prompt in _NORM_PROMPTS:
                    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True)
                    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
                    # skip the first token: attention-sink tokens have outsized norms
                    recorder.select(torch.zeros(ids.shape[1] - 1, dtype=torch.long), torch.arange(1, ids.shape[1]))
                    run_truncated(self.lm.model, input_ids=ids.to(self.lm.device))
                    for layer in missing:
                        norms[layer].append(recorder.records[layer].norm(dim=-1))
            for layer in missing:
                self._norms[layer] = float(torch.cat(norms[layer]).median())
        return {layer: self._norms[layer] for layer in layers}

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
