"""Decoding steps replayed from CUDA graphs (CudaGraphSteps), one graph per (cache, input shapes, steered
layers): the fast path's default on CUDA (fast_path.FastPath(cuda_graphs=True)) and the static-cache scheduler's
steps (static_batch.StaticBatch), one graph per batch-size bucket."""

from __future__ import annotations

import time
from typing import Any

import torch

from steering.decode.persistent import PersistentSteering


class CudaGraphSteps:
    """Decoding steps replayed from CUDA graphs, one per (cache, input shapes, steered layer).

    The first step of a key runs eagerly on a side stream (the warm-up CUDA graphs need), the second is
    captured and every later one replays it after copying the new inputs into the captured ones. The
    static cache keeps its tensors and write position on the device and the steering state lives in
    PersistentSteering's tensors, so a replay sees new multipliers, vectors and cache contents.
    """

    MAX_GRAPHS = 64

    def __init__(self, model: Any, steering: PersistentSteering) -> None:
        self.model = model
        self.steering = steering
        self.pool = torch.cuda.graph_pool_handle()  # graphs of all keys share one memory pool
        self.graphs: dict[tuple, tuple[Any, dict[str, Any], Any]] = {}
        self.warmed: set[tuple] = set()
        self.capture_seconds: list[float] = []
        self.version = steering.version

    def forget_cache(self, cache: Any) -> None:
        """Drop the graphs that write into `cache` (it is being freed; its id may be reused)."""
        for key in [k for k in self.graphs if k[0] == id(cache)]:
            del self.graphs[key]
        self.warmed = {k for k in self.warmed if k[0] != id(cache)}
        self._renew_pool()

    def _renew_pool(self) -> None:
        # A memory pool is released with its last graph; capturing into a released pool's handle fails
        # (CUDACachingAllocator "use_count > 0" assert), so an empty set of graphs starts a new pool.
        if not self.graphs:
            self.pool = torch.cuda.graph_pool_handle()

    def __call__(self, **kwargs: Any) -> Any:
        if self.version != self.steering.version:  # the steering tensors were reallocated (a larger batch)
            self.graphs.clear()
            self.warmed.clear()
            self.version = self.steering.version
            self._renew_pool()
        key = (
            id(kwargs["cache"]),
            self.steering.layers,
            *(tuple(v.shape) for v in kwargs.values() if isinstance(v, torch.Tensor)),
        )
        entry = self.graphs.get(key)
        if entry is None:
            if key not in self.warmed:
                self.warmed.add(key)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    out = self.model(**kwargs)
                torch.cuda.current_stream().wait_stream(side)
                return out
            start = time.perf_counter()
            static = {
                name: value.clone() if isinstance(value, torch.Tensor) else value for name, value in kwargs.items()
            }
            graph = torch.cuda.CUDAGraph()
            # thread_local: the app's other threads may touch CUDA while a request thread captures
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                out = self.model(**static)
            if len(self.graphs) >= self.MAX_GRAPHS:  # e.g. a long layer sweep: forget the oldest
                self.graphs.pop(next(iter(self.graphs)))
            entry = self.graphs[key] = (graph, static, out)
            self.capture_seconds.append(time.perf_counter() - start)
        graph, static, out = entry
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                static[name].copy_(value)
        graph.replay()
        return out
