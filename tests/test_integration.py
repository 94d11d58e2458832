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
    recipe = _shipped_recipe()
    assert answer["settings"]["layer"] == recipe.layer and answer["settings"]["model"] == "smollm2-135m-instruct"
    # what was applied: every steered layer, and the subtracted side's own strength (strength_minus) at the default
    assert answer["settings"]["layers"] == recipe.layers(30)
    assert answer["settings"]["subtracted_multiplier"] == pytest.approx(-recipe.minus_strength)


def _shipped_recipe():
    from steering.io.recipe_defaults import load_defaults

    return load_defaults(PROJECT_ROOT / "vectors" / "refusal" / "smollm2-135m-instruct.defaults.json").recipe


@pytest.fixture(scope="module")
def planet_answer():
    """`steering chat --json` on the planet question at the shipped defaults (greedy, one thread)."""
    result = _steering("chat", "--prompt", "What's your favorite planet?", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_planet_question_shows_the_contrast_at_the_shipped_defaults(planet_answer):
    """Issue 9: at the shipped defaults the added answer declines as an AI, the subtracted one names a planet,
    the unsteered one is not a refusal."""
    from steering.config import load_config
    from steering.evaluation.refusal import RefusalDetector

    answer = planet_answer
    detector = RefusalDetector.from_config(load_config())
    assert detector(answer["added"]) and "as an ai" in answer["added"].lower(), answer["added"]
    assert not detector(answer["unsteered"]) and not detector(answer["subtracted"]), answer
    assert "planet" in answer["subtracted"].lower()


def test_neither_planet_answer_loops_at_the_shipped_defaults(planet_answer):
    """Issue 9: neither steered planet answer loops (its own distinct-3 >= 0.75, the rule `tune --demo` chose the
    shipped recipe by: steering.evaluation.tune.demo)."""
    from steering.evaluation.coherence_rule import DEMO_MIN_DISTINCT3
    from steering.evaluation.refusal import distinct_ngram_share

    for side in ("added", "subtracted"):
        assert distinct_ngram_share(planet_answer[side]) >= DEMO_MIN_DISTINCT3 == 0.75, (side, planet_answer[side])


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
