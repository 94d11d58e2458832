"""Reading, validating and writing steering vector files.

Formats:
- the project's safetensors: one tensor per layer named "layer.<L>", metadata strings;
- the paper's layout: vec_layer_<L>_<model>.pt, one 1-D tensor per file (read with weights_only=True).
  The paper's code (Rimsky et al. 2023) names files after the hub id's basename, e.g.
  vec_layer_13_Llama-2-7b-chat-hf.pt, and keeps several models' files in one folder;
- GGUF control vectors (repeng / llama.cpp --control-vector): tensors "direction.<L>", L = decoder block index.

Every writer checks the set first (non-empty, 1-D, one size, finite, bounded) and reads the written file
back before it replaces anything, so no file is written that the loaders would reject.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterable, Mapping

import torch

from steering.core.limits import Limits, check_behavior_name
from steering.errors import SteeringError
from steering.io.files import atomic_write

_CAA_NAME = re.compile(r"^vec_layer_(\d+)(?:_(.+))?\.pt$")
_DIRECTION = re.compile(r"^direction\.(\d+)$")
_LAYER_KEY = re.compile(r"^layer\.(\d+)$")

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
    """Steering vectors by layer (decoder block index -> 1-D float32 tensor of the hidden size)."""

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
                f"{self.source or 'vector set'} has no vector for layer {layer} (it has layers {_ranges(self.layers)})"
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


def _ranges(layers: Iterable[int]) -> str:
    """'0..8, 10..29' for [0..8, 10..29]; runs shorter than 3 are listed ('1, 2, 5')."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{r[0]}..{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _as_vector(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise SteeringError(f"{name}: expected a tensor, found {type(value).__name__}")
    if value.ndim == 2 and 1 in value.shape:
        value = value.reshape(-1)
    return value.detach().float().cpu()


def _check_writable(vset: VectorSet, path: Path) -> None:
    """Refuse to write a set the loaders would reject (empty, negative layers, bad shapes or numbers)."""
    vset._check_contents(str(path))
    negative = [layer for layer in vset.layers if layer < 0]
    if negative:
        raise SteeringError(f"{path}: layer {negative[0]} is negative")


def _read_back(written: VectorSet, expected: VectorSet, path: Path) -> None:
    if written.layers != expected.layers:
        raise SteeringError(
            f"{path}: the written file holds layers {_ranges(written.layers) or 'none'}, "
            f"not {_ranges(expected.layers)}; nothing was replaced"
        )


# ---------------------------------------------------------------- model names in file names


def normalize_model_name(name: str) -> str:
    """A model name for comparisons: hub-id basename, lower case, runs of other characters -> '-'.

    'meta-llama/Llama-2-7b-chat-hf', 'Llama-2-7b-chat-hf' and 'llama_2_7b_chat_hf' all give
    'llama-2-7b-chat-hf'.
    """
    base = str(name).replace("\\", "/").rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")


# ---------------------------------------------------------------- safetensors (the project's format)


def save_safetensors(vset: VectorSet, path: str | Path) -> Path:
    """Write `vset` as the project's safetensors file (tensors 'layer.<L>', metadata strings), atomically.

    Raises:
        SteeringError: the set is empty or holds non-finite / absurd vectors, or the file does not read back.
    """
    from safetensors.torch import save_file

    path = Path(path)
    _check_writable(vset, path)
    metadata = {k: str(v) for k, v in vset.metadata.items()}
    metadata.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    metadata["layers"] = json.dumps(vset.layers)
    tensors = {f"layer.{layer}": vec.detach().float().contiguous().cpu() for layer, vec in vset.vectors.items()}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=metadata)
        _read_back(load_safetensors(Path(tmp), label=str(path)), vset, path)

    atomic_write(path, write)
    return path


