"""Where and how a model runs: the torch device, the dtype and the CPU thread count for a config/flag value."""

from __future__ import annotations

import os
from typing import Any

import torch

from steering.errors import SteeringError


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str) -> torch.device:
    """The torch device for a config/flag value: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps.

    Raises:
        SteeringError: an unknown name, or a device this machine does not have (CUDA without CUDA,
            cuda:N beyond the device count, mps without MPS), before any weights are read.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise SteeringError(f"unknown device '{device}' (expected auto, cpu, cuda, cuda:N or mps)") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SteeringError(f"device '{device}': CUDA is not available on this machine (use --device cpu or auto)")
        if resolved.index is not None and resolved.index >= count:
            raise SteeringError(f"device '{device}': this machine has CUDA devices 0..{count - 1}")
    elif resolved.type == "mps" and not _mps_available():
        raise SteeringError(f"device '{device}': Apple MPS is not available on this machine (use --device cpu or auto)")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype for a config `dtype` name on a device.

    Args:
        dtype: "auto", "float32"/"fp32", "float16"/"fp16" or "bfloat16"/"bf16".
        device: where the model runs; "auto" is bfloat16 (float16 without bf16 support) on CUDA, float32
            elsewhere.

    Raises:
        SteeringError: an unknown dtype name.
    """
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in table:
        raise SteeringError(f"unknown dtype '{dtype}' (expected auto, float32, float16 or bfloat16)")
    return table[dtype]


# ---------------------------------------------------------------------------- CPU threads
THREADS_ENV = "OMP_NUM_THREADS"


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(value: Any = "auto", environ: Any = os.environ) -> int:
    """The torch CPU thread count for a config/flag value.

    Args:
        value: a positive integer (or its text), or "auto" / None / "" for the default.
        environ: where OMP_NUM_THREADS is read (the process environment by default).

    Returns:
        `value` itself when it is a count; for "auto", OMP_NUM_THREADS when it is set to a positive
        integer, else half of the usable CPU cores (at least 1). Half, not all: on a shared machine
        torch's default (one thread per core) thrashes as soon as another process takes a core; on a
        busy 2-core machine three chat panes took 29-90 s with 2 threads against 5.7 s with 1.

    Raises:
        SteeringError: not a positive integer and not "auto".
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        env = str(environ.get(THREADS_ENV, "")).strip()
        if env.isdigit() and int(env) > 0:
            return int(env)
        return max(1, usable_cpus() // 2)
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise SteeringError(f"threads must be a positive whole number or 'auto', got {value!r}")
    count = int(value)
    if count < 1:
        raise SteeringError(f"threads must be at least 1, got {count}")
    return count


def set_threads(value: Any = "auto") -> int:
    """Set the number of CPU threads torch uses for one operation (torch.set_num_threads).

    One function for every entry point (the CLI commands, app.py): call it with the config's
    `model.threads` or the --threads flag before the model runs. load_model calls it with
    ModelSettings.threads.

    Args:
        value: a positive integer, or "auto" (see resolve_threads).

    Returns:
        The thread count now in effect.

    Raises:
        SteeringError: `value` is not a positive integer or "auto".
    """
    count = resolve_threads(value)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
