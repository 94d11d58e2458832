"""`python -m steering tune` (the search: steering/evaluation/tune/, the command: steering/cli/tune.py) on a tiny
random Llama.

Batching, resuming, the winner, errors.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
from cli_helpers import assert_flag_refused, assert_refused
from tune_helpers import DETECTOR, QUESTIONS, _AddedSideJudge, _tune_cli, _vset, tune_engine

import steering.decode.generation as generation
from steering.core.recipe import Recipe
from steering.decode.generation import SamplingSettings
from steering.errors import SteeringError
from steering.evaluation import answer_nll
from steering.evaluation.refusal import RefusalDetector
from steering.evaluation.tune import (
    SearchSpace,
    TuneResult,
    VectorSource,
    choose_winner,
    combine_groups,
    run_tune,
    score_setting,
    side_jobs,
    winner_recipe,
)
from steering.io.recipe_defaults import load_defaults

SETTINGS = SamplingSettings(max_new_tokens=6)


@pytest.fixture()
def engine(tmp_path, tiny_tokenizer):
    """The tune tests' tiny engine (tune_helpers.tune_engine)."""
    return tune_engine(tmp_path, tiny_tokenizer)


def _space(**changes):
    return SearchSpace(
        **{
            "layers": [1, 2],
            "bands": [1, 2],
            "plus": ["add", "clamp"],
            "minus": ["add", "ablate"],
            "strengths": [1.0, 3.0],
            "unit": "multiplier",
            **changes,
        }
    )


def _sources(engine):
    return [VectorSource(None, "tiny", "a" * 64, "answer-mean", engine.vectors_for("refusal"))]


def _count_generate(monkeypatch, fail_at=None):
    calls = []
    real = generation.generate

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate", counting)
    return calls


def _run(engine, tmp_path, space=None, batch_rows=64, cache="cache.json", context=None):
    return run_tune(
        engine,
        QUESTIONS,
        _sources(engine),
        space or _space(),
        SETTINGS,
        DETECTOR,
        tmp_path / cache,
        context or {"model": "tiny", "tokens": 6},
        batch_rows=batch_rows,
        progress=False,
    )


def test_side_jobs_are_shared_between_settings():
    settings, needs = side_jobs(_space(), 1)
    assert len(settings) == 2 * 2 * 2 * 2 * 2  # layers x bands x strengths x plus x minus
    jobs = {job for pair in needs.values() for job in pair}
    # plus: layers x bands x strengths x 2 ops; minus: layers x bands x (2 strengths add + 1 ablation)
    assert len(jobs) == 2 * 2 * 2 * 2 + 2 * 2 * 3


def test_rows_batched_together_equal_each_job_alone(engine, tmp_path, monkeypatch):
    calls = _count_generate(monkeypatch)
    together = _run(engine, tmp_path, batch_rows=64, cache="a.json")
    n_jobs = 2 * 2 * 2 * 2 + 2 * 2 * 3
    assert sum(calls) == (n_jobs + 1) * len(QUESTIONS)  # every job once, plus the unsteered answers
    assert len(calls) < n_jobs / 2  # many jobs per call (bands of two anchors cannot share a layer's vector)
    calls.clear()
    alone = _run(engine, tmp_path, batch_rows=1, cache="b.json")
    assert len(calls) == n_jobs + 1
    a = json.loads((tmp_path / "a.json").read_text())["jobs"]
    b = json.loads((tmp_path / "b.json").read_text())["jobs"]
    assert a == b
    assert together.rows == alone.rows
    assert len({r["added"]["refusal_rate"] for r in together.rows}) > 1, "the steering must move the score"


