"""Steering vector sets: VectorSet (vectors by layer, with metadata), the checks every reader and writer
applies, and the comparison of two sets (cosine_by_layer).

The file formats live in their own modules: the project's safetensors file (steering.io.vector_files), the
paper's .pt layout (steering.io.caa_pt), GGUF control vectors (steering.io.gguf_vectors); steering.io.vector_store
reads any of them (load_vectors). Every writer checks the set first (check_writable: non-empty, 1-D, one size,
finite, bounded) and reads the written file back before it replaces anything (write_checked), so no file is
written that the loaders would reject.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch

from steering.core.limits import Limits
from steering.errors import SteeringError
from steering.io.files import atomic_write

# Bounds on a vector's size. Two tiers:
# 1. Without a model (VectorSet.validate): the hooks add alpha * v with |alpha| up to the multiplier cap,
#    and the models' RMSNorm squares the result in float32; above this norm the squares overflow to inf
#    and every steered answer comes back empty, so no such vector is usable at any allowed multiplier.
VECTOR_NORM_CEILING = math.sqrt(torch.finfo(torch.float32).max) / Limits().max_abs_multiplier  # ~1.8e17
# 2. With a model (Engine.validated, through `hidden_norms`): a CAA vector is a difference of mean
#    activations, so its norm is at most about twice the layer's typical hidden-state norm (measured on
#    the shipped SmolLM2 refusal vectors: 0.12x-0.28x). Beyond 100x (50 times that headroom, room for
#    pre-scaled vectors) the vector swamps the residual stream at any useful multiplier: a scaling error.
MAX_RELATIVE_NORM = 100.0


@dataclass
class VectorSet:
    """Steering vectors by layer, as load_vectors reads and extract_vectors' result is saved.

    Attributes:
        vectors: {0-based decoder block index: (hidden_size,) float32 tensor}, residual-stream units
            (CAA vectors, Rimsky et al. 2023, arXiv 2312.06681, section 3: multiplier 1 adds one).
        metadata: string key/value pairs stored with the file (model, behavior, method, created, ...).
        source: how messages name where the set came from (a file path or a label); "" when built in memory.

    Example:
        >>> vset = VectorSet({9: vecs[9]}, {"behavior": "refusal"})  # doctest: +SKIP
        >>> vset.vector(9).shape, vset.layers  # doctest: +SKIP
        (torch.Size([576]), [9])
    """

    vectors: dict[int, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def hidden_size(self) -> int:
        """The vectors' length (the model's hidden size), from the first layer's vector."""
        return int(next(iter(self.vectors.values())).shape[0])

    @property
    def layers(self) -> list[int]:
        """The layers that have a vector, sorted."""
        return sorted(self.vectors)

    def vector(self, layer: int) -> torch.Tensor:
        """The steering vector for `layer`: (hidden_size,) tensor, residual-stream units.

        Raises:
            SteeringError: the set has no vector for that layer (the message lists the layers it has).
        """
        if layer not in self.vectors:
            raise SteeringError(
                f"{self.source or 'vector set'} has no vector for layer {layer} "
                f"(it has layers {layer_ranges(self.layers)})"
            )
        return self.vectors[layer]

    def validate(self, hidden_size: int, num_layers: int, hidden_norms: Mapping[int, float] | None = None) -> VectorSet:
        """Check the set fits a model: sizes match, values finite, norms bounded, layers in range.

        Args:
            hidden_size: the model's hidden size (each vector must have this many elements).
            num_layers: the model's decoder blocks (layers must be 0..num_layers - 1).
            hidden_norms: the model's typical hidden-state L2 norm per layer (Engine.hidden_norms); when
                given, a vector longer than MAX_RELATIVE_NORM times it is refused.

        Returns:
            self, for chaining.

        Raises:
            SteeringError: one line naming the layer and what is wrong (empty set, shape, size, NaN/inf,
                norm over VECTOR_NORM_CEILING or over MAX_RELATIVE_NORM x the hidden-state norm, layer range).
        """
        name = self.source or "vector set"
        self._check_contents(name)
        for layer, vec in self.vectors.items():
            if vec.shape[0] != hidden_size:
                raise SteeringError(
                    f"{name}: layer {layer}: vector size {vec.shape[0]} does not match the model's hidden size "
                    f"{hidden_size}"
                )
            if not 0 <= layer < num_layers:
                raise SteeringError(f"{name}: layer {layer} is out of range: the model has layers 0..{num_layers - 1}")
        if hidden_norms:
            for layer in self.layers:
                typical = hidden_norms.get(layer)
                if not typical:
                    continue
                norm = float(self.vectors[layer].double().norm())
                if norm > MAX_RELATIVE_NORM * typical:
                    raise SteeringError(
                        f"{name}: layer {layer}: vector norm {norm:.3g} is {norm / typical:.3g}x the model's typical "
                        f"hidden-state norm there ({typical:.3g}); the limit is {MAX_RELATIVE_NORM:g}x "
                        "(the file is probably scaled wrongly)"
                    )
        return self

    def checked(self) -> VectorSet:
        """The model-independent checks every reader applies (not empty, 1-D, one size, finite, norm bounded).

        Returns:
            self, for chaining.

        Raises:
            SteeringError: one line naming the layer and what is wrong (as VectorSet.validate).
        """
        return self.checked_as(self.source or "vector set")

    def checked_as(self, name: str) -> VectorSet:
        """checked(), naming the set `name` in messages (e.g. the one file of a folder that is wrong)."""
        self._check_contents(name)
        return self

    def _check_contents(self, name: str) -> None:
        """Model-independent checks: not empty, 1-D, one size, finite, norm under VECTOR_NORM_CEILING."""
        if not self.vectors:
            raise SteeringError(f"{name}: contains no vectors")
        sizes = set()
        for layer in self.layers:
            vec = self.vectors[layer]
            if vec.ndim != 1:
                raise SteeringError(f"{name}: layer {layer}: expected a 1-D vector, found shape {tuple(vec.shape)}")
            if not torch.isfinite(vec).all():
                raise SteeringError(f"{name}: layer {layer}: vector contains NaN or infinite values")
            norm = float(vec.double().norm())
            if not norm <= VECTOR_NORM_CEILING:
                raise SteeringError(
                    f"{name}: layer {layer}: vector norm {norm:.3g} is too large (limit {VECTOR_NORM_CEILING:.3g}): "
                    "steering with it would overflow the model's numbers (the file is probably scaled wrongly)"
                )
            sizes.add(int(vec.shape[0]))
        if len(sizes) > 1:
            raise SteeringError(f"{name}: vectors of different sizes ({', '.join(map(str, sorted(sizes)))})")


