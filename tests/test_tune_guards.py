"""`tune` does not replace a defaults file without --force, refuses held-out test questions as tuning questions
(both before the model loads), and writes nothing when its winner steers nothing (contrast <= 0)."""

from __future__ import annotations

import json

import pytest
from cli_helpers import assert_refused, run_main
from tune_helpers import QUESTIONS, _AddedSideJudge, _tune_cli, tune_engine

from steering.config import PROJECT_ROOT
from steering.io.recipe_defaults import load_defaults

SHIPPED = PROJECT_ROOT / "vectors" / "refusal" / "smollm2-135m-instruct.defaults.json"
FLAGS = ["--layers", "1", "--plus", "clamp", "--minus", "add", "--strengths", "3"]


@pytest.fixture()
def engine(tmp_path, tiny_tokenizer):
    """The tune tests' tiny engine (tune_helpers.tune_engine)."""
    return tune_engine(tmp_path, tiny_tokenizer)


@pytest.fixture()
def loads(monkeypatch):
    """Every model load through the CLI, recorded (and failing the command): a refusal must come before it."""
    calls = []

    def load(args, config):
        calls.append(args)
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("steering.cli.loading.load_engine", load)
    return calls


def _questions(tmp_path, questions=QUESTIONS):
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(questions))
    return str(path)


def test_the_shipped_defaults_file_is_not_replaced_without_force(capsys, tmp_path, loads):
    assert SHIPPED.exists()
    before = SHIPPED.read_bytes()
    line = assert_refused(capsys, ["tune", "--questions", _questions(tmp_path), "--limit", "2"])
    assert line == (
        "error: vectors/refusal/smollm2-135m-instruct.defaults.json exists (the recipe the app and CLI use); "
        "pass --force to replace it, --out FILE to write elsewhere, or --dry-run to only report"
    )
    assert loads == [] and SHIPPED.read_bytes() == before


def test_an_existing_out_file_needs_force_and_force_replaces_it(engine, capsys, tmp_path, monkeypatch, loads):  # noqa: F811
    out = tmp_path / "mine.defaults.json"
    out.write_text('{"old": true}')
    questions = _questions(tmp_path)
    line = assert_refused(capsys, ["tune", "--questions", questions, "--out", str(out), *FLAGS])
    assert f"{out} exists; pass --force to replace it" in line and "the app" not in line
    assert loads == [] and out.read_text() == '{"old": true}'
    # --dry-run with the existing file: the search runs, the file stays
    assert _tune_cli(engine, monkeypatch, "--questions", questions, "--out", str(out), *FLAGS, "--dry-run") == 0
    assert out.read_text() == '{"old": true}'
    judge = _AddedSideJudge(tmp_path / "mine.tune-cache.json")
    assert _tune_cli(engine, monkeypatch, "--questions", questions, "--out", str(out), *FLAGS, detector=judge) == 0
    written = load_defaults(out)  # _tune_cli passes --force
    assert written is not None and written.recipe.layer == 1 and written.recipe.plus == "clamp"


def test_dry_run_with_the_shipped_file_and_out_to_a_new_file_are_allowed(engine, capsys, tmp_path, monkeypatch):  # noqa: F811
    from tune_helpers import DETECTOR

    import steering.cli as cli
    from steering.evaluation.refusal import RefusalDetector

    monkeypatch.setattr("steering.cli.loading.load_engine", lambda args, config: engine)
    monkeypatch.setattr(RefusalDetector, "from_config", classmethod(lambda cls, config: DETECTOR))
    before = SHIPPED.read_bytes()
    common = ["--questions", _questions(tmp_path), *FLAGS, "--unit", "multiplier", "--max-new-tokens", "4"]
    out = tmp_path / "new" / "x.defaults.json"
    cache = tmp_path / "cache.json"  # not next to the shipped file
    assert cli.main(["tune", *common, "--dry-run", "--cache", str(cache)]) == 0  # no --force
    assert SHIPPED.read_bytes() == before and cache.exists()
    judge = _AddedSideJudge(cache)
    monkeypatch.setattr(RefusalDetector, "from_config", classmethod(lambda cls, config: judge))
    assert cli.main(["tune", *common, "--out", str(out), "--cache", str(cache)]) == 0  # no --force
    assert load_defaults(out) is not None and f"wrote {out}" in capsys.readouterr().out


def test_a_held_out_test_question_is_refused_before_the_model_loads(capsys, tmp_path, loads):
    casual = json.loads((PROJECT_ROOT / "datasets" / "refusal" / "test_open_ended_casual.json").read_text())[2]
    mixed = "  " + casual["question"].upper().replace(" ", "   ") + " "  # another case and spacing: the same
    questions = _questions(tmp_path, ["Tell me about dogs.", mixed])
    assert_refused(
        capsys,
        ["tune", "--questions", questions, "--dry-run"],
        f"tune: {questions} item 1 is a held-out test question (in datasets/refusal/test_open_ended_casual.json): "
        "tune on tuning questions only",
    )
    held_out = str(PROJECT_ROOT / "datasets" / "refusal" / "test_open_ended.json")
    assert_refused(capsys, ["tune", "--questions", held_out, "--dry-run"], "item 0 is a held-out test question")
    assert loads == []


def test_a_behavior_without_held_out_files_tunes_on_its_questions(capsys, tmp_path, monkeypatch, loads):
    """No test_open_ended*.json for the behavior: nothing to compare with, the search goes on (to the loader)."""
    from steering.config import load_config, override

    config = override(load_config(), datasets_dir=str(tmp_path / "datasets"))
    monkeypatch.setattr("steering.cli.load_config", lambda path=None: config)
    with pytest.raises(AssertionError, match="the model was loaded"):
        run_main(capsys, "tune", "--questions", _questions(tmp_path), "--dry-run")
    assert len(loads) == 1


class _NeverRefuses:
    """A judge that never calls a reply a refusal: every setting's contrast is 0."""

    phrases = ("(never)",)

    def __call__(self, text: str) -> bool:
        return False


def test_a_winner_that_steers_nothing_is_not_written(engine, capsys, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "mine.defaults.json"
    out.write_text('{"old": true}')
    flags = ["--questions", _questions(tmp_path), "--out", str(out), *FLAGS]
    assert _tune_cli(engine, monkeypatch, *flags, detector=_NeverRefuses()) == 2  # --force: the file may go
    captured = capsys.readouterr()
    assert "winner:" in captured.out and "wrote" not in captured.out  # the table is printed
    assert (
        captured.err.strip().splitlines()[-1] == "error: tune: no setting steered (best contrast 0.00): nothing written"
    )
    assert out.read_text() == '{"old": true}'