def load_safetensors(path: Path, label: str | None = None) -> VectorSet:
    """Read the project's safetensors vector file; `label` names it in messages (default: the path)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    name = label or str(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SteeringError(f"{name}: not a readable safetensors file ({exc})") from None
    vectors = {}
    for key, value in tensors.items():
        match = _LAYER_KEY.match(key) or _DIRECTION.match(key)
        if not match:
            raise SteeringError(f"{name}: unexpected tensor '{key}' (expected names like 'layer.12')")
        vectors[int(match.group(1))] = _as_vector(value, f"{name}: {key}")
    metadata.pop("layers", None)
    return VectorSet(vectors, metadata, name)


# ---------------------------------------------------------------- the paper's .pt layout


def caa_filename(layer: int, model: str) -> str:
    """The paper's file name for one layer: vec_layer_<L>_<hub-id basename>.pt.

    Args:
        layer: decoder block index.
        model: a hub id ('meta-llama/Llama-2-7b-chat-hf') or a model name; only its basename is used, as in
            the paper's code, with characters other than letters, digits, '.', '_' and '-' replaced by '-'.
    """
    base = str(model).replace("\\", "/").rstrip("/").split("/")[-1]
    return f"vec_layer_{layer}_{re.sub(r'[^A-Za-z0-9._-]+', '-', base).strip('-') or 'model'}.pt"


def save_caa_layout(vset: VectorSet, folder: str | Path, model: str) -> list[Path]:
    """Write one vec_layer_<L>_<model>.pt file per layer (a plain 1-D float32 tensor each) in `folder`.

    Returns:
        The written paths, by layer.
    """
    folder = Path(folder)
    _check_writable(vset, folder)
    written = []
    for layer, vec in sorted(vset.vectors.items()):
        path = folder / caa_filename(layer, model)

        def write(tmp: str, v: torch.Tensor = vec, p: Path = path) -> None:
            torch.save(v.detach().float().cpu().clone(), tmp)
            _load_pt(Path(tmp), str(p))

        atomic_write(path, write)
        written.append(path)
    return written


def _load_pt(path: Path, label: str | None = None) -> torch.Tensor:
    name = label or str(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: not one line
            warnings.simplefilter("ignore")
            # weights_only: a vector file must never be able to run code.
            value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise SteeringError(f"{name}: not a readable tensor file (damaged, or not written by torch.save)") from None
        # PyTorch's own text here advises re-loading with weights_only=False, which would run the code.
        raise SteeringError(
            f"{name}: not a plain tensor file: it holds Python objects that are not tensors, which could run "
            "code when loaded, so it was refused unread"
        ) from None
    except Exception:  # damaged zip, not a torch file at all, ...
        raise SteeringError(f"{name}: not a readable tensor file (damaged, or not written by torch.save)") from None
    return _as_vector(value, name)


def load_caa_layout(path: Path, model: str | None = None, label: str | None = None) -> VectorSet:
    """A single vec_layer_<L>_*.pt file, or a folder of them (the paper's layout).

    Args:
        path: one .pt file, or a folder holding vec_layer_<L>_<model>.pt files.
        model: the loaded model's name or hub id. In a folder, files whose model part matches it after
            normalize_model_name (case, hub-id basename, separators) are loaded; a folder holding one
            model's files (or unnamed vec_layer_<L>.pt files) is loaded whatever that name is (the caller
            checks the sizes).
        label: how messages and `source` name the path (default: the path).

    Raises:
        SteeringError: no such files; a folder with several models' files none of which matches `model`
            (the message lists the names found); two files for one layer; an unreadable or unsafe file.
    """
    name = label or str(path)
    if path.is_file():
        files = [path]
    else:
        files = sorted(path.glob("vec_layer_*.pt"))
    groups: dict[str, dict[int, Path]] = {}
    shown: dict[str, str] = {}
    for file in files:
        match = _CAA_NAME.match(file.name)
        if not match:
            raise SteeringError(
                f"{file if label is None else file.name}: expected a name like vec_layer_<L>_<model>.pt"
            )
        key = normalize_model_name(match.group(2) or "")
        shown.setdefault(key, match.group(2) or "(no model name)")
        layer = int(match.group(1))
        group = groups.setdefault(key, {})
        if layer in group:
            raise SteeringError(
                f"{name}: two files for layer {layer} of model {shown[key]}: {group[layer].name} and {file.name}"
            )
        group[layer] = file
    if not groups:
        raise SteeringError(f"{name}: no vec_layer_<L>_<model>.pt files found")
    wanted = normalize_model_name(model) if model else None
    if wanted is not None and wanted in groups:
        key = wanted
    elif len(groups) == 1:
        key = next(iter(groups))
    else:
        found = ", ".join(shown[k] for k in sorted(groups))
        reason = f"none matches the loaded model {model}" if model else "say which by passing a single file"
        raise SteeringError(f"{name}: holds vector files for {len(groups)} models ({found}); {reason}")
    vectors = {layer: _load_pt(file, file.name if label else None) for layer, file in sorted(groups[key].items())}
    metadata = {"format": "caa-pt"}
    if key:
        metadata["model"] = shown[key]
    return VectorSet(vectors, metadata, name)


# ---------------------------------------------------------------- GGUF control vectors


def gguf_layers(layers: Iterable[int], path: str | Path | None = None) -> tuple[list[int], str]:
    """The layers a llama.cpp control vector can hold, and a note saying what was left out.

    llama.cpp rejects a control vector tensor 'direction.0' (its layer indices start at 1), so layer 0 is
    skipped; every other layer is kept. One check for every GGUF writer (extract --gguf, export-gguf).

    Args:
        layers: the layers asked for (decoder block indices).
        path: the destination, for the message.

    Returns:
        (sorted layers that will be written, '' or 'layer 0 skipped: ...').

    Raises:
        SteeringError: no layer is left (e.g. only layer 0 was asked for): such a file would hold no vectors.
    """
    layers = sorted(set(layers))
    kept = [layer for layer in layers if layer > 0]
    if not kept:
        where = f"{path}: " if path else ""
        raise SteeringError(
            f"{where}a llama.cpp control vector cannot hold layer 0 and no other layer was chosen; "
            "choose layers 1 and up"
        )
    note = "layer 0 skipped: llama.cpp control vectors have no layer 0" if 0 in layers else ""
    return kept, note


def save_gguf(vset: VectorSet, path: str | Path, model_hint: str = "llama") -> Path:
    """Write a llama.cpp control vector (`llama-cli --control-vector FILE`) atomically.

    Layer 0 is skipped (see gguf_layers, which gives the note to show); the file is read back before it
    replaces anything.

    Raises:
        SteeringError: no layer but 0, non-finite or absurd vectors, or the file does not read back.
    """
    import gguf

    path = Path(path)
    _check_writable(vset, path)
    layers, _ = gguf_layers(vset.layers, path)
    chosen = VectorSet({layer: vset.vectors[layer] for layer in layers}, dict(vset.metadata), vset.source)

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(chosen.vectors))
        for layer in layers:
            writer.add_tensor(f"direction.{layer}", chosen.vectors[layer].detach().float().cpu().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        _read_back(load_gguf(Path(tmp), label=str(path)), chosen, path)

    atomic_write(path, write)
    return path


def load_gguf(path: Path, label: str | None = None) -> VectorSet:
    """Read a GGUF control vector ('direction.<L>' tensors); `label` names it in messages."""
    import gguf

    name = label or str(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise SteeringError(
            f"{name}: not a readable GGUF file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    vectors = {}
    for tensor in reader.tensors:
        match = _DIRECTION.match(tensor.name)
        if not match:
            continue
        vectors[int(match.group(1))] = torch.tensor(tensor.data.astype("float32")).reshape(-1)
    if not vectors:
        raise SteeringError(f"{name}: no 'direction.<L>' tensors: not a control vector file")
    hint = reader.fields.get("controlvector.model_hint")
    metadata = {"format": "gguf-control-vector"}
    if hint is not None:
        metadata["model_hint"] = bytes(hint.parts[hint.data[0]]).decode("utf-8", "replace")
    return VectorSet(vectors, metadata, name)


# ---------------------------------------------------------------- any format


def load_vectors(path: str | Path, model: str | None = None, label: str | None = None) -> VectorSet:
    """Read a vector file of any supported format (not yet checked against a model: see VectorSet.validate).

    Args:
        path: a .safetensors, .gguf or .pt file, or a folder in the paper's layout.
        model: the loaded model's name or hub id, to pick its files in a folder with several models' files.
        label: how messages and `source` name the file (default: the path). Use it where the path must not
            be shown (remote callers, temporary upload folders).

    Raises:
        SteeringError: missing, unknown format, unreadable or unsafe file.
    """
    path = Path(path)
    name = label or str(path)
    if not path.exists():
        raise SteeringError(f"{name}: file not found")
    if path.is_dir():
        return load_caa_layout(path, model, label)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return load_safetensors(path, label)
    if suffix == ".pt":
        return load_caa_layout(path, label=label)
    if suffix == ".gguf":
        return load_gguf(path, label)
    raise SteeringError(f"{name}: unknown vector format '{suffix}' (expected .safetensors, .pt or .gguf)")


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
        out[layer] = float(torch.nn.functional.cosine_similarity(va, vb, dim=0))
    return out


def vector_path(vectors_dir: str | Path, behavior: str, model_slug: str) -> Path:
    """Where a behavior's vectors for a model live: <vectors_dir>/<behavior>/<model_slug>.safetensors.

    Raises:
        SteeringError: `behavior` is not a valid name (steering.core.limits.check_behavior_name): never a path.
    """
    return Path(vectors_dir) / check_behavior_name(behavior) / f"{model_slug}.safetensors"


def available_behaviors(vectors_dir: str | Path, model_slug: str) -> list[str]:
    """Behaviors (valid names only) that have a vector file for the model under `vectors_dir`."""
    root = Path(vectors_dir)
    names = (p.parent.name for p in root.glob(f"*/{model_slug}.safetensors"))
    return sorted(name for name in names if _valid_name(name))


def _valid_name(name: str) -> bool:
    try:
        check_behavior_name(name)
    except SteeringError:
        return False
    return True


# ---------------------------------------------------------------- what a write would replace


@dataclass(frozen=True)
class VectorFileInfo:
    """What an existing vector file holds, from its header (tensors are not read for safetensors)."""

    path: Path
    layers: list[int]
    pairs: int | None  # contrast pairs it was extracted from (metadata 'pairs'), None when not recorded
    metadata: dict[str, str]

    def summary(self) -> str:
        """E.g. '30 layers (0..29), 250 pairs, read mode letter, made 2026-01-01T00:00:00+00:00'."""
        parts = [f"{len(self.layers)} layer{'s' if len(self.layers) != 1 else ''} ({_ranges(self.layers)})"]
        parts.append(f"{self.pairs} pairs" if self.pairs is not None else "pairs not recorded")
        if self.metadata.get("read_mode"):
            parts.append(f"read mode {self.metadata['read_mode']}")
        if self.metadata.get("created"):
            parts.append(f"made {self.metadata['created']}")
        return ", ".join(parts)


def describe_vector_file(path: str | Path) -> VectorFileInfo | None:
    """Describe the vector file at `path` (layers, pair count, metadata), or None when nothing is there.

    Raises:
        SteeringError: something is there but it is not a readable vector file.
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file() and path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                keys = list(handle.keys())
        except (SafetensorError, OSError, ValueError) as exc:
            raise SteeringError(f"{path}: exists but is not a readable safetensors file ({exc})") from None
        layers = sorted(int(m.group(1)) for m in (_LAYER_KEY.match(k) or _DIRECTION.match(k) for k in keys) if m)
    else:
        vset = load_vectors(path)
        metadata, layers = dict(vset.metadata), vset.layers
    metadata.pop("layers", None)
    try:
        pairs = int(metadata["pairs"]) if "pairs" in metadata else None
    except ValueError:
        pairs = None
    return VectorFileInfo(path, layers, pairs, metadata)


