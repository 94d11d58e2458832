"""The embedded model end to end: chat, and the shipped results reproduce."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from steering.config import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_chat_json_prints_three_different_answers():
    result = subprocess.run([sys.executable, "-m", "steering", "chat", "--prompt", "What's your favorite planet?",
                             "--json", "--max-new-tokens", "24"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"added", "subtracted", "unsteered", "settings"}
    texts = [answer["added"], answer["unsteered"], answer["subtracted"]]
    assert all(texts) and len(set(texts)) == 3
    assert answer["settings"]["layer"] == 9 and answer["settings"]["model"] == "smollm2-135m-instruct"


def test_shipped_results_reproduce(tmp_path):
    """The first batch of results/test_results_x<α>.json comes out the same from `python -m steering test`.

    The shipped files were made single-threaded (OMP_NUM_THREADS=1, as the README's command says): greedy
    decoding is then bit-for-bit repeatable, whereas a different thread count may sum in another order.
    """
    shipped_path = PROJECT_ROOT / "results" / "test_results_x1.json"
    shipped = json.loads(shipped_path.read_text())
    settings = shipped["settings"]
    batch = settings["batch_size"]
    result = subprocess.run([sys.executable, "-m", "steering", "test", "--multipliers", "1", "--out", str(tmp_path),
                             "--limit", str(batch), "--batch-size", str(batch), "--layer", str(settings["layer"]),
                             "--max-new-tokens", str(settings["max_new_tokens"])],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    fresh = json.loads((tmp_path / "test_results_x1.json").read_text())
    assert fresh["results"] == shipped["results"][:batch]
    assert fresh["settings"]["read_mode"] == settings["read_mode"]
