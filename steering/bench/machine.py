"""What the numbers were measured on: the machine's description, and the GPU's copy bandwidth."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

# torch and the model code are imported inside the functions (lazy), so `steering bench --help` stays fast.


def machine_info() -> dict[str, Any]:
    """Platform, Python, torch and transformers versions, CPU model and count, torch threads, load average and
    GPU name (where there is one)."""
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def gpu_bandwidth() -> float:
    """The GPU's measured device-to-device copy bandwidth in bytes per second (read + write of 2 GiB)."""
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    import torch

    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / 10
    del x, y
    return 2 * 2 * 1024**3 / seconds  # read + write
