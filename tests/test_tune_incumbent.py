"""`tune` scores the recipe of the defaults file it would replace (the incumbent) next to its search: the file is
kept when the incumbent scores best, a better setting replaces it with the old file kept under "replaced", and the
default layers centre on the behavior's current anchor layer (its tuned file's, not config.yaml's)."""

from __future__ import annotations

import json

import pytest
from tune_helpers import QUESTIONS, _AddedSideJudge, _tune_cli, tune_engine

from steering.core.recipe import Recipe
from steering.evaluation.tune import SearchSpace, side_jobs
from steering.io.recipe_defaults import load_defaults, save_defaults


def _space(**changes):
    base = dict(layers=[1], plus=["add"], minus=["add"], strengths=[0.2], unit="relative")
    return SearchSpace(**{**base, **changes})


def test_the_incumbent_is_one_more_setting_with_its_own_unit_band_and_window():
    incumbent = Recipe(
        layer=2, strength=1.5, unit="multiplier", band=3, plus="clamp", minus="add", strength_minus=2.0, minus_window=6
    )
    settings, jobs = side_jobs(_space(extra=[(0, incumbent)]), 1)
    assert len(settings) == 2 and [s.incumbent for s in settings] == [False, True]
    up, down = jobs[settings[1]]
    assert (up.layer, up.band, up.op, up.strength, up.unit) == (2, 3, "clamp", 1.5, "multiplier")
    assert (down.op, down.strength, down.window, down.unit) == ("add", -2.0, 6, "multiplier")
    assert settings[1].unit == "multiplier"  # differs from the space's "relative"


@pytest.mark.parametrize("minus_strengths", [None, [0.2]])
def test_an_incumbent_the_search_already_holds_is_marked_not_added(minus_strengths):
    incumbent = Recipe(layer=1, strength=0.2, unit="relative", plus="add", minus="add")
    settings, jobs = side_jobs(_space(extra=[(0, incumbent)], minus_strengths=minus_strengths), 1)
    assert len(settings) == len(jobs) == 1 and settings[0].incumbent


@pytest.fixture()
def engine(tmp_path, tiny_tokenizer):
    return tune_engine(tmp_path, tiny_tokenizer)


def _questions(tmp_path):
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(QUESTIONS))
    return ["--questions", str(path)]


def test_the_file_is_kept_when_its_recipe_scores_best(engine, tmp_path, monkeypatch, capsys):
    out = tmp_path / "vectors" / "refusal" / "tiny.defaults.json"
    save_defaults(out, Recipe(layer=1, strength=3.0, unit="multiplier", plus="clamp", minus="add"), {"history": 1})
    before = out.read_bytes()
    flags = [*_questions(tmp_path), "--layers", "3", "--plus", "add", "--minus", "add", "--strengths", "3"]
    assert _tune_cli(engine, monkeypatch, *flags, "--dry-run") == 0  # fills the cache (the incumbent included)
    judge = _AddedSideJudge(tmp_path / "vectors" / "refusal" / "tiny.tune-cache.json")  # only clamp answers refuse
    capsys.readouterr()
    assert _tune_cli(engine, monkeypatch, *flags, detector=judge) == 0
    printed = capsys.readouterr()
    assert "(current)" in printed.out and "scores best: the file is kept as it is" in printed.out
    assert "the current recipe (layer 1, +clamp / -add, strength 3 (CAA multiplier)) is scored too" in printed.err
    assert out.read_bytes() == before


def test_a_better_setting_replaces_the_file_and_keeps_the_old_one(engine, tmp_path, monkeypatch, capsys):
    out = tmp_path / "vectors" / "refusal" / "tiny.defaults.json"
    old = Recipe(layer=2, strength=3.0, unit="multiplier", plus="add", minus="add")
    save_defaults(out, old, {"history": "the first search"})
    engine.forget_vectors("refusal")  # the fixture read its recipe before the file existed (a CLI run is fresh)
    flags = [*_questions(tmp_path), "--plus", "clamp", "--minus", "add", "--strengths", "3"]  # no --layers
    assert _tune_cli(engine, monkeypatch, *flags, "--dry-run") == 0
    judge = _AddedSideJudge(tmp_path / "vectors" / "refusal" / "tiny.tune-cache.json")
    assert _tune_cli(engine, monkeypatch, *flags, detector=judge) == 0
    written = load_defaults(out)
    assert written.recipe.plus == "clamp"
    assert written.info["replaced"]["recipe"] == old.to_dict()
    assert written.info["replaced"]["history"] == "the first search"
    search = written.info["tuning"]["search"]
    assert search["incumbent"] == [old.to_dict()]
    assert search["layers"] == [0, 2, 3]  # around the file's anchor layer 2, not config.yaml's
    assert [row.get("incumbent", False) for row in written.info["top"]].count(True) == 1  # 4 settings: all in top


def test_no_incumbent_leaves_it_out(engine, tmp_path, monkeypatch, capsys):
    out = tmp_path / "vectors" / "refusal" / "tiny.defaults.json"
    save_defaults(out, Recipe(layer=2, strength=3.0, unit="multiplier", plus="clamp", minus="add"))
    flags = [*_questions(tmp_path), "--layers", "1", "--plus", "add", "--strengths", "3", "--dry-run"]
    assert _tune_cli(engine, monkeypatch, *flags, "--no-incumbent") == 0
    printed = capsys.readouterr()
    assert "(current)" not in printed.out and "scored too" not in printed.err


def test_a_tie_keeps_the_incumbent():
    """Equal score and contrast: the incumbent ranks first even with the smaller coherence margin (a reviewer's
    4-question search replaced the shipped recipe on such a tie)."""
    from steering.evaluation.tune import choose_winner, rank_key

    rows = [
        {"setting": {"strength": 0.2}, "score": 1.0, "contrast": 1.0, "margin": 0.176, "coherent": True},
        {
            "setting": {"strength": 1.5, "incumbent": True},
            "score": 1.0,
            "contrast": 1.0,
            "margin": 0.157,
            "coherent": True,
        },
        {"setting": {"strength": 0.3}, "score": 0.9, "contrast": 0.9, "margin": 0.3, "coherent": True},
    ]
    winner, coherent = choose_winner(sorted(rows, key=rank_key))
    assert coherent and winner["setting"].get("incumbent")
    better = {**rows[0], "score": 1.01, "contrast": 1.01}
    assert not choose_winner(sorted([better, rows[1]], key=rank_key))[0]["setting"].get("incumbent")
