"""From chosen tokens to replies: the token reader (synchronous or lookahead), each row's reply
bookkeeping (end of sequence, streaming text) and the final texts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, cast

import torch

if TYPE_CHECKING:  # transformers' own types, for mypy; not imported at run time (import stays light)
    from transformers import PreTrainedTokenizerBase


def host_tokens(chosen: torch.Tensor, into: torch.Tensor | None = None) -> Callable[[], list[int]]:
    """Start bringing (rows,) chosen tokens to the host; returns the reader (a host list of ints).

    On CUDA the copy goes to pinned memory (`into`, a pinned (rows,) tensor of chosen's dtype, or a new one)
    with an event of its own, so reading waits for this step only, not for a step queued after it; elsewhere
    the reader is a plain .tolist() (synchronous). Used by TokenReader and the Scheduler's lookahead."""
    if chosen.device.type != "cuda":
        return chosen.tolist
    host = into if into is not None else torch.empty(chosen.shape, dtype=chosen.dtype, pin_memory=True)
    host.copy_(chosen, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()

    def read() -> list[int]:
        ready.synchronize()
        return host.tolist()

    return read


class TokenReader:
    """Runs a generation's steps and brings each step's chosen tokens to the host.

    Synchronous: queue step k, read its tokens, queue step k+1. Lookahead: queue step k+1 before
    reading step k's tokens (the one host sync per step), so streaming and bookkeeping overlap the
    device's work instead of stalling it; the tokens are the same. On CUDA each step's tokens go to
    pinned host memory with an event of their own, so reading them waits for that step only, not for
    the next one queued behind it (as a plain .tolist() would).

    Args:
        device: the device the tokens are chosen on.
        lookahead: queue the next step before reading this one's tokens; None: on CUDA devices only.
    """

    def __init__(self, device: torch.device, lookahead: bool | None = None) -> None:
        self.lookahead = device.type == "cuda" if lookahead is None else bool(lookahead)
        self.pinned = self.lookahead and device.type == "cuda"
        self.buffers: list[torch.Tensor] = []
        self.stopped = False  # set when `stop` ended the steps early

    def steps(
        self, launch: Callable[[int], torch.Tensor], count: int, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[list[int]]:
        """Yield the host tokens of step 0, 1, ... count - 1.

        Args:
            launch: queues step k (its forward pass and token choice) and returns the chosen (rows,) tokens.
            count: the most steps (max_new_tokens).
            stop: checked before each step; True ends the steps (and sets `stopped`).
        """
        pending: Callable[[], list[int]] | None = None
        for step in range(count):
            if stop():
                self.stopped = True
                return
            read = pending if pending is not None else self._queue(launch(step), step)
            pending = self._queue(launch(step + 1), step + 1) if self.lookahead and step + 1 < count else None
            yield read()

    def _queue(self, chosen: torch.Tensor, step: int) -> Callable[[], list[int]]:
        if not self.pinned:
            return chosen.tolist
        if not self.buffers:
            self.buffers = [torch.empty(chosen.shape[0], dtype=torch.long, pin_memory=True) for _ in range(2)]
        # step k+1 writes the other buffer; step k+2 comes after k is read
        return host_tokens(chosen, self.buffers[step % 2])


def decode_texts(tokenizer: PreTrainedTokenizerBase, generated: list[list[int]]) -> list[str]:
    """Each row's final text: its token ids decoded, special tokens skipped, whitespace stripped."""
    return [cast(str, tokenizer.decode(ids, skip_special_tokens=True)).strip() for ids in generated]


class StreamingText:
    """Each row's text while it grows, decoding only the new tokens (not the whole row) per step.

    The usual incremental detokenizer: decode a short window before the new tokens and after them,
    and append the difference; wait while the tail is an incomplete UTF-8 sequence (up to 4 tokens). The final texts
    of a generation come from a full decode (decode_texts), so streaming never changes the result.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, batch: int) -> None:
        self.tokenizer = tokenizer
        self.text = [""] * batch
        self.prefix = [0] * batch  # start of the context window
        self.read = [0] * batch  # tokens already turned into text
        self.shown = [""] * batch

    def update(self, generated: list[list[int]]) -> list[str]:
        """The rows' texts after `generated` (each row's token ids so far), decoding only what is new."""
        for row, ids in enumerate(generated):
            if len(ids) == self.read[row]:
                continue
            decode = self.tokenizer.decode
            before = cast(str, decode(ids[self.prefix[row] : self.read[row]], skip_special_tokens=True))
            after = cast(str, decode(ids[self.prefix[row] :], skip_special_tokens=True))
            # wait (a few tokens at most) while the tail is an incomplete UTF-8 character
            pending = len(ids) - self.read[row]
            if len(after) > len(before) and (not after.endswith("\ufffd") or pending >= 4):
                self.text[row] += after[len(before) :]
                self.prefix[row] = self.read[row]
                self.read[row] = len(ids)
                self.shown[row] = self.text[row].strip()
        return list(self.shown)


class Replies:
    """The rows' replies while they are generated: tokens kept until each row's end-of-sequence token
    (not kept), and the streamed texts.

    Args:
        tokenizer: decodes the texts.
        rows: batch rows.
        eos: end-of-sequence token ids (empty: rows run to max_new_tokens).
        on_text: called with every row's text after each step (None: no streaming).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        rows: int,
        eos: set[int],
        on_text: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.eos = eos
        self.on_text = on_text
        self.generated: list[list[int]] = [[] for _ in range(rows)]
        self.finished = [False] * rows
        self.steps = 0  # steps taken (tokens chosen per row)
        self.streaming = StreamingText(tokenizer, rows) if on_text is not None else None

    def take(self, tokens: list[int]) -> None:
        """Record one step's chosen token of every row, then stream the texts (on_text may raise)."""
        self.steps += 1
        for row, token in enumerate(tokens):
            if self.finished[row]:
                continue
            if token in self.eos:
                self.finished[row] = True
            else:
                self.generated[row].append(token)
        if self.streaming is not None and self.on_text is not None:
            self.on_text(self.streaming.update(self.generated))

    @property
    def all_finished(self) -> bool:
        """Every row has reached its end-of-sequence token."""
        return all(self.finished)

    def texts(self) -> list[str]:
        """The final texts (a full decode of each row)."""
        return decode_texts(self.tokenizer, self.generated)
