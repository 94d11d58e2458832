"""`tune --max-loops`: a setting whose steered answers loop more often than the unsteered answers (by more than the
allowed share points) is not coherent, on either side, and is written into the defaults file's record."""

from __future__ import annotations

import json

import pytest
from cli_helpers import assert_flag_refused
from tune_helpers import QUESTIONS, _AddedSideJudge, _tune_cli, tune_engine

from steering.evaluation.coherence_rule import MAX_LOOPS
from steering.evaluation.refusal import RefusalDetector
from steering.evaluation.tune import choose_winner, rank_key, rejudge, score_setting, side_metrics
from steering.io.recipe_defaults import load_defaults

FINE = [f"Answer {i}: the river runs past {i} old mills and a stone bridge to the sea." for i in range(8)]
LOOP = "No, " * 30 + "no."
NEVER = RefusalDetector(["a phrase nobody writes"])


def _side(loops: int, refusal: float = 0.0) -> dict:
    texts = [LOOP] * loops + FINE[loops:]
    side = rejudge(side_metrics([False] * 8, [0.9] * 8, [0.7] * 8, texts), NEVER)
    return {**side, "refusal_rate": refusal}


@pytest.mark.parametrize("looping_side", ["added", "subtracted"])
def test_a_side_that_loops_more_than_allowed_is_not_coherent(looping_side):
    base = _side(0)
    loopy = _side(2)  # 2 of 8 answers loop: 0.25 share points over the unsteered 0
    plus, minus = (loopy, _side(0)) if looping_side == "added" else (_side(0), loopy)
    plus = {**plus, "refusal_rate": 1.0}
    unchecked = score_setting(plus, minus, base)  # the function's default: not checked (the old rule)
    assert unchecked["coherent"] and unchecked["score"] == 1.0
    strict = score_setting(plus, minus, base, max_loops=0.10)
    assert not strict["coherent"]
    assert strict["score"] == pytest.approx(1.0 - 0.15, abs=1e-4)  # penalty: share points over the limit
    assert strict["ratios"][looping_side]["loops_over_unsteered"] == 0.25
    assert score_setting(plus, minus, base, max_loops=0.25)["coherent"]  # exactly at the limit
    # measured against the unsteered answers: when they loop as often, the side is fine
    assert score_setting(plus, minus, _side(2), max_loops=0.10)["coherent"]


def test_the_limit_changes_the_winner_to_the_setting_that_does_not_loop():
    base = _side(0)
    rows = []
    for strength, loops, refusal in ((1.0, 0, 0.75), (2.0, 3, 1.0)):
        plus, minus = _side(0, refusal), _side(loops)
        rows.append({"setting": {"strength": strength}, **score_setting(plus, minus, base, max_loops=MAX_LOOPS)})
    rows.sort(key=rank_key)
    winner, coherent = choose_winner(rows)
    assert coherent and winner["setting"]["strength"] == 1.0  # the stronger one loops on 3 of 8 answers
    loose = [
        {"setting": r["setting"], **score_setting(_side(0, rf), _side(lp), base)}
        for r, rf, lp in zip(rows, (0.75, 1.0), (0, 3))
    ]
    assert choose_winner(sorted(loose, key=rank_key))[0]["setting"]["strength"] == 2.0  # without the limit


@pytest.fixture()
def engine(tmp_path, tiny_tokenizer):
    return tune_engine(tmp_path, tiny_tokenizer)


def test_cli_records_the_limit_and_off_turns_it_off(engine, tmp_path, monkeypatch):
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    flags = ["--questions", str(questions), "--layers", "1", "--plus", "clamp", "--minus", "add", "--strengths", "3"]
    assert _tune_cli(engine, monkeypatch, *flags, "--dry-run") == 0  # fills the cache
    judge = _AddedSideJudge(tmp_path / "vectors" / "refusal" / "tiny.tune-cache.json")
    out = tmp_path / "vectors" / "refusal" / "tiny.defaults.json"
    assert _tune_cli(engine, monkeypatch, *flags, "--max-loops", "0.2", detector=judge) == 0
    assert load_defaults(out).info["tuning"]["max_loops"] == 0.2
    # the same single setting again: --no-incumbent, else tune keeps the file it equals (test_tune_incumbent.py)
    assert _tune_cli(engine, monkeypatch, *flags, "--max-loops", "off", "--no-incumbent", detector=judge) == 0
    assert load_defaults(out).info["tuning"]["max_loops"] is None
    from steering.cli.parser import build_parser

    assert build_parser().parse_args(["tune"]).max_loops == MAX_LOOPS == 0.10  # the default


@pytest.mark.parametrize("value", ["1.5", "-0.1", "x"])
def test_bad_max_loops_is_one_line_and_exit_2(value, capsys):
    assert_flag_refused(capsys, ["tune", "--max-loops", value], "--max-loops")  # before the model loads
