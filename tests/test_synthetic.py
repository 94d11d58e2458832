"""steering.synthetic: the Llama shapes are the released models' shapes, and random_llama is seeded and never
stops early (the GPU scripts, the benchmark and the tests build their models with it)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from steering.synthetic import LLAMA2_7B, LLAMA2_70B, TINY, llama_config, random_llama


@pytest.mark.parametrize(
    "shape, params",
    [(LLAMA2_7B, 6_738_415_616), (LLAMA2_70B, 68_976_648_192)],  # the released checkpoints' parameter counts
)
def test_named_shapes_have_the_released_models_parameter_counts(shape, params):
    model = random_llama(shape, device="meta")  # no memory: shapes only
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.config.num_key_value_heads == shape.kv_heads and not model.config.tie_word_embeddings


def test_random_llama_is_seeded_eval_without_eos():
    shape = replace(TINY, layers=2)
    a, b, c = random_llama(shape, seed=1), random_llama(shape, seed=1), random_llama(shape, seed=2)
    weight = "model.layers.1.mlp.up_proj.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert a.config.eos_token_id is None and a.generation_config.eos_token_id is None
    assert a.config.num_hidden_layers == 2 and a.config.hidden_size == TINY.hidden


def test_llama_config_takes_every_field_of_the_shape():
    config = llama_config(replace(TINY, context=1024, norm_eps=1e-6, vocab=300))
    assert (config.max_position_embeddings, config.rms_norm_eps, config.vocab_size) == (1024, 1e-6, 300)
    assert (config.intermediate_size, config.num_attention_heads) == (TINY.mlp, TINY.heads)
