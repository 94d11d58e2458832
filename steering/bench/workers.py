"""The parent side of the subprocess measurements: start ``python -m steering.bench.worker`` and read its
result, and the two CPU sections built on it (model load, peak memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from steering.bench.timing import median
from steering.bench.worker import MARKER
from steering.config import PROJECT_ROOT


def run_worker(
    kind: str, args: dict[str, Any], env_extra: dict[str, str] | None = None, timeout: int = 900, quiet: bool = True
) -> dict[str, Any]:
    """Run one measurement of steering.bench.worker in a fresh Python process.

    Args:
        kind: "load" or "quant" (steering.bench.worker.KINDS).
        args: the measurement's settings, passed as JSON.
        env_extra: environment variables added to this process's (e.g. LLAMA_STEERING_CACHE).
        timeout: seconds before the subprocess is killed (subprocess.TimeoutExpired).
        quiet: silence tokenizers' parallelism notice, transformers' logging and Python warnings.

    Returns:
        The worker's results, or {"error": the last lines of its output} when it printed none.
    """
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if quiet:
        env.update(TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-m", "steering.bench.worker", kind, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(PROJECT_ROOT),
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def bench_load(repeats: int, threads: int) -> dict[str, Any]:
    """Cold: dequantize the GGUF into an empty cache dir; cached: the same dir afterwards."""
    with tempfile.TemporaryDirectory(prefix="steering-bench-cache-") as cache:
        env = {"LLAMA_STEERING_CACHE": cache}
        cold = run_worker("load", {"device": "cpu", "threads": threads, "check_cache": True}, env)
        cached = [
            run_worker("load", {"device": "cpu", "threads": threads, "check_cache": True}, env) for _ in range(repeats)
        ]
    errors = [r["error"] for r in [cold] + cached if "error" in r]
    if errors:
        return {"error": errors[0]}
    return {
        "cold_s": cold["check_s"] + cold["load_s"],
        "cold_cached_before": cold["cached_before"],
        "cached_s": median([r["load_s"] for r in cached]),
        "cached_cached_before": all(r["cached_before"] for r in cached),
        "imports_s": median([r["imports_s"] for r in cached]),
        "repeats": repeats,
        "raw_cached_s": [r["load_s"] for r in cached],
    }


def bench_memory(threads: int, tokens: int) -> dict[str, Any]:
    """Peak RSS (VmHWM: ru_maxrss of this process) of loading + generating 3 rows: full precision vs 8-bit, 4-bit."""
    out: dict[str, Any] = {"generate_tokens": tokens}
    for name, flags in (("full", {}), ("int8", {"load_in_8bit": True}), ("nf4", {"load_in_4bit": True})):
        out[name] = run_worker("load", {"device": "cpu", "threads": threads, "generate_tokens": tokens, **flags})
    return out
