"""The resumable state of `tune`: every finished side job in a JSON cache file, valid for one context (model,
dtype, questions, answer length, system prompt, judge phrases); a rerun in the same context skips those jobs."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from steering.io.files import write_json

CACHE_VERSION = 2  # 2: every answer text kept, judged when ranking (scoring.rejudge)


def load_cache(path: Path, context: dict[str, Any]) -> dict[str, Any]:
    """The cached side jobs for this context ({} when the file is missing or made for another context)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        print(f"tune: {path} is not a readable cache; starting a new one", file=sys.stderr)
        return {}
    if not isinstance(data, dict) or data.get("context") != context or not isinstance(data.get("jobs"), dict):
        print(
            f"tune: {path} was made for other settings (model, questions, answer length); starting a new one",
            file=sys.stderr,
        )
        return {}
    return dict(data["jobs"])


def save_cache(path: Path, context: dict[str, Any], jobs: dict[str, Any]) -> None:
    """Write the finished side jobs to the tune cache (atomically, steering.io.files.write_json).

    Args:
        path: the cache file (<model slug>.tune-cache.json by default).
        context: what the answers depend on (model, dtype, questions hash, answer length, system prompt, judge
            phrases); load_cache ignores a cache made for another context.
        jobs: {SideJob.key: that job's answers and scores}.

    Raises:
        OSError: the file cannot be written.
    """

    write_json(path, {"version": CACHE_VERSION, "context": context, "jobs": jobs}, indent=1)


def questions_hash(questions: Sequence[str]) -> str:
    """The sha256 of the tuning questions (in order): the cache context's record of which questions were answered."""
    return hashlib.sha256(json.dumps(list(questions), ensure_ascii=False).encode()).hexdigest()
