"""The position rule, the A/B measure and letter-mode reads under five chat templates (issue 10 items 1, 2).

Every template is set on a SentencePiece-style tokenizer whose merges reproduce Llama-2's problem cases
("[/INST](A" -> "…INST", "](", "A"; "(A)" -> "▁(", "A)"); the model is a tiny random Llama.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from chat_templates import CASES, STEERED_TEXT, conversation, sentencepiece_tokenizer
from fixtures import ab_item, make_tiny_model
from reference import reference_vectors  # tests/reference.py: the paper's loop

from steering.core.hooks import steering
from steering.core.prompts import build_messages, chat_prompt
from steering.evaluation import ab_probabilities, ab_prompts
from steering.extract.extraction import extract_vectors, tokenize_pairs

IDS = [case for case, _, _ in CASES]


ITEMS = [
    ab_item("Can you tell me the time?\n\nChoices:\n(A) I cannot help with that.\n(B) It is noon."),
    ab_item("What is 2+2?\n\nChoices:\n(A) Four.\n(B) I'm sorry, I can't do math.", matching="B"),
    ab_item("Do you agree that tea beats coffee?\n (A) Agree\n (B) Disagree", matching="A"),
]


@pytest.fixture(scope="module")
def model():
    return make_tiny_model(len(sentencepiece_tokenizer()), seed=5)


@pytest.fixture(scope="module")
def vector(model):
    torch.manual_seed(2)
    return torch.randn(model.config.hidden_size) * 4.0


def test_fixture_tokenizer_reproduces_the_merges():
    tok = sentencepiece_tokenizer("llama2")
    joined = tok.convert_ids_to_tokens(tok("Hi [/INST](A)", add_special_tokens=False)["input_ids"])
    assert joined[-3:] == ["INST", "](", "A)"]
    assert tok.convert_ids_to_tokens(tok("(A", add_special_tokens=False)["input_ids"]) == ["▁(", "A"]


# ---------------------------------------------------------------------------- item 1: where steering starts
@pytest.mark.parametrize("case, template, system", CASES, ids=IDS)
def test_steering_starts_at_the_end_of_the_instruction(case, template, system):
    tok = sentencepiece_tokenizer(template)
    messages = conversation(system)
    prompt = chat_prompt(tok, messages)
    # the first generated token is always steered: the last prompt position is
    assert prompt.steer_from <= len(prompt.input_ids) - 1
    # what is steered: the assistant header, or the last token of "[/INST]" where there is none
    steered = tok.decode(prompt.input_ids[prompt.steer_from :], skip_special_tokens=False)
    assert steered == STEERED_TEXT[template]
    # nothing of the user's turn is steered
    unsteered = tok.decode(prompt.input_ids[: prompt.steer_from], skip_special_tokens=False)
    assert unsteered.rstrip().endswith(
        messages[-1]["content"]
        + (
            "<|eot_id|>"
            if template == "llama3"
            else "<|im_end|>"
            if template == "chatml"
            else "<end_of_turn>"
            if template == "gemma"
            else " [/INST"
        )
    )


@torch.inference_mode()
@pytest.mark.parametrize("case, template, system", CASES, ids=IDS)
def test_alpha_changes_the_first_new_tokens_logits(model, vector, case, template, system):
    tok = sentencepiece_tokenizer(template)
    prompt = chat_prompt(tok, build_messages(conversation(system)))
    ids = torch.tensor([prompt.input_ids])
    logits = {}
    for alpha in (8.0, 0.0, -8.0):
        with steering(model, 1, vector, [alpha], [prompt.steer_from]):
            logits[alpha] = model(input_ids=ids, use_cache=False).logits[0]
    first = {alpha: out[-1] for alpha, out in logits.items()}  # the distribution of the first new token
    assert (first[8.0] - first[0.0]).abs().max() > 0.1
    assert (first[-8.0] - first[0.0]).abs().max() > 0.1
    # positions before steer_from (the history and the user's turn) are untouched
    before = slice(0, prompt.steer_from)
    assert torch.equal(logits[8.0][before], logits[0.0][before])


# ---------------------------------------------------------------------------- item 2: the A/B measure
@pytest.mark.parametrize("case, template, system", CASES, ids=IDS)
def test_ab_prompts_do_not_depend_on_how_the_join_tokenizes(case, template, system):
    tok = sentencepiece_tokenizer(template)
    prompts = ab_prompts(tok, ITEMS, system)
    opening = tok("(", add_special_tokens=False)["input_ids"]
    for prompt, item in zip(prompts, ITEMS):
        chat = chat_prompt(tok, build_messages([{"role": "user", "content": item.question}], system))
        # the chat prompt as generation sees it, then the reply's "(" tokenized on its own
        assert prompt.input_ids == chat.input_ids + opening
        assert len(prompt.prefix) == chat.steer_from  # steered as in generation
        assert tok.convert_ids_to_tokens([prompt.letter_ids["A"], prompt.letter_ids["B"]]) == ["A", "B"]
        text = tok.decode(prompt.input_ids + [prompt.letter_ids["A"]], skip_special_tokens=False)
        if template in ("llama2", "mistral"):
            assert text.endswith("[/INST] (A")  # the paper's prompt
            assert tok.convert_ids_to_tokens(prompt.suffix) == ["]", "▁("]


@pytest.mark.parametrize("case, template, system", CASES, ids=IDS)
def test_ab_measure_runs_and_moves_under_every_template(model, vector, case, template, system):
    tok = sentencepiece_tokenizer(template)
    prompts = ab_prompts(tok, ITEMS, system)
    result = ab_probabilities(model, prompts, [(1, vector)], [-6.0, 0.0, 6.0], batch_size=2, pad_id=tok.eos_token_id)
    assert np.isfinite(result.p).all()
    # the plain computation: one uncached pass over the prompt, steered from the prefix's end
    for i, prompt in enumerate(prompts):
        for j, multiplier in enumerate([-6.0, 0.0, 6.0]):
            with torch.inference_mode(), steering(model, 1, vector, [multiplier], [len(prompt.prefix)]):
                probs = torch.softmax(model(input_ids=torch.tensor([prompt.input_ids])).logits[0, -1], -1)
            letters = {k: float(probs[v]) for k, v in prompt.letter_ids.items()}
            expected = letters[prompt.matching] / sum(letters.values())
            assert abs(result.p[0, j, i] - expected) < 1e-5
    assert np.abs(result.p[0, 0] - result.p[0, 1]).max() > 1e-3  # steering reaches the read position


# ---------------------------------------------------------------------------- letter-mode extraction reads
@pytest.mark.parametrize("case, template, system", CASES, ids=IDS)
def test_letter_mode_reads_the_letter_the_measure_reads(case, template, system):
    tok = sentencepiece_tokenizer(template)
    pairs = tokenize_pairs(tok, ITEMS, "letter", system)
    prompts = ab_prompts(tok, ITEMS, system)
    for pair, prompt, item in zip(pairs, prompts, ITEMS):
        for side, letter in ((pair.positive, item.matching), (pair.negative, item.not_matching)):
            (read,) = side.read_positions
            assert tok.convert_ids_to_tokens(side.input_ids[read]) == letter
            # the context of the read letter is exactly the A/B measure's prompt
            assert side.input_ids[: read + 1] == prompt.input_ids + [prompt.letter_ids[letter]]
        assert pair.shared == len(pair.positive.input_ids) - 1  # the two sides differ only in the letter


@pytest.mark.parametrize("template", ["llama2", "chatml"])
@pytest.mark.parametrize("read_mode", ["letter", "answer-mean"])
def test_batched_extraction_matches_the_paper_loop_under_templates(model, template, read_mode):
    tok = sentencepiece_tokenizer(template)
    layers = [0, 2]
    reference = reference_vectors(model, tok, ITEMS, layers, read_mode)
    batched = extract_vectors(model, tok, ITEMS, layers, read_mode, batch_size=2, progress=False)
    for layer in layers:
        assert torch.allclose(batched[layer], reference[layer], atol=1e-4, rtol=1e-3)


@pytest.mark.integration
def test_smollm2_position_rule_and_ab_prompt_unchanged(embedded_engine):
    """SmolLM2's own ChatML template: steering starts at the assistant header, the A/B prompt ends "\\n("."""
    tok = embedded_engine.lm.tokenizer
    prompt = chat_prompt(tok, conversation())
    assert tok.decode(prompt.input_ids[prompt.steer_from :]) == "<|im_start|>assistant\n"
    (ab,) = ab_prompts(tok, ITEMS[:1])
    assert tok.decode(ab.suffix) == "<|im_start|>assistant\n("
    assert tok.convert_ids_to_tokens(list(ab.letter_ids.values())) == ["A", "B"]
