"""The compiled (torch.compile) fast path in the multi-user static batch: the scheduler's StaticBatch steps run
through the compiled decoding step for the batch shapes compiled at start, and through the plain step otherwise.

Design (issue 12 item 1: "static cache sized for a maximum batch, graphs captured per batch-size bucket"):

* The step stays compiled with static shapes (FastPath: `dynamic=False`), one graph per (bucket rows, cache
  columns) shape, and `warm_up(buckets, lengths)` compiles the shapes it is told to before the first user
  (Engine start: enable_fast_path). A dynamic batch dimension (mark_dynamic) would be one compile, but its
  kernels are generic in the batch, the static cache's tensors and the steering tensors would need their own
  dynamic marks, and inductor's CUDA graphs still record per shape; it could not be checked on a GPU here.
* A scheduler step on a warmed shape runs the compiled step under `torch.compiler.set_stance
  ("eager_on_recompile")`: if a guard fails anyway (something changed that the compiled graph depends on), that
  step runs eagerly instead of compiling, so a user never waits behind a compile. Steps of any other shape run
  the plain step: replayed from CUDA graphs (cuda_graphs.CudaGraphSteps, 0.1 s per capture) on CUDA, the model's
  forward elsewhere. A compiled step that raises (no Triton, a compiler bug) is logged once, its shape leaves the
  warmed set and the plain step serves it from then on.
* The persistent steering tensors are grown to the largest warmed bucket before compiling, so set_rows never
  reallocates them later (a reallocation would change the tensors the compiled graph reads), and the fast path
  never evicts a warmed shape's static cache (transformers marks its tensors static: the graph guards on them).

Counters (tests, the bench): `compiled_steps`, `plain_steps`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import torch

from steering.decode.cuda_graphs import CudaGraphSteps

log = logging.getLogger(__name__)

# A warmed shape whose guards fail anyway runs eagerly instead of compiling (tests use "fail_on_recompile").
STANCE = "eager_on_recompile"


class CompiledBatchSteps:
    """The static batch's decoding step on a compiled fast path (see the module docstring).

    Args:
        fast: the fast_path.FastPath with `compiled` True (its decode_step is the compiled step).
    """

    def __init__(self, fast: Any) -> None:
        self.fast = fast
        self.ready: set[tuple[int, int]] = set()  # (rows, cache columns) compiled by warm_up
        self.graphs: CudaGraphSteps | None = None  # the plain step's CUDA graphs (CUDA only, made on first use)
        self.compiled_steps = self.plain_steps = 0
        self._warming = False

    @staticmethod
    def shape(kwargs: dict[str, Any]) -> tuple[int, int]:
        """A step's (rows, cache columns): input_ids (rows, 1), attention_mask (rows, columns)."""
        return int(kwargs["input_ids"].shape[0]), int(kwargs["attention_mask"].shape[1])

    def __call__(self, **kwargs: Any) -> Any:
        """One decoding step of the static batch (StaticBatch.forward's keyword arguments: input_ids (rows, 1),
        attention_mask (rows, columns), position_ids (rows, 1), cache, use_cache, logits_to_keep).

        Returns:
            The model's output (logits (rows, 1, vocab)).
        """
        shape = self.shape(kwargs)
        if self._warming:
            self.ready.add(shape)
            return self.fast.decode_step(**kwargs)
        if shape in self.ready:
            try:
                with torch.compiler.set_stance(STANCE):
                    out = self.fast.decode_step(**kwargs)
            except Exception as exc:  # noqa: BLE001 -- a compiler failure must not fail the users: plain step
                self.ready.discard(shape)
                log.warning(
                    "compiled step off for %s rows x %s columns, plain step: %s: %s", *shape, type(exc).__name__, exc
                )
            else:
                self.compiled_steps += 1
                return out
        self.plain_steps += 1
        return self.plain(**kwargs)

    def plain(self, **kwargs: Any) -> Any:
        """The uncompiled step: CUDA graphs on a CUDA model, the model's forward otherwise."""
        model = self.fast.model
        if next(model.parameters()).is_cuda:
            if self.graphs is None:
                self.graphs = CudaGraphSteps(model, self.fast.steering)
            return self.graphs(**kwargs)
        return model(**kwargs)

    def forget_cache(self, cache: Any) -> None:
        """Drop the plain step's CUDA graphs that write into `cache` (the fast path is freeing it)."""
        if self.graphs is not None:
            self.graphs.forget_cache(cache)

    def warm_rows(self, rows: Sequence[int]) -> float:
        """warm_up for the buckets holding each of `rows` batch sizes (static_batch.bucket_for), at the first cache
        length, skipping those warmed already (`bench --users N --fast-path --compile`: 3 panes x N users).
        Returns the seconds spent."""
        from steering.decode.static_batch import bucket_for

        buckets = sorted({bucket_for(int(n)) for n in rows} - {b for b, n in self.ready if n == self.fast.bucket})
        return self.warm_up(buckets, (self.fast.bucket,))

    def warm_up(self, buckets: Sequence[int], lengths: Sequence[int], steps: int = 3) -> float:
        """Compile the step for every (bucket, cache length) before the first user: `steps` steps of an empty
        static batch of each shape (the second and third record inductor's CUDA graphs).

        Args:
            buckets: batch buckets (static_batch.bucket_for values: 4, 8, 16, ...), in rows.
            lengths: cache lengths in tokens (rounded up to the fast path's length bucket).
            steps: decoding steps per shape.

        Returns:
            Seconds spent. A shape whose compile raises is logged and left to the plain step.
        """
        from steering.decode.static_batch import StaticBatch

        start = time.perf_counter()
        if buckets:
            self.fast.steering.ensure_capacity(max(buckets))
        for bucket in buckets:
            for length in lengths:
                batch = StaticBatch(self.fast.model, self.fast)
                batch._resize(int(bucket), int(length))  # normal tensors: the cache is reset outside inference
                self._warming = True
                try:
                    with torch.inference_mode(), batch.steering(self.fast.model, []):  # as the scheduler's steps
                        for _ in range(steps):
                            batch.forward(self.fast.model)
                except Exception as exc:  # noqa: BLE001 -- the plain step serves this shape
                    self.ready.discard((batch.bucket, batch.length))
                    log.warning(
                        "compiling the %s x %s batch step failed: %s: %s", bucket, length, type(exc).__name__, exc
                    )
                finally:
                    self._warming = False
                    self.fast.steering.clear()
        seconds = time.perf_counter() - start
        log.info("compiled batch steps %s warmed up in %.1f s", sorted(self.ready), seconds)
        return seconds
