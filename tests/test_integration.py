"""The embedded model end to end: chat, and the shipped results reproduce."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from steering.config import PROJECT_ROOT

pytestmark = pytest.mark.integration


def _steering(*args, timeout=600, one_thread=True):
    """`python -m steering ARGS` from the checkout (OMP_NUM_THREADS=1 unless one_thread is False), output captured."""
    env = dict(os.environ, OMP_NUM_THREADS="1") if one_thread else None
    command = [sys.executable, "-m", "steering", *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def test_chat_json_prints_three_different_answers():
    result = _steering(
        "chat", "--prompt", "What's your favorite planet?", "--json", "--max-new-tokens", "24", one_thread=False
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"added", "subtracted", "unsteered", "settings"}
    texts = [answer["added"], answer["unsteered"], answer["subtracted"]]
    assert all(texts) and len(set(texts)) == 3
    assert (
        answer["settings"]["layer"] == _shipped_recipe().layer
        and answer["settings"]["model"] == "smollm2-135m-instruct"
    )


def _shipped_recipe():
    from steering.io.recipe_defaults import load_defaults

    return load_defaults(PROJECT_ROOT / "vectors" / "refusal" / "smollm2-135m-instruct.defaults.json").recipe


def test_planet_question_shows_the_contrast_at_the_shipped_defaults():
    """Issue 9: at the shipped defaults the added answer declines as an AI, the subtracted one names a planet,
    the unsteered one is not a refusal, and neither steered answer loops (distinct-3 >= 0.75)."""
    from steering.config import load_config
    from steering.evaluation.refusal import RefusalDetector, distinct_ngram_share

    result = _steering("chat", "--prompt", "What's your favorite planet?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    detector = RefusalDetector.from_config(load_config())
    assert detector(answer["added"]) and "as an ai" in answer["added"].lower(), answer["added"]
    assert not detector(answer["unsteered"]) and not detector(answer["subtracted"]), answer
    assert "planet" in answer["subtracted"].lower()
    for side in ("added", "subtracted"):
        assert distinct_ngram_share(answer[side]) >= 0.75, (side, answer[side])


def test_shipped_results_reproduce(tmp_path):
    """The first batch of results/test_results_x<α>.json comes out the same from `python -m steering test`.

    The shipped files were made single-threaded (OMP_NUM_THREADS=1, as the README's command says): greedy
    decoding is then bit-for-bit repeatable, whereas a different thread count may sum in another order.
    """
    shipped_path = PROJECT_ROOT / "results" / "test_results_x1.json"
    shipped = json.loads(shipped_path.read_text())
    settings = shipped["settings"]
    batch = settings["batch_size"]
    result = _steering(
        "test",
        "--multipliers",
        "1",
        "--out",
        str(tmp_path),
        "--limit",
        str(batch),
        "--batch-size",
        str(batch),
        "--layer",
        str(settings["layer"]),
        "--max-new-tokens",
        str(settings["max_new_tokens"]),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    fresh = json.loads((tmp_path / "test_results_x1.json").read_text())
    assert fresh["results"] == shipped["results"][:batch]
    assert fresh["settings"]["read_mode"] == settings["read_mode"]
