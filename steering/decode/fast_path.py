"""GPU fast path: static KV cache + torch.compile, with steering that never forces a recompile.

`config.yaml: model.compile: true` (or `--compile`) makes the Engine generate through a FastPath:

* The steering hooks are registered once, on every decoder block, before compiling. Their state
  (a vector per block, zero where the block is not steered, and per block and row the add / project /
  target of hooks.apply_steering, plus the first steered position of each row) lives in tensors
  updated in place, so moving the alpha slider, the layer(s), the operator or the behavior changes
  data, not the graph: no recompile. With add and project at 0 the hooks change nothing (exactly),
  so plain generation goes through the same graph.
* The KV cache is a transformers StaticCache, one per (batch, length bucket), reused and reset
  between requests; the attention mask is padded to the cache length, so every decoding step has
  the same shapes (decoder.StaticDecoder does that for any static cache).
* The one-token decoding step runs compiled (inductor, CUDA graphs: mode "reduce-overhead"); the
  prompt (prefill) runs eager, since its length changes with every prompt.
* warm_up() compiles at start, so the first user does not wait for the compiler.

Without the compiler (`model.cuda_graphs`, on by default on CUDA): the same static cache and hooks,
and each decoding step replayed from a CUDA graph captured at the first steps of a (batch, cache
length, layer): about 0.1 s per capture instead of a minute of compiling, and no per-kernel launch
cost from Python. Only the steered block's hook runs there, so a new layer is a new capture. Opt-in,
`FastPath(compile_pieces=True)`: each block's RMSNorm and MLP run compiled in those steps (CompiledPieces:
~10 s of compiling on the first request, fewer small kernels per step; not the default, see its docstring).

On a CPU or for tests, `backend="eager"` (graph capture only) or `compile=False` (static cache and
persistent hooks, no compiler) exercise the same code paths quickly.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import torch

from steering.core.prompts import Message
from steering.decode.compiled_batch import CompiledBatchSteps
from steering.decode.compiled_pieces import CompiledPieces
from steering.decode.cuda_graphs import CudaGraphSteps
from steering.decode.decoder import StaticDecoder
from steering.decode.generation import GenerationResult, SamplingSettings, SteeringSpec, generate
from steering.decode.persistent import PersistentSteering

__all__ = ["CompiledPieces", "CudaGraphSteps", "FastPath", "PersistentSteering"]

log = logging.getLogger(__name__)


class FastPath:
    """Generation with a static KV cache, persistent steering hooks and a compiled or graphed decoding step.

    Any batch size works: a batch larger than `max_batch` grows the steering tensors (and, compiled,
    builds a graph for that batch, as any new batch size does). `takes(batch)` says whether a batch is
    worth routing here: the compiled step only for the batch sizes it was built for (a compile costs a
    minute with inductor), the CUDA-graph and static-cache steps for any batch.

    `compile_pieces` (off by default) compiles each block's RMSNorm and MLP for the one-token steps of the
    static-cache / CUDA-graph path (CompiledPieces, backend `pieces_backend`); `steering.remove()` takes the
    hooks and those away.
    """

    MAX_CACHES = 6  # static caches kept for reuse, least recently used dropped first

    def __init__(
        self,
        model: Any,
        compile: bool = True,
        backend: str = "inductor",
        mode: str | None = "reduce-overhead",
        bucket: int = 256,
        max_batch: int = 4,
        cuda_graphs: bool = False,
        compile_pieces: bool = False,
        pieces_backend: str = "inductor",
    ) -> None:
        self.model = model
        self.pieces: CompiledPieces | None = None  # compiled RMSNorm / MLP (opt-in, see CompiledPieces)
        self.bucket = bucket
        # hooks first, then compile
        self.steering = PersistentSteering(model, max_batch, skip_inactive=not compile)
        self.max_batch = max_batch
        self._caches: dict[tuple[int, int], Any] = {}
        self.compiled = compile
        self.compiles = 0  # graphs built by the compiler (counted by the backend wrapper)
        self.graphs: CudaGraphSteps | None = None
        if not compile:
            self.forward: Callable[..., Any] = model.forward
            if cuda_graphs:
                self.graphs = CudaGraphSteps(model, self.steering)
            if compile_pieces:
                self.pieces = CompiledPieces(model, backend=pieces_backend)
                self.steering.cleanups.append(self.pieces.remove)
        elif backend == "inductor":
            # Count compiles through dynamo's own counter; inductor keeps its CUDA-graph mode.
            self.forward = torch.compile(model.forward, backend="inductor", mode=mode, dynamic=False)
        else:
            inner = backend

            def counting(gm: Any, example_inputs: Any) -> Any:
                self.compiles += 1
                # torch._dynamo loads only once something compiles, not when the fast path is imported
                from torch._dynamo.backends.registry import lookup_backend

                return lookup_backend(inner)(gm, example_inputs)

            self.forward = torch.compile(model.forward, backend=counting, dynamic=False)
        self._backend = backend
        # the scheduler's static batch: compiled for the shapes warmed at start, plain otherwise (compiled_batch.py)
        self.batch_steps = CompiledBatchSteps(self) if compile else None

    # ------------------------------------------------------------------ pieces handed to generate()
    def cache_length(self, total: int) -> int:
        """The static cache length for `total` tokens (prompt + new tokens): rounded up to a multiple of `bucket`,
        so nearby lengths share one cache (and one compiled graph).
        """
        return -(-total // self.bucket) * self.bucket

    def cache_factory(self, batch: int, total: int) -> Any:
        """A transformers StaticCache for `batch` rows and at least `total` tokens, reused (reset) when one of that
        size exists; at most MAX_CACHES are kept, least recently used dropped first (StaticDecoder's cache_factory).

        Args:
            batch: rows in the generation.
            total: prompt length plus new tokens, in tokens.

        Returns:
            A reset transformers.StaticCache of length cache_length(total).
        """
        from transformers import StaticCache  # transformers not loaded by importing the fast path (engine stays light)

        key = (batch, self.cache_length(total))
        cache = self._caches.pop(key, None)
        if cache is None:
            # Bound the memory: at most MAX_CACHES caches, the least recently used dropped first, and one
            # cache of a batch larger than the app's few rows (a `steering test` batch is large and passing).
            keep = self.batch_steps.ready if self.batch_steps is not None else set()  # compiled for these caches
            spare = [k for k in self._caches if k not in keep]
            big = [k for k in spare if k[0] > self.max_batch] if batch > self.max_batch else []
            while spare and (big or len(spare) >= self.MAX_CACHES):
                victim = big.pop() if big else spare[0]
                spare.remove(victim)
                old = self._caches.pop(victim)
                for graphs in (self.graphs, self.batch_steps):
                    if graphs is not None:
                        graphs.forget_cache(old)
            cache = StaticCache(config=self.model.config, max_cache_len=key[1])
        else:
            cache.reset()
        self._caches[key] = cache  # most recently used last
        return cache

    def decoder(self, step: Callable[..., Any] | None = None) -> StaticDecoder:
        """This fast path's decoder backend (decoder.StaticDecoder): its static caches and its decoding step
        (`step`: a forward wrapping decode_step instead, e.g. one that records the logits)."""
        return StaticDecoder(self.model, self.cache_factory, step if step is not None else self.decode_step)

    def generate_kwargs(self) -> dict[str, Any]:
        """The generate() keyword arguments that route a call through this fast path (the benchmark)."""
        return {"decoder": self.decoder(), "steering_context": self.steering.context}

    def takes(self, batch: int) -> bool:
        """Whether a batch of `batch` rows should run here (see the class docstring)."""
        return not self.compiled or batch <= self.max_batch

    def decode_step(self, **kwargs: Any) -> Any:
        """One decoding step: the model's forward through the CUDA graph, the compiled or the plain forward.

        Args:
            kwargs: the model's forward keyword arguments (input_ids (batch, 1), position_ids, past_key_values, ...).

        Returns:
            The model's output (logits (batch, 1, vocab)), as StaticDecoder's step.
        """
        if self.graphs is not None:
            return self.graphs(**kwargs)
        if self.compiled and self._backend == "inductor" and next(self.model.parameters()).is_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        return self.forward(**kwargs)

    def graph_count(self) -> int:
        """Graphs compiled so far (for the inductor backend: dynamo's unique-graph counter, process-wide)."""
        if self.compiled and self._backend == "inductor":
            from torch._dynamo.utils import counters  # loaded once something compiled, as above

            return int(counters["stats"]["unique_graphs"])
        return self.compiles

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        tokenizer: Any,
        conversations: Sequence[Sequence[Message]],
        multipliers: Sequence[float] | None = None,
        steer: SteeringSpec | None = None,
        settings: SamplingSettings = SamplingSettings(),
        **kwargs: Any,
    ) -> GenerationResult:
        """generate() through the static cache, the persistent hooks and the fast decoding step.

        Unsteered generation (`steer` None) runs with every multiplier at 0, which adds an exact 0:
        the same graph as steered generation, so plain replies neither recompile nor recapture.
        """
        self.steering.clear()
        if steer is None:
            steer = SteeringSpec(self.steering.layer, torch.zeros_like(self.steering.vector))
            multipliers = [0.0] * len(conversations)
        return generate(
            self.model,
            tokenizer,
            conversations,
            multipliers=multipliers,
            steer=steer,
            settings=settings,
            decoder=self.decoder(),
            steering_context=self.steering.context,
            **kwargs,
        )

    def warm_up(
        self, tokenizer: Any, batches: Sequence[int] = (3, 1), layer: int = 0, max_new_tokens: int = 4
    ) -> float:
        """Compile the decoding step for each batch size (first length bucket) before the first user."""
        start = time.perf_counter()
        conversation = [{"role": "user", "content": "Hello"}]
        vector = torch.zeros(self.steering.vector.shape)
        for batch in batches:
            for _ in range(2):  # the second run records/replays the CUDA graph
                self.generate(
                    tokenizer,
                    [conversation] * batch,
                    multipliers=[1.0] * batch,
                    steer=SteeringSpec(layer, vector),
                    settings=SamplingSettings(max_new_tokens=max_new_tokens),
                    ignore_eos=True,
                )
        seconds = time.perf_counter() - start
        log.info("fast path warmed up in %.1f s", seconds)
        return seconds
