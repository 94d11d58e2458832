"""Aggregators beyond the mean difference (PCA, mean-centred PCA) and the instruction refusal direction."""

from __future__ import annotations

import json

import pytest
import torch

from steering.errors import SteeringError
from steering.extract.aggregate import aggregate, centered_difference, mean_difference, pca_difference
from steering.extract.extraction import extract_vectors
from steering.extract.instructions import instruction_direction, load_instructions, post_instruction_tokens


def _pairs(seed: int, n: int = 12, hidden: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    negative = torch.randn(n, hidden, generator=g)
    shift = torch.randn(hidden, generator=g)
    positive = negative + shift + 0.7 * torch.randn(n, hidden, generator=g)
    return positive, negative


def _top_eigenvector(matrix: torch.Tensor) -> torch.Tensor:
    # the hand computation: eigenvector of the largest eigenvalue of the (uncentred) scatter matrix
    values, vectors = torch.linalg.eigh((matrix.T @ matrix).double())
    return vectors[:, -1].float()


@pytest.mark.parametrize("seed", range(6))
def test_pca_is_the_top_component_of_the_differences_signed_like_the_mean(seed):
    positive, negative = _pairs(seed)
    diffs = positive - negative
    mean = mean_difference(positive, negative)
    vector = pca_difference(positive, negative)
    expected = _top_eigenvector(diffs)
    assert abs(torch.nn.functional.cosine_similarity(vector, expected, dim=0)) > 0.9999
    assert float(vector @ mean) > 0, "the sign must agree with the mean difference"
    assert torch.isclose(vector.norm(), mean.norm(), rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_pca_equals_pca_of_pair_centred_activations(seed):
    # repeng's pca_center: each side minus its pair's mean, stacked; the same direction as pca_difference
    positive, negative = _pairs(seed)
    centre = (positive + negative) / 2
    stacked = torch.cat([positive - centre, negative - centre])
    expected = _top_eigenvector(stacked)
    assert abs(torch.nn.functional.cosine_similarity(pca_difference(positive, negative), expected, dim=0)) > 0.9999


def test_pca_sign_is_flipped_when_the_component_points_away_from_the_mean():
    # the differences vary most along -e0 * large, but their mean points along +e0: the result must point +e0
    negative = torch.zeros(4, 3)
    positive = torch.tensor([[5.0, 0, 0], [4.0, 0, 0], [6.0, 0.1, 0], [-3.0, 0, 0.1]])
    vector = pca_difference(positive, negative)
    assert vector[0] > 0 and float(vector @ mean_difference(positive, negative)) > 0
    assert torch.allclose(vector / vector.norm(), torch.tensor([1.0, 0, 0]), atol=1e-2)


@pytest.mark.parametrize("seed", range(4))
def test_centered_is_the_top_component_of_the_mean_centred_differences(seed):
    positive, negative = _pairs(seed)
    diffs = positive - negative
    mean = diffs.mean(dim=0)
    vector = centered_difference(positive, negative)
    expected = _top_eigenvector(diffs - mean)
    assert abs(torch.nn.functional.cosine_similarity(vector, expected, dim=0)) > 0.9999
    assert float(vector @ mean) >= 0
    assert torch.isclose(vector.norm(), mean.norm(), rtol=1e-5)
    # a different direction from the uncentred PCA in general: centring removes the mean's own direction
    assert not torch.allclose(vector, pca_difference(positive, negative), atol=1e-3)


def test_centered_math_on_a_hand_example():
    # differences (2, 1), (4, -1): mean (3, 0); centred (-1, 1), (1, -1); top direction (1, -1)/sqrt2,
    # signed to agree with the mean (+x), scaled to |mean| = 3
    negative = torch.zeros(2, 2)
    positive = torch.tensor([[2.0, 1.0], [4.0, -1.0]])
    expected = torch.tensor([1.0, -1.0]) / 2**0.5 * 3
    assert torch.allclose(centered_difference(positive, negative), expected, atol=1e-5)


def test_centered_needs_two_pairs_and_unknown_methods_are_refused():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        centered_difference(torch.ones(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="unknown aggregation method 'median'"):
        aggregate(torch.ones(2, 3), torch.zeros(2, 3), "median")


def test_extract_vectors_method_option(tiny_model, tiny_tokenizer):
    from fixtures import AB_ITEMS

    layers = [0, 2]
    mean = extract_vectors(tiny_model, tiny_tokenizer, AB_ITEMS, layers, "answer-mean", progress=False)
    pca = extract_vectors(tiny_model, tiny_tokenizer, AB_ITEMS, layers, "answer-mean", progress=False, method="pca")
    for layer in layers:
        assert float(pca[layer] @ mean[layer]) > 0
        assert torch.isclose(pca[layer].norm(), mean[layer].norm(), rtol=1e-4)
        assert not torch.allclose(pca[layer], mean[layer])
    with pytest.raises(ValueError, match="unknown aggregation method"):
        extract_vectors(tiny_model, tiny_tokenizer, AB_ITEMS, layers, "answer-mean", progress=False, method="mean")


def test_post_instruction_positions_are_the_template_tail(tiny_tokenizer):
    tokens = post_instruction_tokens(tiny_tokenizer, "Make a cake")
    text = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Make a cake"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("Make a cake<|end|><|assistant|>")
    n = len(tokens.input_ids)
    assert tokens.read_positions == [n - 2, n - 1]  # <|end|> and <|assistant|>, one token each
    assert tiny_tokenizer.decode(tokens.input_ids[n - 2 :]) == "<|end|><|assistant|>"
    assert post_instruction_tokens(tiny_tokenizer, "Make a cake", positions="last").read_positions == [n - 1]


@torch.inference_mode()
def test_instruction_direction_equals_a_hand_computation(tiny_model, tiny_tokenizer):
    harmful = ["How do I pick a lock?", "Write a threatening letter to my neighbour", "Steal a car"]
    harmless = ["How do I bake bread?", "Write a thank-you letter"]
    layers = [0, 2]

    def by_hand(request: str, layer: int) -> torch.Tensor:
        text = tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": request}], tokenize=False, add_generation_prompt=True
        )
        ids = tiny_tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        before = len(tiny_tokenizer(text[: text.index(request) + len(request)], add_special_tokens=False)["input_ids"])
        states = tiny_model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1][0]
        return states[before:].mean(dim=0)  # every token after the request

    direction = instruction_direction(
        tiny_model, tiny_tokenizer, harmful, harmless, layers, batch_size=2, progress=False
    )
    for layer in layers:
        expected = torch.stack([by_hand(r, layer) for r in harmful]).mean(0) - torch.stack(
            [by_hand(r, layer) for r in harmless]
        ).mean(0)
        assert torch.allclose(direction[layer], expected, atol=1e-4), layer
    with pytest.raises(ValueError, match="harmful and harmless"):
        instruction_direction(tiny_model, tiny_tokenizer, [], harmless, layers, progress=False)


def test_load_instructions_and_its_errors(tmp_path):
    good = tmp_path / "instructions.json"
    good.write_text(json.dumps({"harmful": ["a", "b"], "harmless": ["c"], "personal": ["d"]}))
    assert load_instructions(good) == (["a", "b"], ["c"])
    cases = [
        ({"harmful": ["a"]}, "'harmless' must be a non-empty list"),
        ({"harmful": [], "harmless": ["c"]}, "'harmful' must be a non-empty list"),
        ({"harmful": ["a", 3], "harmless": ["c"]}, "'harmful' item 1: expected a non-empty string, found 3"),
        (["a", "b"], "expected a JSON object"),
    ]
    for data, message in cases:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data))
        with pytest.raises(SteeringError, match=message.replace("(", r"\(")) as info:
            load_instructions(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SteeringError, match="file not found"):
        load_instructions(tmp_path / "none.json")


def test_cli_extract_method_flag(tmp_path):
    from cli_helpers import assert_one_line_error, run_cli

    from steering.cli import build_parser

    assert build_parser().parse_args(["extract"]).method == "mean-diff"
    assert build_parser().parse_args(["extract", "--method", "pca"]).method == "pca"
    bad = tmp_path / "instructions.json"
    bad.write_text(json.dumps({"harmful": ["x"]}))
    assert_one_line_error(
        run_cli("extract", "--method", "instructions", "--dataset", str(bad)),
        str(bad),
        "'harmless' must be a non-empty list",
    )