def replacement_check(path: str | Path, layers: Iterable[int], pairs: int | None, force: bool = False) -> str | None:
    """What writing new vectors at `path` would replace; refuse to lose layers or pairs unless `force`.

    Call it before the model loads (extract: the destination file, the layers and pair count asked for).

    Args:
        path: the destination vector file.
        layers: the layers the new file will hold.
        pairs: the contrast pairs it will be extracted from.
        force: replace whatever is there (the --force flag).

    Returns:
        None when nothing is at `path`, else a one-line note to print ('replaces <path>: 30 layers ...').

    Raises:
        SteeringError: without `force`, when the existing file has a layer the new one lacks, was made from
            more pairs, or is not a readable vector file.
    """
    path = Path(path)
    try:
        old = describe_vector_file(path)
    except SteeringError as exc:
        if not force:
            raise SteeringError(f"{exc}; not replacing it without --force") from None
        return f"replaces {path} (not a readable vector file)"
    if old is None:
        return None
    layers = sorted(set(layers))
    lost_layers = sorted(set(old.layers) - set(layers))
    fewer_pairs = pairs is not None and old.pairs is not None and pairs < old.pairs
    if (lost_layers or fewer_pairs) and not force:
        lost = []
        if lost_layers:
            lost.append(f"layers {_ranges(lost_layers)}" if len(lost_layers) > 1 else f"layer {lost_layers[0]}")
        if fewer_pairs:
            lost.append(f"{(old.pairs or 0) - (pairs or 0)} of its {old.pairs} pairs")
        raise SteeringError(
            f"{path} holds {old.summary()}; the new file would have {len(layers)} "
            f"layer{'s' if len(layers) != 1 else ''}"
            f"{'' if pairs is None else f' from {pairs} pairs'} and lose {' and '.join(lost)}: "
            "pass --force to replace it, or --out to write elsewhere"
        )
    return f"replaces {path}: {old.summary()}"
