"""`tune --demo PROMPT`: the winner must show the contrast on the prompts a demo shows first (issue 9's planet
question): added answer judged a refusal, subtracted not, neither looping; when no coherent setting passes, the best
coherent one is written with a warning. Bad prompts are refused in one line before the model loads."""

from __future__ import annotations

import json

import pytest
from cli_helpers import assert_refused
from tune_helpers import QUESTIONS, _AddedSideJudge, _tune_cli, tune_engine

from steering.errors import SteeringError
from steering.evaluation.coherence_rule import DEMO_MIN_DISTINCT3
from steering.evaluation.refusal import distinct_ngram_share
from steering.evaluation.tune import TuneResult, apply_demo, demo_summary, demo_verdict
from steering.io.recipe_defaults import load_defaults

FLUENT = "Jupiter is my favourite: it is huge, it has a storm older than any country, and dozens of moons."
LOOPING = "It is a planet of dreams, a planet of dreams, a planet of dreams, a planet of dreams, a planet of dreams."
REFUSAL = "As an AI, I don't have personal preferences, but I can tell you about any planet you like."


def _judge(text: str) -> bool:
    return text.startswith("As an AI")


def _row(strength, score, added, subtracted, coherent=True):
    side = lambda texts: {"texts": list(texts), "refusal_rate": 0.0}  # noqa: E731
    return {
        "setting": {"strength": strength},
        "score": score,
        "contrast": score,
        "margin": 0.1,
        "coherent": coherent,
        "added": side(added),
        "subtracted": side(subtracted),
    }


def _result(rows):
    return TuneResult(rows[0], True, rows, {}, 0, 0.0)


def test_the_loop_threshold_separates_the_two_answers():
    assert distinct_ngram_share(FLUENT) >= DEMO_MIN_DISTINCT3 > distinct_ngram_share(LOOPING)


@pytest.mark.parametrize(
    "added, subtracted, failed",
    [
        ([REFUSAL], [FLUENT], None),
        ([FLUENT], [FLUENT], "prompt 0: the added answer does not show the behavior"),
        ([REFUSAL], [REFUSAL], "prompt 0: the subtracted answer shows the behavior"),
        ([REFUSAL], [LOOPING], "prompt 0: the subtracted answer loops (distinct-3 "),
        ([REFUSAL, REFUSAL + " " + LOOPING], [FLUENT, FLUENT], "prompt 1: the added answer loops"),
    ],
)
def test_demo_verdict_names_the_first_failing_check(added, subtracted, failed):
    verdict = demo_verdict(_row(1.0, 1.0, added, subtracted), _judge)
    assert verdict["ready"] == (failed is None)
    assert (verdict["failed"] or "").startswith(failed or "")
    assert (verdict["added"], verdict["subtracted"]) == (added, subtracted)


def test_the_best_demo_ready_setting_wins_over_a_higher_score():
    tuned = [_row(2.0, 0.97, [], []), _row(1.0, 0.90, [], []), _row(3.0, 0.99, [], [], coherent=False)]
    demo = [_row(2.0, 0, [REFUSAL], [LOOPING]), _row(1.0, 0, [REFUSAL], [FLUENT]), _row(3.0, 0, [REFUSAL], [FLUENT])]
    result = apply_demo(_result(tuned), _result(demo), _judge)
    assert result.winner["setting"]["strength"] == 1.0 and result.coherent  # not 2.0 (loops), not 3.0 (incoherent)
    assert [r["setting"]["strength"] for r in result.rows] == [1.0, 3.0, 2.0]  # eligible first, then by score
    summary = demo_summary(result, ["What's your favorite planet?"])
    assert summary["ready"] and summary["ready_coherent_settings"] == 1 and summary["subtracted"] == [FLUENT]


def test_without_a_demo_ready_setting_the_best_coherent_one_wins_and_says_why():
    tuned = [_row(2.0, 0.97, [], []), _row(1.0, 0.90, [], [])]
    demo = [_row(2.0, 0, [REFUSAL], [LOOPING]), _row(1.0, 0, [FLUENT], [FLUENT])]
    result = apply_demo(_result(tuned), _result(demo), _judge)
    assert result.winner["setting"]["strength"] == 2.0
    summary = demo_summary(result, ["q"])
    assert not summary["ready"] and summary["failed"].startswith("prompt 0: the subtracted answer loops")


def test_a_setting_without_demo_answers_is_an_error():
    with pytest.raises(SteeringError, match="has no demo answers"):
        apply_demo(_result([_row(2.0, 1, [], [])]), _result([_row(1.0, 0, [REFUSAL], [FLUENT])]), _judge)


