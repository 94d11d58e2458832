"""Building the config's frozen dataclasses from YAML-like data: every key known, every value of its field's type.

Generic over dataclasses (steering.config.tree holds the tree itself): `build(cls, data, source)` checks `data`
against the type annotations of `cls` (nested dataclasses, Literal, unions, tuples of strings, Path, mappings of
dataclasses) and raises one-line SteeringErrors naming the source (a file, "override"), the key path and the
expected type.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union

from steering.core.limits import check_finite
from steering.errors import SteeringError

__all__ = [
    "FrozenMapping",
    "at_least",
    "build",
    "checked",
    "drop_none",
    "fraction",
    "merge",
    "ranged",
    "shallow",
    "sampling_temperature",
    "to_plain",
    "type_name",
]


class FrozenMapping(Mapping[str, Any]):
    """A read-only, hashable mapping (config `models:`): unlike MappingProxyType it pickles and deep-copies."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"


def type_name(tp: Any) -> str:
    """How an annotation reads in an error message: "a whole number", "'letter' or 'answer-mean'", ..."""
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "a list of strings"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if typing.get_origin(tp) is Mapping:
        return "a mapping"
    return {Path: "a folder path", float: "a number", int: "a whole number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Mismatch(Exception):
    pass


_SCALARS: dict[Any, Any] = {  # annotation -> does a YAML value fit it
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    Path: lambda v: isinstance(v, (str, os.PathLike)) and bool(str(v).strip()),
    type(None): lambda v: v is None,
}


def _convert(value: Any, tp: Any, source: str, where: str) -> Any:
    """`value` checked against the annotation `tp` (and converted: int -> float, str -> Path, list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, source, where)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp in _SCALARS:
        if not _SCALARS[tp](value):
            raise _Mismatch
        return float(value) if tp is float else Path(value) if tp is Path else value
    if origin is Literal and value in typing.get_args(tp):
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value, source, where)
    if origin is Mapping and isinstance(value, Mapping):  # models: name -> entry
        entry_type = typing.get_args(tp)[1]
        return {str(k): checked(v, entry_type, source, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:  # a list of strings; one string is a one-item list
        items = [value] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(item, str) for item in items):
            return tuple(items)
    raise _Mismatch


def checked(value: Any, tp: Any, source: str, where: str) -> Any:
    """`value` checked against the annotation `tp` (converted where needed); SteeringError naming `where` if not."""
    try:
        return _convert(value, tp, source, where)
    except _Mismatch:
        raise SteeringError(f"{source}: '{where}' must be {type_name(tp)}, found {value!r}") from None


RangeCheck = Callable[[Any, str], Any]  # (value, key path) -> raises SteeringError("<key path> ...") when out of range


def ranged(default: Any, check: RangeCheck) -> Any:
    """A dataclass field with `default` whose value :func:`build` checks with `check(value, key_path)`."""
    return dataclasses.field(default=default, metadata={"range": check})


def at_least(low: float, high: float | None = None, strict: bool = False) -> RangeCheck:
    """A range check: a finite number >= `low` (> `low` when `strict`), and <= `high` when given."""

    def check(value: Any, name: str) -> None:
        if value is None or isinstance(value, str):  # None / "auto": the type check allowed it
            return
        number = check_finite(value, name)
        if number < low or (strict and number == low) or (high is not None and number > high):
            expected = f"more than {low:g}" if strict else f"at least {low:g}"  # the CLI flags' wording
            if high is not None:
                expected = f"from {low:g} to {high:g}"
            raise SteeringError(f"{name} must be {expected}, got {value:g}")

    return check


def fraction(value: Any, name: str) -> None:
    """A range check: a number in (0, 1] (top_p; the --top-p flag's message)."""
    if not 0 < check_finite(value, name) <= 1:
        raise SteeringError(f"{name} must be in (0, 1], got {value:g}")


def sampling_temperature(value: Any, name: str) -> None:
    """A range check: a sampling temperature, 0 (greedy) or more (the --temperature flag's message)."""
    if check_finite(value, name) < 0:
        raise SteeringError(f"{name} must be 0 (greedy) or more, got {value:g}")


def build(cls: type[Any], data: Mapping[str, Any], source: str, where: str = "") -> Any:
    """An instance of the dataclass `cls` from `data`, every key known, every value of its field's type and
    within its field's range (a field made with :func:`ranged`).

    Raises:
        SteeringError: "<source>: <key path> ..." for an unknown key, a wrong type or a value out of range.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            path = f"{where}.{key}" if where else str(key)
            raise SteeringError(f"{source}: unknown key '{path}' (expected one of: {', '.join(names)})")
    prefix = f"{where}." if where else ""
    values = {key: checked(value, hints[key], source, prefix + key) for key, value in data.items()}
    checks = {f.name: f.metadata["range"] for f in dataclasses.fields(cls) if "range" in f.metadata}
    for key, value in values.items():
        if key in checks:
            try:
                checks[key](value, prefix + key)
            except SteeringError as exc:
                raise SteeringError(f"{source}: {exc}") from None
    try:
        return cls(**values)
    except SteeringError as exc:  # a section's own range check (Limits): name the file too
        raise SteeringError(f"{source}: {str(exc).removeprefix('config: ')}") from None


def to_plain(value: Any) -> Any:
    """A dataclass tree as plain dicts, lists and strings (Paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, nested mappings key by key (base is not modified)."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` without its None values, at every level (an override's None: a flag not given)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and not dataclasses.is_dataclass(value):
            value = drop_none(value)
        if value is not None:
            out[key] = value
    return out


def shallow(value: Any) -> Any:
    """A dataclass tree as nested dicts of its field values (the values themselves kept as they are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: shallow(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: shallow(v) for k, v in value.items()}
    return value
