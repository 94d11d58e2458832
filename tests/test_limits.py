"""steering/core/limits.py: the request caps every entry point shares, and the config section that sets them."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from fixtures import make_tiny_tokenizer

from steering.cli import main
from steering.config import Config, override
from steering.core.datasets import ABItem
from steering.core.limits import (
    SEED_MAX,
    Limits,
    check_behavior_name,
    check_finite,
    check_in_range,
    check_multiplier,
    check_seed,
    check_token_budget,
    check_whole_number,
)
from steering.errors import SteeringError


def test_multiplier_must_be_finite_and_bounded():
    assert check_multiplier("2.5") == 2.5
    assert check_multiplier(-100) == -100.0
    for bad, message in (
        (math.nan, "finite"),
        (math.inf, "finite"),
        ("x", "must be a number"),
        (100.5, "out of range: expected between -100 and 100"),
    ):
        with pytest.raises(SteeringError, match=message):
            check_multiplier(bad)
    with pytest.raises(SteeringError, match="alpha 6 is out of range: expected between -5 and 5"):
        check_multiplier(6, Limits(max_abs_multiplier=5), name="alpha")
    with pytest.raises(SteeringError, match="must be a number"):
        check_finite(None, "x")


def test_seed_range_is_what_torch_accepts():
    assert check_seed(0) == 0 and check_seed(SEED_MAX) == SEED_MAX and check_seed(7.0) == 7
    for bad in (-1, SEED_MAX + 1, 99999999999999999999999, 1.5, True, "abc", None):
        with pytest.raises(SteeringError, match="seed"):
            check_seed(bad)


def test_whole_numbers_and_ranges_one_rule_for_seeds_and_the_apps_settings():
    """check_whole_number is the app's layer / token check and check_seed's: the same one-line messages."""
    assert check_whole_number(" 12 ", "layer", 0, 29) == 12 and check_whole_number(3.0, "layer", 0, 29) == 3
    assert check_seed(" 12 ") == 12
    for bad in (True, None, 2.5, math.nan, math.inf, "x", "1.5"):
        with pytest.raises(SteeringError, match=rf"^layer must be a whole number, got {re.escape(repr(bad))}$"):
            check_whole_number(bad, "layer", 0, 29)
        with pytest.raises(SteeringError, match=rf"^seed must be a whole number, got {re.escape(repr(bad))}$"):
            check_seed(bad)
    with pytest.raises(SteeringError, match="^layer 30 is out of range: expected 0 to 29$"):
        check_whole_number(30, "layer", 0, 29)
    assert check_in_range("0.5", "top_p", 0.05, 1.0) == 0.5
    for bad in (True, math.nan, 1.5, 0.0):
        with pytest.raises(SteeringError, match=r"^top_p .* is out of range: expected 0.05 to 1$"):
            check_in_range(bad, "top_p", 0.05, 1.0)
    with pytest.raises(SteeringError, match="^top_p must be a number, got 'x'$"):
        check_in_range("x", "top_p", 0.05, 1.0)


@pytest.mark.parametrize("name", ["", "../x", "/etc", "a/b", "Refusal", "x y", ".."])
def test_behavior_names_are_names(name):
    with pytest.raises(SteeringError, match="is not valid"):
        check_behavior_name(name)


def test_behavior_names_accepted():
    assert check_behavior_name("survival-instinct_2") == "survival-instinct_2"


def test_token_budget():
    limits = Limits(max_new_tokens=8, max_prompt_tokens=10)
    check_token_budget(10, 8, limits, context_length=18)
    with pytest.raises(SteeringError, match="max_new_tokens 9 is out of range: expected 1 to 8"):
        check_token_budget(1, 9, limits)
    with pytest.raises(SteeringError, match="11 tokens long .* the limit is 10"):
        check_token_budget(11, 1, limits)
    with pytest.raises(SteeringError, match="plus 8 new tokens exceeds the model's context of 17"):
        check_token_budget(10, 8, limits, context_length=17)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"max_abs_multiplier": math.nan}, "limits.max_abs_multiplier must be a finite number > 0, got nan"),
        ({"max_abs_multiplier": math.inf}, "limits.max_abs_multiplier must be a finite number > 0"),
        ({"max_abs_multiplier": 0}, "limits.max_abs_multiplier must be a finite number > 0"),
        ({"max_new_tokens": -5}, "limits.max_new_tokens must be a whole number >= 1, got -5"),
        ({"max_prompt_tokens": 1.5}, "'limits.max_prompt_tokens' must be a whole number, found 1.5"),
        ({"max_dataset_item_chars": True}, "'limits.max_dataset_item_chars' must be a whole number, found True"),
        ({"max_tokens": 3}, "unknown key 'limits.max_tokens'"),
    ],
)
def test_config_limits_that_would_switch_a_check_off_are_refused(section, message):
    with pytest.raises(SteeringError) as exc:
        override(Config(), limits=section)
    assert message in str(exc.value)


def test_cli_refuses_a_broken_limits_section_in_one_line(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"limits": {"max_abs_multiplier": float("nan")}}))
    code = main(["chat", "--config", str(config), "--prompt", "hi", "--multiplier", "1e9"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"error: config file {config}: limits.max_abs_multiplier must be a finite number > 0, got nan"
    ]


def test_extraction_and_the_ab_measure_apply_the_prompt_token_cap():
    from steering.evaluation import ab_prompts
    from steering.extract.extraction import tokenize_pairs

    tokenizer = make_tiny_tokenizer()  # one token per byte
    item = ABItem("Which one?\n\nChoices:\n(A) yes\n(B) no", "Which one?", {"A": "yes", "B": "no"}, "A", "B")
    long_system = "x" * 300
    assert tokenize_pairs(tokenizer, [item], "letter", long_system, max_tokens=4096)
    with pytest.raises(
        SteeringError,
        match=r"dataset item 0: the prompt with option \(A\) is \d+ tokens long .*"
        r"the limit is 100 \(limits.max_prompt_tokens\)",
    ):
        tokenize_pairs(tokenizer, [item], "letter", long_system, max_tokens=100)
    assert ab_prompts(tokenizer, [item], long_system, max_tokens=4096)
    with pytest.raises(SteeringError, match=r"A/B item 0: the prompt is \d+ tokens long .*the limit is 100"):
        ab_prompts(tokenizer, [item], long_system, max_tokens=100)
