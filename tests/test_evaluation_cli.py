"""`python -m steering evaluate`: bad file content and numbers give one line and exit 2; a tiny real sweep. (Bad
flags, files and destinations: tests/test_cli_input.py test_evaluate_input_refused_before_the_model_loads.)"""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_main

from steering.cli import main


def test_bad_number_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--multipliers", "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bad_ab_file_content(tmp_path, capsys):
    bad = tmp_path / "ab.json"
    # invalid in every read mode: the matching letter is not A or B
    bad.write_text(
        '[{"question": "Q?\\n\\nChoices:\\n(A) yes\\n(B) no", "answer_matching_behavior": "(C)", '
        '"answer_not_matching_behavior": "(B)"}]'
    )
    code, _, err = run_main(capsys, "evaluate", "--ab", str(bad), "--out", str(tmp_path / "out"))
    assert code == 2 and "item 0" in err and err.count("\n") == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layers", "9", "30"], "layer 30 is out of range: the model has layers 0..29"),
        (["--layer", "-1"], "layer -1 is out of range"),
    ],
)
def test_bad_layer(capsys, argv, message):
    code, _, err = run_main(capsys, "evaluate", *argv, "--limit-ab", "1", "--no-open-ended")
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.integration
def test_evaluate_tiny_sweep_on_the_embedded_model(tmp_path, capsys):
    from steering.config import load_config
    from steering.evaluation.run import OUTPUTS

    defaults = load_config().models["smollm2-135m-instruct"]
    layer, m = int(defaults.layer), float(defaults.multiplier)
    # --layer: the controls' layer given explicitly (a tuned defaults file may pick another one)
    code, out, err = run_main(
        capsys,
        "evaluate",
        "--layers",
        str(layer),
        str(layer + 6),
        "--multipliers",
        str(-m),
        "0",
        str(m),
        "--layer",
        str(layer),
        "--limit-ab",
        "6",
        "--limit-open",
        "2",
        "--max-new-tokens",
        "6",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    for name in OUTPUTS:
        assert (tmp_path / name).stat().st_size > 0, name
    ab = json.loads((tmp_path / "ab_sweep.json").read_text())
    assert ab["layers"] == [layer, layer + 6] and ab["multipliers"] == [-m, 0.0, m]
    at_default = ab["p_match"][0]
    # The shipped answer-mean vectors barely move the letter choice of this 135M model (the full sweep in
    # results/eval/ is flat at 0.49 +- 0.05, like the random control), so no monotonic rise is asserted
    # here; test_ab_measure_follows_a_letter_direction checks the measure responds to a real push.
    assert all(0 < v < 1 for row in ab["p_match"] for v in row)
    assert ab["controls"]["vector"] == at_default
    assert ab["controls"]["negated"] == pytest.approx(at_default[::-1], abs=1e-3)  # -v at +a is v at -a
    open_ended = json.loads((tmp_path / "open_ended.json").read_text())
    assert len(open_ended["answers"]) == 2 * 3 + 2 * 2  # vector at 3 multipliers, two controls at +m
    assert {r["multiplier"] for r in open_ended["summary"]["vector"]} == {-m, 0.0, m}
    assert "# Evaluation: refusal" in out and (tmp_path / "summary.md").read_text() == out


@pytest.mark.integration
def test_layer_skipping_matches_the_hook_on_the_embedded_model(embedded_engine):
    from steering.core.datasets import load_ab_dataset
    from steering.core.prompts import pad_token_id
    from steering.evaluation import ab_probabilities, ab_prompts

    lm = embedded_engine.lm
    vset = embedded_engine.vectors_for("refusal")
    prompts = ab_prompts(lm.tokenizer, load_ab_dataset("datasets/refusal/test_ab.json")[:3])
    specs = [(layer, vset.vector(layer)) for layer in (9, 29)]
    fast, slow = (
        ab_probabilities(
            lm.model, prompts, specs, [-3.0, 0.0, 6.0], pad_id=pad_token_id(lm.tokenizer), skip_layers=skip
        )
        for skip in (True, False)
    )
    assert abs(fast.p - slow.p).max() < 1e-4


@pytest.mark.integration
def test_ab_measure_follows_a_letter_direction(embedded_engine):
    """Positive control: adding the unembedding direction W[A] - W[B] at the last block raises p(match)
    monotonically with the multiplier on questions whose matching answer is (A)."""
    from steering.core.datasets import load_ab_dataset
    from steering.evaluation import ab_sweep

    lm = embedded_engine.lm
    items = [item for item in load_ab_dataset("datasets/refusal/test_ab.json") if item.matching == "A"][:4]
    a, b = (lm.tokenizer.convert_tokens_to_ids(letter) for letter in "AB")
    unembed = lm.model.get_output_embeddings().weight.detach().float()
    direction = unembed[a] - unembed[b]
    direction = direction / direction.norm()
    curve = ab_sweep(embedded_engine, direction, [lm.num_layers - 1], [-20.0, 0.0, 20.0], items)[0]
    assert curve[0] < curve[1] < curve[2], curve