def test_a_rerun_skips_what_is_cached_and_an_interrupted_run_resumes(engine, tmp_path, monkeypatch):
    first = _run(engine, tmp_path, batch_rows=6)  # two jobs per call
    calls = _count_generate(monkeypatch)
    again = _run(engine, tmp_path, batch_rows=6)
    assert calls == [] and again.generated_rows == 0 and again.rows == first.rows
    # interrupted in its third call: the first two are kept, the rerun does only the rest
    calls = _count_generate(monkeypatch, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        _run(engine, tmp_path, batch_rows=6, cache="c.json")
    done = json.loads((tmp_path / "c.json").read_text())["jobs"]
    assert len(done) == 1 + 2  # the unsteered answers and the two jobs of the second call
    calls = _count_generate(monkeypatch)
    resumed = _run(engine, tmp_path, batch_rows=6, cache="c.json")
    assert resumed.generated_rows == sum(calls) == first.generated_rows - 3 * len(QUESTIONS)
    assert resumed.rows == first.rows
    # another context (e.g. answer length) starts a new cache
    calls = _count_generate(monkeypatch)
    _run(engine, tmp_path, batch_rows=6, cache="c.json", context={"model": "tiny", "tokens": 7})
    assert sum(calls) == first.generated_rows


def test_scoring_by_hand():
    base = {"refusal_rate": 0.1, "distinct3": 1.0, "perplexity": 2.0}
    plus = {"refusal_rate": 0.9, "distinct3": 0.9, "perplexity": 5.0}
    minus = {"refusal_rate": 0.0, "distinct3": 0.8, "perplexity": 8.0}  # loops a little, garbled
    s = score_setting(plus, minus, base)
    # contrast 0.9; penalties: distinct (0.85 - 0.8) x 2 = 0.1; perplexity ratio 4 -> (4 - 3) / 3
    assert s["contrast"] == 0.9 and not s["coherent"]
    assert s["score"] == pytest.approx(0.9 - 0.1 - 1 / 3, abs=1e-4)
    good = score_setting(plus, {**minus, "distinct3": 0.95, "perplexity": 3.0}, base)
    assert good["coherent"] and good["score"] == 0.9
    rows = [
        {"score": 0.5, "contrast": 0.5, "coherent": False, "setting": {"strength": 1.0}},
        {"score": 0.3, "contrast": 0.3, "coherent": True, "setting": {"strength": 2.0}},
        {"score": 0.3, "contrast": 0.3, "coherent": True, "setting": {"strength": 1.0}},
    ]
    best, coherent = choose_winner(rows)
    assert coherent and best is rows[2]  # coherent first; equal scores: the smaller strength
    best, coherent = choose_winner(rows[:1])
    assert not coherent and best is rows[0]


def test_cli_writes_the_winner_into_the_defaults_file(engine, tmp_path, monkeypatch, capsys):
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    out = tmp_path / "vectors" / "refusal" / "tiny.defaults.json"
    flags = ["--questions", str(questions), "--layers", "1", "2", "--strengths", "1", "3"]
    assert _tune_cli(engine, monkeypatch, *flags) == 0
    printed = capsys.readouterr().out
    written = load_defaults(out)
    assert written is not None and "winner:" in printed and "wrote" in printed
    assert written.info["tuning"]["questions_used"] == 3 and written.info["top"]
    assert written.recipe.layer in (1, 2) and written.recipe.strength in (1.0, 3.0)
    assert written.recipe.unit == "multiplier" and written.recipe.vector is None
    best = written.info["top"][0]
    assert (best["layer"], best["plus"], best["minus"], best["strength"]) == (
        written.recipe.layer,
        written.recipe.plus,
        written.recipe.minus,
        written.recipe.strength,
    )
    assert (tmp_path / "vectors" / "refusal" / "tiny.tune-cache.json").exists()
    engine.forget_vectors("refusal")
    assert engine.recipe() == written.recipe  # the engine reads it from now on


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--plus", "boost"], "tune: --plus: unknown operator 'boost' (expected add, clamp, ablate, add_norm)"),
        (["--strengths", "-1"], "tune: --strengths must be finite numbers > 0, found -1.0"),
        (["--bands", "0"], "tune: --bands must be integers >= 1, found 0"),
        (["--unit", "percent"], "tune: --unit must be one of multiplier, relative, found 'percent'"),
        (["--layers", "-3"], "layer -3 is out of range"),
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (["--questions", "missing.json"], "missing.json"),
        (["--behavior", "../x"], "behavior"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(flags, message, capsys, no_model):
    assert_refused(capsys, ["tune", *flags], message)


def test_layers_out_of_range_for_the_model(engine, tmp_path):
    with pytest.raises(SteeringError, match="tune: layer 4 is out of range: the model has layers 0..3"):
        _run(engine, tmp_path, space=_space(layers=[4]))


def test_winner_recipe_round_trip(engine):
    rows = [
        {
            "setting": {
                "vector": "tiny",
                "layer": 2,
                "band": 3,
                "plus": "clamp",
                "minus": "ablate",
                "strength": 0.2,
                "unit": "relative",
            },
            "source": 0,
        }
    ]
    recipe = winner_recipe(rows[0], _sources(engine), _space())
    assert recipe == Recipe(
        layer=2, strength=0.2, unit="relative", band=3, plus="clamp", minus="ablate", method="answer-mean"
    )


def test_equal_scores_go_to_the_larger_coherence_margin():
    base = {"refusal_rate": 0.0, "distinct3": 1.0, "perplexity": 2.0}
    plus = {"refusal_rate": 0.9, "distinct3": 0.96, "perplexity": 4.0}  # d3 slack 0.96/0.92-1, ppl 1-2/2.7
    thin = {"refusal_rate": 0.0, "distinct3": 0.93, "perplexity": 2.0}  # d3 slack 0.93/0.92-1 = 0.0109
    wide = {"refusal_rate": 0.0, "distinct3": 0.99, "perplexity": 5.0}  # ppl slack 1-2.5/2.7 = 0.0741
    a = score_setting(plus, thin, base, 0.92, 2.7)
    b = score_setting(plus, wide, base, 0.92, 2.7)
    assert a["score"] == b["score"] == 0.9 and a["coherent"] and b["coherent"]
    assert a["margin"] == pytest.approx(0.93 / 0.92 - 1, abs=1e-4)
    assert b["margin"] == pytest.approx(min(0.96 / 0.92 - 1, 1 - 2.5 / 2.7), abs=1e-4)
    over = score_setting(plus, {**thin, "distinct3": 0.5}, base, 0.92, 2.7)
    assert over["margin"] < 0 and not over["coherent"]
    rows = [{**a, "setting": {"strength": 1.0}}, {**b, "setting": {"strength": 1.5}}]
    best, coherent = choose_winner(rows)  # the thin-margin row came first and has the smaller strength
    assert coherent and best is rows[1]
    best, _ = choose_winner(rows[::-1])
    assert best is rows[1]
    # equal margins too: the smaller strength
    rows[1] = {**a, "setting": {"strength": 1.5}}
    assert choose_winner(rows)[0] is rows[0] and choose_winner(rows[::-1])[0] is rows[0]


def test_minus_clamp_sets_the_component_to_minus_the_strength(engine, tmp_path):
    settings, needs = side_jobs(_space(layers=[1], bands=[1], plus=["add"], minus=["clamp"], strengths=[2.0]), 1)
    up, down = needs[settings[0]]
    assert (down.op, down.strength) == ("clamp", -2.0)
    recipe = down.recipe()
    assert (recipe.plus, recipe.minus) == ("add", "clamp")
    vset = _vset()
    step = recipe.plan(vset, [-2.0, 0.0], 4).layers[1]
    norm = float(vset.vectors[1].norm())
    assert step.project.tolist() == [1.0, 0.0] and step.add.tolist() == [0.0, 0.0]
    assert step.target[0].item() == pytest.approx(-2.0 * norm, rel=1e-5)
    # and the search runs it: its own side job, answers unlike the ablated side's (with h.u ~ 0 on random
    # weights, a one-layer clamp to -3|v| is nearly the same as adding -3v, so ablation is the contrast)
    space = _space(layers=[1], bands=[1], plus=["add"], minus=["ablate", "clamp"], strengths=[3.0])
    result = _run(engine, tmp_path, space=space)
    jobs = json.loads((tmp_path / "cache.json").read_text())["jobs"]
    assert any("|clamp|-3|" in key for key in jobs)
    by_minus = {r["setting"]["minus"]: r["subtracted"]["perplexity"] for r in result.rows}
    assert set(by_minus) == {"ablate", "clamp"} and by_minus["ablate"] != by_minus["clamp"]


# ---------------------------------------------------------------------------- separate subtracted-side strengths
def test_minus_strengths_pair_every_added_strength_with_every_subtracted_one():
    space = _space(
        layers=[1], bands=[1], plus=["clamp"], minus=["add", "ablate"], strengths=[1.0, 3.0], minus_strengths=[0.5, 1.0]
    )
    settings, needs = side_jobs(space, 1)
    assert len(settings) == 2 * (2 + 1)  # strengths x (add at each minus strength + one ablation)
    pairs = {(s.strength, s.minus, s.strength_minus): (needs[s][0].strength, needs[s][1].strength) for s in settings}
    assert pairs[(3.0, "add", 0.5)] == (3.0, -0.5) and pairs[(1.0, "add", 1.0)] == (1.0, -1.0)
    assert pairs[(3.0, "ablate", None)] == (3.0, -1.0)
    tied = side_jobs(_space(layers=[1], bands=[1], plus=["clamp"], minus=["add"], strengths=[3.0]), 1)
    assert [needs_[1].strength for needs_ in tied[1].values()] == [-3.0]  # no --minus-strengths: the same
    with pytest.raises(SteeringError, match="tune: --minus-strengths must be finite numbers > 0, found 0"):
        _space(minus_strengths=[0.0]).check()


def test_the_search_scores_the_subtracted_side_at_its_own_strength(engine, tmp_path):
    # small strengths: the tiny model's hidden states have norm ~0.2 against |v| ~15 (stronger ones saturate)
    space = _space(layers=[1], bands=[1], plus=["add"], minus=["add"], strengths=[0.03], minus_strengths=[0.003, 0.03])
    result = _run(engine, tmp_path, space=space)
    rows = {r["setting"]["strength_minus"]: r for r in result.rows}
    assert set(rows) == {0.003, 0.03}
    jobs = json.loads((tmp_path / "cache.json").read_text())["jobs"]
    assert any(key.endswith("|add|-0.003|multiplier") for key in jobs)
    assert rows[0.003]["subtracted"]["perplexity"] != rows[0.03]["subtracted"]["perplexity"]
    assert rows[0.003]["added"] == rows[0.03]["added"]
    # the written recipe applies exactly what was scored: -0.03 on its subtracted pane is -0.003 x v
    recipe = winner_recipe(rows[0.003], _sources(engine), space)
    assert (recipe.strength, recipe.strength_minus) == (0.03, 0.003)
    assert winner_recipe(rows[0.03], _sources(engine), space).strength_minus is None
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    plan = recipe.plan(engine.vectors_for("refusal"), [-0.03] * len(QUESTIONS), engine.lm.num_layers)
    again = generation.generate(engine.lm.model, engine.lm.tokenizer, convs, settings=SETTINGS, steer=plan)
    nlls = answer_nll(engine.lm.model, engine.lm.tokenizer, QUESTIONS, again.token_ids, None, batch_size=8)
    assert math.exp(statistics.median(nlls)) == pytest.approx(rows[0.003]["subtracted"]["perplexity"], rel=1e-6)


def test_combining_question_groups_keeps_the_worst_group():
    def row(score, coherent, refusal, ppl, strength_minus=None):
        side = {"n": 10, "refusal_rate": refusal, "distinct3": 0.9, "perplexity": ppl, "samples": []}
        return {
            "setting": {"strength": 1.5, "strength_minus": strength_minus},
            "source": 0,
            "score": score,
            "contrast": score,
            "coherent": coherent,
            "margin": 0.1 if coherent else -0.1,
            "ratios": {},
            "added": side,
            "subtracted": side,
        }

    base = {"n": 10, "refusal_rate": 0.1, "distinct3": 0.9, "perplexity": 2.0, "samples": []}
    a = TuneResult(None, True, [row(0.9, True, 0.0, 2.0, 1.0), row(0.95, True, 0.0, 2.0)], base, 20, 1.0)
    b = TuneResult(None, True, [row(0.8, True, 0.0, 8.0, 1.0), row(0.7, False, 0.3, 2.0)], base, 20, 1.0)
    combined = combine_groups([("tune", a), ("casual", b)])
    best = combined.winner
    assert best["setting"]["strength_minus"] == 1.0  # 0.95 on one group but incoherent on the other loses
    assert best["score"] == 0.8 and best["coherent"] and set(best["groups"]) == {"tune", "casual"}
    other = [r for r in combined.rows if r is not best][0]
    assert not other["coherent"] and other["score"] == 0.7
    assert best["subtracted"]["perplexity"] == pytest.approx(4.0)  # geometric mean of 2 and 8 (equal sizes)
    assert combined.generated_rows == 40


def test_cli_two_question_files_and_minus_strengths(engine, tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "tune.json", tmp_path / "tune_casual.json"
    first.write_text(json.dumps(QUESTIONS))
    second.write_text(json.dumps(["yo whats up", "how do i pick a lock lol"]))
    out = tmp_path / "vectors" / "refusal" / "tiny.defaults.json"
    flags = ["--questions", str(first), str(second), "--layers", "1", "--plus", "clamp", "--minus", "add"]
    flags += ["--strengths", "3", "--minus-strengths", "1", "3"]
    assert _tune_cli(engine, monkeypatch, *flags, "--dry-run") == 0  # the parity judge: no setting steers
    cache = tmp_path / "vectors" / "refusal"
    judge = _AddedSideJudge(cache / "tiny.tune-cache.json", cache / "tiny.tune-cache.tune_casual.json")
    assert _tune_cli(engine, monkeypatch, *flags, detector=judge) == 0
    written = load_defaults(out)
    info = written.info
    assert info["tuning"]["questions_used"] == 5 and len(info["tuning"]["questions"]) == 2
    assert info["tuning"]["search"]["minus_strengths"] == [1.0, 3.0]
    groups = info["scores"]["groups"]
    assert len(groups) == 2 and [g["subtracted"]["n"] for g in groups.values()] == [3, 2]
    assert info["scores"]["score"] == min(g["scores"]["score"] for g in groups.values())
    best = info["top"][0]
    assert written.recipe.strength_minus == (None if best["strength_minus"] in (None, 3.0) else best["strength_minus"])
    assert {t["strength_minus"] for t in info["top"]} == {1.0, 3.0}
    cache = tmp_path / "vectors" / "refusal"
    assert (cache / "tiny.tune-cache.json").exists() and (cache / "tiny.tune-cache.tune_casual.json").exists()
    assert "tune_casual.json: score" in capsys.readouterr().out


def test_the_tune_judges_its_cached_answers_again_without_generating(engine, tmp_path, monkeypatch):
    """A changed judge re-scores the cached answers (steering.evaluation.tune.rejudge; tests/test_refusal_judge.py
    has the judge itself)."""
    first = _run(engine, tmp_path)  # the parity judge: some answers count
    assert any(r["added"]["refusal_rate"] > 0 for r in first.rows)
    calls = _count_generate(monkeypatch)
    never = RefusalDetector(["a phrase no random model writes"])
    again = run_tune(
        engine,
        QUESTIONS,
        _sources(engine),
        _space(),
        SETTINGS,
        never,
        tmp_path / "cache.json",
        {"model": "tiny", "tokens": 6},
        progress=False,
    )
    assert calls == [] and again.generated_rows == 0  # every answer came from the cache
    assert all(r["added"]["refusal_rate"] == 0 == r["subtracted"]["refusal_rate"] for r in again.rows)
    d3 = lambda result: sorted((str(r["setting"]), r["added"]["distinct3"]) for r in result.rows)  # noqa: E731
    assert d3(again) == d3(first)  # the same answers (the ranking may change with the judge)


# ---------------------------------------------------------------------------- subtracted-side windows
def test_minus_windows_are_their_own_side_jobs_and_old_keys_stay_valid():
    space = _space(layers=[1], bands=[1], plus=["clamp"], minus=["add"], strengths=[1.5], minus_windows=[None, 8])
    settings, needs = side_jobs(space.check(4), 1)
    assert [s.minus_window for s in settings] == [None, 8]
    ups = {needs[s][0] for s in settings}
    assert len(ups) == 1  # the added side is shared: windows are the subtracted side's only
    sources = [VectorSource(None, "v", "c" * 64, None, None)]
    keys = [needs[s][1].key(sources) for s in settings]
    assert keys[0] == "cccccccccccccccc|L1|b1|shared|add|-1.5|multiplier"  # as before windows existed
    assert keys[1] == keys[0] + "|w8"
    recipe = needs[settings[1]][1].recipe()
    assert recipe.minus_window == 8 and recipe.plan(_vset(), [-1.5], 4).layers[1].window.tolist() == [8.0]
    with pytest.raises(SteeringError, match="--minus-windows must be integers >= 1 or 'all', found 0"):
        _space(minus_windows=[0]).check()


def test_cli_minus_windows_reach_the_defaults_file(engine, tmp_path, monkeypatch, capsys):
    questions = tmp_path / "tune.json"
    questions.write_text(json.dumps(QUESTIONS))
    flags = ["--questions", str(questions), "--layers", "1", "--plus", "clamp", "--minus", "add", "--strengths", "3"]
    flags += ["--minus-windows", "all", "2"]
    assert _tune_cli(engine, monkeypatch, *flags, "--dry-run") == 0  # the parity judge: no setting steers
    judge = _AddedSideJudge(tmp_path / "vectors" / "refusal" / "tiny.tune-cache.json")
    assert _tune_cli(engine, monkeypatch, *flags, detector=judge) == 0
    written = load_defaults(tmp_path / "vectors" / "refusal" / "tiny.defaults.json")
    info = written.info
    assert info["tuning"]["search"]["minus_windows"] == [None, 2]
    top = {t.get("minus_window"): t for t in info["top"]}
    assert set(top) == {None, 2}
    best = info["top"][0]
    assert written.recipe.minus_window == best.get("minus_window")
    jobs = json.loads((tmp_path / "vectors" / "refusal" / "tiny.tune-cache.json").read_text())["jobs"]
    assert any(k.endswith("|add|-3|multiplier|w2") for k in jobs) and any(
        k.endswith("|add|-3|multiplier") for k in jobs
    )
    # the window changed the subtracted answers (the tiny model's steer_from is its last prompt position)
    by_window = {k.endswith("|w2"): v["texts"] for k, v in jobs.items() if "|add|-3|" in k}
    assert by_window[True] != by_window[False]
    assert "(first 2)" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "x", "-3"])
def test_bad_minus_windows_are_one_line_and_exit_2(value, capsys):
    # argparse's type check: before the model loads
    assert_flag_refused(
        capsys, ["tune", "--minus-windows", value], "--minus-windows", "expected a whole number >= 1 or 'all'"
    )


# ---------------------------------------------------------------------------- loop share without --max-loops
def test_the_loop_share_is_reported_but_never_scored_or_ranked():
    """Without a loop limit (score_setting's max_loops None; `tune --max-loops off`; the limit itself:
    tests/test_tune_loops.py) rejudge measures each side's share of looping answers
    (steering.evaluation.refusal.is_loop) from its texts; the table shows it as "loops + / −", and two searches whose
    answers differ only in their loops (the same refusal, distinct-3 and perplexity) score, rank and choose exactly
    alike."""
    from steering.evaluation.tune import pooled_metrics, rank_key, rejudge, report_markdown, side_metrics

    fine = [f"Answer {i}: Saturn has rings of ice and rock and {i} moons." for i in range(4)]
    loop = "No, " * 30 + "no."
    never = RefusalDetector(["a phrase nobody writes"])

    def side(texts, refusal, distinct, ppl_nll):
        return rejudge(side_metrics([refusal] * 4, [distinct] * 4, [ppl_nll] * 4, texts), never)

    base = side(fine, False, 0.9, 0.7)
    assert base["loops"] == 0.0

    def search(loops_added: int, loops_subtracted: int) -> TuneResult:
        rows = []
        for strength, distinct, nll in ((1.0, 0.88, 0.8), (2.0, 0.8, 1.9), (3.0, 0.9, 0.75)):
            plus = side([loop] * loops_added + fine[loops_added:], False, distinct, nll)
            minus = side([loop] * loops_subtracted + fine[loops_subtracted:], False, distinct, nll)
            plus["refusal_rate"] = 0.25 * strength  # the contrast the judge would give
            scored = score_setting(plus, minus, base)
            rows.append(
                {
                    "setting": {
                        "vector": "v",
                        "layer": 1,
                        "band": 1,
                        "plus": "add",
                        "minus": "add",
                        "strength": strength,
                        "unit": "multiplier",
                    },
                    "source": 0,
                    **scored,
                    "added": plus,
                    "subtracted": minus,
                }
            )
        rows.sort(key=rank_key)
        winner, coherent = choose_winner(rows)
        return TuneResult(winner, coherent, rows, base, 0, 0.0)

    clean, loopy = search(0, 0), search(1, 3)
    assert [r["added"]["loops"] for r in loopy.rows] == [0.25] * 3
    assert [r["subtracted"]["loops"] for r in loopy.rows] == [0.75] * 3
    strip = lambda result: [{k: v for k, v in r.items() if k not in ("added", "subtracted")} for r in result.rows]  # noqa: E731
    assert strip(clean) == strip(loopy)  # scores, ratios, margins and the order: byte for byte
    assert clean.winner["setting"] == loopy.winner["setting"] and clean.coherent == loopy.coherent
    table = report_markdown(loopy)
    assert "| distinct-3 + / − | loops + / − | perplexity + / − |" in table
    assert "| 0.25 / 0.75 |" in table and "| 0.00 / 0.00 |" in report_markdown(clean)
    assert "| unsteered | | | | | | 0.00 | | 0.90 | 0.00 | 2.01 | | | |" in table
    assert pooled_metrics([loopy.rows[0]["added"], {**base, "n": 12}])["loops"] == pytest.approx(1 / 16)
    assert "loops" not in pooled_metrics([{**base, "loops": None}])  # a group without texts: not measured
