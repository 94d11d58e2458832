"""The static-cache scheduler's running batch (steering/decode/scheduler.py on the fast path): the rows of several
requests decoding together in one transformers StaticCache of a fixed batch (a bucket: 4, 8, 16, 32, 48 rows, then
multiples of 16) and a fixed length, so every decoding step has the same shapes and a CUDA graph captured for the
bucket keeps replaying while requests come and go.

Layout: each request's rows occupy slots (batch rows of the cache); free slots are fed padding, see only their
own current column (no row's softmax is all -inf) and their outputs are ignored. The whole batch writes one cache
column per step, the shared write position t (each cache layer's `cumulative_length`, set in place); each row keeps
its own absolute rotary positions (position_ids) and its own attention mask row (1 on its tokens).

* A request joins after its own eager prefill (steering/decode/prefill.py): its K/V are copied into free slots,
  right-aligned to end at t (mask 1 on [t - P, t)); when its prompt is longer than t (P > t) every column is
  shifted right first.
* When t reaches the cache length, the columns are compacted: shifted left by the smallest first column any
  active row uses.
* A batch that needs more slots or columns than its cache has moves into a larger cache (the next bucket, the
  next multiple of the fast path's length bucket), its live columns copied.
* Steering: each slot carries its own request's vector, operator and multipliers in the fast path's persistent
  tensors (persistent.PersistentSteering.set_rows), reloaded only when the requests in the batch change.

`need()` says how many rows and columns the batch would need with more requests in it; the scheduler admits a
request only when that fits (scheduler max_rows / max_length), so nothing in the batch is ever overwritten.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

from steering.decode.batch_steering import cache_layers
from steering.decode.running import RunningBatch

BUCKETS = (4, 8, 16, 32, 48)


def bucket_for(rows: int) -> int:
    """The smallest batch bucket holding `rows` rows: 4, 8, 16, 32, 48, then the next multiple of 16."""
    for bucket in BUCKETS:
        if rows <= bucket:
            return bucket
    return -(-rows // 16) * 16


class StaticBatch:
    """Rows of several requests in one static cache (see the module docstring); the scheduler's running batch
    on the fast path, with RunningBatch's methods (forward, advance, drop, rows) and merge(prefilled, steps).

    Args:
        model: the causal LM.
        fast_path: its fast_path.FastPath (static caches, the decoding step, the persistent steering).
    """

    def __init__(self, model: Any, fast_path: Any) -> None:
        self.model, self.fast = model, fast_path
        self.cache: Any = None
        self.bucket = self.length = self.t = 0
        self.slots: list[int] = []  # the scheduler's row i sits in slot slots[i]
        self.first: dict[int, int] = {}  # slot -> the first cache column it uses
        self.left: dict[int, int] = {}  # slot -> the decoding steps it may still take
        device = next(model.parameters()).device
        self.ids = torch.zeros(0, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(0, 1, dtype=torch.long, device=device)
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=device)
        self.moves = 0  # column shifts and compactions so far (tests)
        self._index: torch.Tensor | None = None  # slots as a tensor (_slot_index)

    @property
    def rows(self) -> int:
        """The scheduler's rows in the batch (free slots not counted)."""
        return len(self.slots)

    def need(self, rows: int, width: int, steps: int) -> tuple[int, int]:
        """(rows, columns) the batch needs with `rows` more rows of a `width`-token prefill, `steps` more steps."""
        span = self.t - min(self.first.values()) if self.first else 0
        return len(self.slots) + rows, max(span, width) + max([steps, *self.left.values()])

    # ------------------------------------------------------------------ joining
    def merge(self, other: RunningBatch, steps: Sequence[int]) -> None:
        """Copy a prefilled RunningBatch's rows (DynamicCache, next inputs, positions, mask) into free slots,
        right-aligned to end at t; `steps[i]` is the most decoding steps its row i may take."""
        width = int(other.mask.shape[1])
        rows, span = self.need(other.rows, width, max(steps))
        if self.cache is None or rows > self.bucket or span > self.length:
            self._resize(max(bucket_for(rows), self.bucket), max(span, self.length))
        if not self.first:
            self._set_t(max(self.t, width))
        elif width > self.t:
            self._move(0, self.t, width - self.t)
        free = [s for s in range(self.bucket) if s not in self.first][: other.rows]
        index = torch.tensor(free, dtype=torch.long, device=self.mask.device)
        lo = self.t - width
        for mine, theirs in zip(self.cache.layers, cache_layers(other.cache)):
            mine.keys[index, :, lo : self.t] = theirs.keys.to(mine.keys.device, mine.keys.dtype)
            mine.values[index, :, lo : self.t] = theirs.values.to(mine.values.device, mine.values.dtype)
        self.mask[index] = 0
        self.mask[index, lo : self.t] = other.mask.to(self.mask.device)
        self.ids[index] = other.ids.to(self.ids.device)
        self.pos[index] = other.pos.to(self.pos.device)
        for slot, count in zip(free, steps):
            self.first[slot], self.left[slot] = lo, int(count)
        self.slots.extend(free)
        self._index = None

    def _resize(self, bucket: int, length: int) -> None:
        """Move into a cache of `bucket` slots and at least `length` columns (the fast path's caches); the live
        columns [first used, t) are copied to the start, each slot keeps its index."""
        old, lo = self.cache, (min(self.first.values()) if self.first else self.t)
        cache = self.fast.cache_factory(bucket, length)
        config = self.model.config
        heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        param = next(self.model.parameters())
        empty = torch.zeros(bucket, heads, 0, head_dim, dtype=param.dtype, device=param.device)
        for layer in cache.layers:
            if not layer.is_initialized:
                layer.lazy_initialization(empty, empty)
        live = self.t - lo
        if old is not None and live:
            for mine, theirs in zip(cache.layers, old.layers):
                mine.keys[: self.bucket, :, :live] = theirs.keys[:, :, lo : self.t]
                mine.values[: self.bucket, :, :live] = theirs.values[:, :, lo : self.t]
        new_length = int(cache.layers[0].max_cache_len)
        mask = self.mask.new_zeros(bucket, new_length)
        mask[: self.bucket, :live] = self.mask[:, lo : self.t]
        ids, pos = self.ids.new_zeros(bucket, 1), self.pos.new_zeros(bucket, 1)
        ids[: self.bucket], pos[: self.bucket] = self.ids, self.pos
        self.cache, self.bucket, self.length = cache, bucket, new_length
        self.mask, self.ids, self.pos = mask, ids, pos
        self.first = {slot: first - lo for slot, first in self.first.items()}
        self._set_t(live)

    def _move(self, lo: int, hi: int, by: int) -> None:
        """Shift cache columns [lo, hi) by `by` (right when > 0), every slot alike; t and first columns follow."""
        self.moves += 1
        for layer in self.cache.layers:
            for tensor in (layer.keys, layer.values):
                tensor[:, :, lo + by : hi + by] = tensor[:, :, lo:hi].clone()
        mask = torch.zeros_like(self.mask)
        mask[:, lo + by : hi + by] = self.mask[:, lo:hi]
        self.mask.copy_(mask)
        self.first = {slot: first + by for slot, first in self.first.items()}
        self._set_t(self.t + by)

    def _set_t(self, t: int) -> None:
        self.t = t
        for layer in self.cache.layers:  # in place: captured CUDA graphs read these tensors
            layer.cumulative_length.fill_(t)

    # ------------------------------------------------------------------ decoding
    @contextmanager
    def steering(self, model: Any, groups: Sequence[tuple[int, int, Any, list[int], Any]]) -> Iterator[None]:
        """The fast path's persistent hooks acting on this step, each request's plan on its own slots; `groups`
        as BatchSteering's (start, stop, plan, steer_from, meter) in the scheduler's row order (no meters here)."""
        steering = self.fast.steering
        entries = [(self.slots[start:stop], plan, steer_from) for start, stop, plan, steer_from, _ in groups]
        signature = (id(self), self.bucket, tuple((tuple(s), id(p), tuple(f)) for s, p, f in entries))
        if steering.signature != signature:
            steering.set_rows(entries, self.bucket)
            steering.signature = signature
        steering.active = True
        try:
            yield
        finally:
            steering.active = False

    def forward(self, model: Any) -> torch.Tensor:
        """One decoding step of every slot through the fast path's step (CUDA graph, compiled or plain forward);
        returns the scheduler's rows' (rows, vocab) float32 logits."""
        if self.t >= self.length:
            lo = min(self.first.values())
            if lo <= 0:  # the scheduler's admission (need) keeps this from happening; never overwrite a row
                raise RuntimeError("the static batch's cache is full: no column left to compact")
            self._move(lo, self.t, -lo)
        self.mask[:, self.t] = 1  # every slot sees the column written now (free slots: only that one)
        step = self.fast.batch_steps or self.fast.decode_step  # compiled: CompiledBatchSteps (compiled_batch.py)
        out = step(
            input_ids=self.ids,
            attention_mask=self.mask,
            position_ids=self.pos,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.t += 1  # the forward wrote column t (cumulative_length moved on with it)
        for slot in self.slots:
            self.left[slot] -= 1
        index = self._slot_index()
        return out.logits[:, -1, :].index_select(0, index.to(out.logits.device)).float()

    def advance(self, next_ids: torch.Tensor) -> None:
        """The next step's inputs: (rows, 1) tokens in the scheduler's row order, at the next positions."""
        index = self._slot_index()
        self.ids[index] = next_ids.to(self.ids.device)
        self.pos[index] += 1

    def drop(self, start: int, count: int) -> None:
        """Free the slots of the scheduler's rows start .. start + count - 1 (mask, inputs cleared)."""
        gone = self.slots[start : start + count]
        index = torch.tensor(gone, dtype=torch.long, device=self.ids.device)
        self.mask[index] = 0
        self.ids[index] = 0
        self.pos[index] = 0
        for slot in gone:
            del self.first[slot], self.left[slot]
        self.slots = self.slots[:start] + self.slots[start + count :]
        self._index = None

    def _slot_index(self) -> torch.Tensor:
        """The slots of the scheduler's rows as a device tensor, made again only when the rows change."""
        if self._index is None:
            self._index = torch.tensor(self.slots, dtype=torch.long, device=self.ids.device)
        return self._index
