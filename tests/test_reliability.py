"""Per-prompt reliability (steering/evaluation/reliability.py): slopes, wrong-way share, Wilson interval, plots."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from steering.errors import SteeringError
from steering.evaluation.reliability import (
    markdown,
    open_ended_scores,
    plot_histograms,
    slopes,
    summarize,
    wilson_interval,
)

ALPHAS = [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_slopes_by_hand():
    scores = [
        [0, 0, 0, 1, 1],  # x - mean = -2..2, sum x^2 = 10; y - 0.4 -> sum = 0.8 + 0.4 + 0 + 0.6 + 1.2 = 3 -> 0.3
        [1, 1, 0, 0, 0],  # the mirror image: -0.3 (wrong way)
        [0.5] * 5,  # flat: 0
        [0.1, 0.3, 0.5, 0.7, 0.9],  # exactly linear: 0.2
        [math.nan, 0, 0.5, 1, math.nan],  # fitted on alpha -1, 0, 1 only: 0.5
        [math.nan, math.nan, 1, math.nan, math.nan],  # one point: no slope
    ]
    got = slopes(ALPHAS, scores)
    assert got[:5] == pytest.approx([0.3, -0.3, 0.0, 0.2, 0.5])
    assert math.isnan(got[5])


def test_uneven_multipliers_by_hand():
    # alpha 0, 1, 3: mean 4/3; x - mean = -4/3, -1/3, 5/3; sum of squares 42/9; y = 0, 0, 1 -> 5/3 / (42/9) = 15/42
    assert slopes([0, 1, 3], [[0, 0, 1]])[0] == pytest.approx(15 / 42)


def test_wilson_interval_known_values():
    # textbook values: 1 of 10 -> 0.0179..0.4042; 0 of 20 -> 0..0.1611; 5 of 10 -> 0.2366..0.7634
    assert wilson_interval(1, 10) == pytest.approx((0.0179, 0.4042), abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(SteeringError, match="11 of 10 is not a proportion"):
        wilson_interval(11, 10)


def test_summary_counts_wrong_way_and_flat():
    scores = [
        [0, 0, 0, 1, 1],
        [1, 1, 0, 0, 0],
        [0.5] * 5,
        [0.1, 0.3, 0.5, 0.7, 0.9],
        [math.nan, math.nan, 1, math.nan, math.nan],
    ]
    r = summarize(ALPHAS, scores, "refusal")
    assert r.n == 4 and r.wrong_way == 1 and r.flat == 1
    assert r.wrong_way_share == 0.25
    assert r.mean_slope == pytest.approx((0.3 - 0.3 + 0 + 0.2) / 4)
    assert r.median_slope == pytest.approx(0.1)
    assert r.wrong_way_ci == pytest.approx(wilson_interval(1, 4))
    data = json.loads(json.dumps(r.to_dict(), allow_nan=True))
    assert data["wrong_way_ci"] == list(r.wrong_way_ci) and len(data["slopes"]) == 5


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(SteeringError, match=r"scores of shape \(2, 3\) for 5 multipliers"):
        slopes(ALPHAS, np.zeros((2, 3)))
    with pytest.raises(SteeringError, match="at least two different multipliers"):
        slopes([1.0, 1.0], [[0, 1]])
    with pytest.raises(SteeringError, match="no prompt has scores at two different multipliers"):
        summarize(ALPHAS, [[math.nan, math.nan, 1, math.nan, math.nan]], "refusal")


def test_open_ended_scores_take_the_shared_unsteered_answers():
    def answer(q, variant, m, refusal):
        return SimpleNamespace(question=q, variant=variant, multiplier=m, refusal=refusal)

    answers = [
        answer("a", "vector", -1.0, False),
        answer("a", "vector", 0.0, False),
        answer("a", "vector", 1.0, True),
        answer("b", "vector", -1.0, True),
        answer("b", "vector", 0.0, False),
        answer("b", "vector", 1.0, False),
        answer("a", "random", 1.0, True),
        answer("b", "random", 1.0, True),
    ]
    multipliers, questions, scores = open_ended_scores(answers)
    assert multipliers == [-1.0, 0.0, 1.0] and questions == ["a", "b"]
    assert scores.tolist() == [[0, 0, 1], [1, 0, 0]]
    r = summarize(multipliers, scores, "refusal")
    assert r.slopes == [0.5, -0.5] and r.wrong_way == 1


def test_histogram_and_markdown(tmp_path):
    from steering.evaluation import save_figure

    r = summarize(ALPHAS, [[0, 0, 0, 1, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1]], "refusal")
    fig = plot_histograms({"open-ended": r, "A/B": r}, "title")
    assert len(fig.axes) == 2 and "wrong way 1/3" in fig.axes[0].get_title()
    save_figure(fig, tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    text = "\n".join(markdown({"open-ended": r}))
    assert "| open-ended (refusal) | 3 | -2, -1, 0, 1, 2 | +0.1000 |" in text and "1 (33%)" in text


@pytest.mark.integration
def test_evaluate_reports_reliability(tmp_path, capsys):
    """`evaluate` on the embedded model: reliability.json's open-ended slopes are the by-hand slopes of the
    refusals in open_ended.json; summary.md and reliability.png carry them."""
    from steering.cli import main

    flags = "--layers 9 --multipliers -2 0 2 --limit-ab 4 --limit-open 3 --max-new-tokens 8".split()
    code = main(["evaluate", *flags, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    rel = json.loads((tmp_path / "reliability.json").read_text())
    answers = json.loads((tmp_path / "open_ended.json").read_text())["answers"]
    by_hand = []
    for question in dict.fromkeys(a["question"] for a in answers):
        y = [
            next(
                float(a["refusal"])
                for a in answers
                if a["question"] == question and a["multiplier"] == m and (a["variant"] == "vector" or m == 0)
            )
            for m in (-2.0, 0.0, 2.0)
        ]
        by_hand.append((2 * y[2] - 2 * y[0]) / 8)  # x = -2, 0, 2: sum x^2 = 8
    assert rel["open-ended"]["slopes"] == pytest.approx(by_hand)
    assert rel["open-ended"]["wrong_way"] == sum(s < 0 for s in by_hand)
    assert rel["A/B"]["n"] == 4 and len(rel["A/B"]["slopes"]) == 4
    assert "## Per-prompt reliability (Tan et al. 2024)" in out
    assert (tmp_path / "reliability.png").stat().st_size > 1000
