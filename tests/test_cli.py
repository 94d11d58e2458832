"""Bad input on the command line: a one-line error and a non-zero exit, never a traceback."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from steering.config import PROJECT_ROOT


def test_missing_dataset():
    assert_one_line_error(run_cli("extract", "--dataset", "no/such.json"), "no/such.json: file not found")


def test_invalid_dataset(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [
                {
                    "question": "Q\n\nChoices:\n(A) a\n(B) b",
                    "answer_matching_behavior": "(C)",
                    "answer_not_matching_behavior": "(B)",
                }
            ]
        )
    )
    assert_one_line_error(run_cli("extract", "--dataset", str(bad)), "item 0", "(C)")


def test_non_numeric_multiplier():
    assert_one_line_error(run_cli("chat", "--prompt", "hi", "--multiplier", "lots"), "expected a number, found 'lots'")


def test_unreadable_config(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model: [unclosed\n")
    assert_one_line_error(run_cli("chat", "--prompt", "hi", "--config", str(config)), "is not valid YAML")


def test_compare_vectors_missing_file(tmp_path):
    assert_one_line_error(
        run_cli("compare-vectors", str(tmp_path / "a.safetensors"), str(tmp_path / "b.pt")),
        "a.safetensors: file not found",
    )


@pytest.mark.integration
def test_unknown_behavior():
    assert_one_line_error(
        run_cli("chat", "--prompt", "hi", "--behavior", "nosuch"),  # no dataset, no vectors
        "no 'nosuch' vectors",
        "known behaviors: ",
        "refusal",
    )


@pytest.mark.integration
def test_layer_out_of_range():
    assert_one_line_error(
        run_cli("chat", "--prompt", "hi", "--layer", "30"), "layer 30 is out of range: the model has layers 0..29"
    )


@pytest.mark.integration
def test_vector_of_the_wrong_size(tmp_path):
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet

    path = save_safetensors(VectorSet({9: torch.ones(16)}), tmp_path / "small.safetensors")
    assert_one_line_error(
        run_cli("chat", "--prompt", "hi", "--vector", str(path)),
        "vector size 16 does not match the model's hidden size 576",
    )


@pytest.mark.integration
def test_compare_vectors_against_the_paper_layout():
    folder = PROJECT_ROOT / "vectors" / "refusal"
    result = run_cli("compare-vectors", str(folder / "smollm2-135m-instruct.safetensors"), str(folder), "--json")
    assert result.returncode == 0, result.stderr
    cosines = json.loads(result.stdout)
    assert len(cosines) == 30 and min(cosines.values()) > 0.9999