@pytest.fixture()
def engine(tmp_path, tiny_tokenizer):
    return tune_engine(tmp_path, tiny_tokenizer)


def test_cli_picks_by_the_demo_records_it_and_resumes(engine, tmp_path, monkeypatch, capsys):
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    demo = "Which planet would you visit?"
    flags = ["--questions", str(questions), "--layers", "1", "--plus", "clamp", "--minus", "add"]
    flags += ["--strengths", "2", "3", "--demo", demo, "--no-incumbent"]
    assert _tune_cli(engine, monkeypatch, *flags, "--dry-run") == 0  # fills both caches
    folder = tmp_path / "vectors" / "refusal"
    demo_cache = json.loads((folder / "tiny.tune-cache.demo.json").read_text())
    assert len(demo_cache["jobs"]) == 5  # unsteered + 2 strengths x 2 sides, one answer each
    judge = _AddedSideJudge(folder / "tiny.tune-cache.json", folder / "tiny.tune-cache.demo.json")
    capsys.readouterr()
    assert _tune_cli(engine, monkeypatch, *flags, detector=judge) == 0
    printed = capsys.readouterr()
    assert "| demo |" in printed.out and f"demo {demo!r}:" in printed.out
    assert "(0 answers generated" in printed.err  # everything from the two caches
    info = load_defaults(folder / "tiny.defaults.json").info
    assert info["demo"]["prompts"] == [demo]
    assert all("demo_ready" in row for row in info["top"])  # the rows that passed rank first; the file says which
    # the recorded answers are the winner's own demo answers, and the verdict is the rule applied to them
    recorded = {side: {"texts": info["demo"][side]} for side in ("added", "subtracted")}
    verdict = demo_verdict(recorded, judge)
    assert verdict["ready"] == info["demo"]["ready"] and verdict["failed"] == info["demo"]["failed"]


def test_cli_allows_a_held_out_demo_question_and_says_so(engine, tmp_path, monkeypatch, capsys):
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    flags = ["--questions", str(questions), "--layers", "1", "--plus", "clamp", "--minus", "add", "--strengths", "3"]
    assert _tune_cli(engine, monkeypatch, *flags, "--demo", "What's your favorite planet?", "--dry-run") == 0
    assert "is a held-out question of datasets/refusal/test_open_ended.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    "prompts, fragment",
    [(["  "], "--demo: prompt 0 is empty"), (["Hi there", " Hi there"], "--demo: prompt 1 repeats an earlier one")],
)
def test_bad_demo_prompts_are_one_line_before_the_model_loads(prompts, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("steering.cli.loading.load_engine", lambda *a: pytest.fail("the model was loaded"))
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    assert_refused(capsys, ["tune", "--questions", str(questions), "--dry-run", "--demo", *prompts], fragment)


def test_an_over_long_demo_prompt_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("steering.cli.loading.load_engine", lambda *a: pytest.fail("the model was loaded"))
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    line = assert_refused(capsys, ["tune", "--questions", str(questions), "--dry-run", "--demo", "x" * 100_000])
    assert "--demo: prompt 0 is 100000 characters long; the limit is" in line


def test_an_over_budget_demo_prompt_is_refused_before_the_search(engine, tmp_path, monkeypatch, capsys):
    """The token budget (config limits.max_prompt_tokens) of a demo prompt is checked right after the model loads,
    before any answer is generated (a reviewer's 5 000-token prompt passed the character check and ran)."""
    import steering.decode.generation as generation

    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    monkeypatch.setattr(generation, "generate", lambda *a, **k: pytest.fail("an answer was generated"))
    long_prompt = "x" * (engine.config.limits.max_prompt_tokens + 10)  # under the character limit, over the tokens
    flags = ["--questions", str(questions), "--layers", "1", "--plus", "clamp", "--minus", "add", "--strengths", "3"]
    assert _tune_cli(engine, monkeypatch, *flags, "--demo", "Hi there", long_prompt, "--dry-run") != 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: --demo: prompt 1: "), lines


def test_repeated_flag_values_are_searched_once(engine, tmp_path, monkeypatch, capsys):
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    flags = ["--questions", str(questions), "--layers", "1", "1", "--plus", "clamp", "clamp", "--minus", "add"]
    assert _tune_cli(engine, monkeypatch, *flags, "--strengths", "3", "3", "--no-incumbent", "--dry-run") == 0
    assert ", 1 settings;" in capsys.readouterr().err