def layer_ranges(layers: Iterable[int]) -> str:
    """'0..8, 10..29' for [0..8, 10..29]; runs shorter than 3 are listed ('1, 2, 5')."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{r[0]}..{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def as_vector(value: object, name: str) -> torch.Tensor:
    """A loaded value as a 1-D float32 CPU tensor ((1, n) and (n, 1) are flattened); `name` is for messages.

    Raises:
        SteeringError: the value is not a tensor.
    """
    if not isinstance(value, torch.Tensor):
        raise SteeringError(f"{name}: expected a tensor, found {type(value).__name__}")
    if value.ndim == 2 and 1 in value.shape:
        value = value.reshape(-1)
    return value.detach().float().cpu()


def check_writable(vset: VectorSet, path: Path) -> None:
    """Refuse to write a set the loaders would reject (empty, negative layers, bad shapes or numbers)."""
    vset._check_contents(str(path))
    negative = [layer for layer in vset.layers if layer < 0]
    if negative:
        raise SteeringError(f"{path}: layer {negative[0]} is negative")


def check_read_back(written: VectorSet, expected: VectorSet, path: Path) -> None:
    """Compare a file read back after writing with the set meant to be written.

    Raises:
        SteeringError: the written file holds other layers (nothing was replaced).
    """
    if written.layers != expected.layers:
        raise SteeringError(
            f"{path}: the written file holds layers {layer_ranges(written.layers) or 'none'}, "
            f"not {layer_ranges(expected.layers)}; nothing was replaced"
        )


def write_checked(
    path: Path, expected: VectorSet, write: Callable[[str], None], read: Callable[..., VectorSet]
) -> Path:
    """Write a vector file atomically, replacing `path` only once the new file reads back as `expected`.

    Args:
        path: the file to write (steering.io.files.atomic_write: a temporary file, then a rename).
        expected: the set being written (check_writable has passed); the file read back must hold its layers.
        write: writes the file to the temporary path it is given.
        read: a loader of the format, called as read(Path(tmp), label=str(path)).

    Returns:
        Path: `path`.

    Raises:
        SteeringError: the file does not read back, or holds other layers (nothing was replaced).
    """

    def write_and_check(tmp: str) -> None:
        write(tmp)
        check_read_back(read(Path(tmp), label=str(path)), expected, path)

    atomic_write(path, write_and_check)
    return path


def cosine_by_layer(a: VectorSet, b: VectorSet) -> dict[int, float]:
    """Cosine similarity of two vector sets at every layer they share.

    Args:
        a, b: vector sets; each layer's vector (hidden_size,).

    Returns:
        {layer: cosine in [-1, 1]}, layers ascending.

    Raises:
        SteeringError: no layer in common, or vectors of different sizes at a layer.
    """
    common = sorted(set(a.vectors) & set(b.vectors))
    if not common:
        raise SteeringError(f"{a.source} and {b.source} have no layer in common")
    out = {}
    for layer in common:
        va, vb = a.vectors[layer], b.vectors[layer]
        if va.shape != vb.shape:
            raise SteeringError(f"layer {layer}: vector sizes differ ({va.shape[0]} vs {vb.shape[0]})")
        # float64 and normalised first: float32 norms of large (yet allowed) vectors overflow to inf -> 0.0
        da, db = va.double(), vb.double()
        da, db = da / da.norm().clamp_min(1e-300), db / db.norm().clamp_min(1e-300)
        out[layer] = float(torch.dot(da, db).clamp(-1.0, 1.0))
    return out
