"""The batched, prefix-sharing extractor against the paper's one-pair-at-a-time loop."""

from __future__ import annotations

import pytest
import torch
from fixtures import AB_ITEMS
from reference import reference_vectors  # tests/reference.py: the paper's loop

from steering.extract.extraction import extract_vectors, tokenize_pairs


@pytest.mark.parametrize("read_mode", ["letter", "answer-mean"])
def test_batched_extraction_matches_the_paper_loop(tiny_model, tiny_tokenizer, read_mode):
    layers = list(range(tiny_model.config.num_hidden_layers))
    reference = reference_vectors(tiny_model, tiny_tokenizer, AB_ITEMS, layers, read_mode)
    batched = extract_vectors(tiny_model, tiny_tokenizer, AB_ITEMS, layers, read_mode, batch_size=3, progress=False)
    for layer in layers:
        cosine = torch.nn.functional.cosine_similarity(batched[layer], reference[layer], dim=0)
        assert cosine >= 0.999, f"layer {layer}: cosine {cosine:.5f}"
        assert torch.allclose(batched[layer], reference[layer], atol=1e-4, rtol=1e-3)


def test_letter_mode_reads_the_answer_letter(tiny_tokenizer):
    pair = tokenize_pairs(tiny_tokenizer, AB_ITEMS[:1], "letter")[0]
    letter_token = tiny_tokenizer.decode([pair.positive.input_ids[pair.positive.read_positions[0]]])
    assert letter_token == "A" and AB_ITEMS[0].matching == "A"
    # the tokens after the letter (")") are dropped: nothing after the read position is computed
    assert pair.positive.read_positions == [len(pair.positive.input_ids) - 1]
    assert pair.shared == len(pair.positive.input_ids) - 1  # everything but the letter is shared


def test_answer_mean_reads_only_the_answer(tiny_tokenizer):
    pair = tokenize_pairs(tiny_tokenizer, AB_ITEMS[1:2], "answer-mean")[0]
    text = tiny_tokenizer.decode([pair.positive.input_ids[i] for i in pair.positive.read_positions])
    assert text == AB_ITEMS[1].choices[AB_ITEMS[1].matching]


def test_only_requested_layers_and_order_independence(tiny_model, tiny_tokenizer):
    one = extract_vectors(tiny_model, tiny_tokenizer, AB_ITEMS, [1], "answer-mean", batch_size=2, progress=False)
    other = extract_vectors(
        tiny_model, tiny_tokenizer, list(reversed(AB_ITEMS)), [1, 2], "answer-mean", batch_size=5, progress=False
    )
    assert set(one) == {1} and set(other) == {1, 2}
    assert torch.allclose(one[1], other[1], atol=1e-5)
