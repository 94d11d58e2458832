"""FewRowLinear: the decoding-step product (W @ x.T).T gives nn.Linear's results and the same text."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from steering.decode.cpu_linear import MAX_ROWS, FewRowLinear, standard_linear, use_few_row_linear
from steering.decode.generation import SamplingSettings, SteeringSpec, generate


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 24), (2, 1, 24), (3, 1, 24), (4, 24), (1, 7, 24), (3, 5, 24), (24,)])
def test_matches_nn_linear(bias, shape):
    torch.manual_seed(0)
    plain = nn.Linear(24, 40, bias=bias)
    few = copy.deepcopy(plain)
    few.__class__ = FewRowLinear
    x = torch.randn(*shape)
    expected, got = plain(x), few(x)
    assert got.shape == expected.shape
    assert got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_falls_back_to_nn_linear_for_many_rows_and_other_dtypes():
    few = nn.Linear(8, 8)
    use_few_row_linear(few)
    calls = []
    few.register_forward_hook(lambda *_: calls.append(1))
    original_mm = torch.mm
    used = []
    try:
        torch.mm = lambda *a, **k: used.append(1) or original_mm(*a, **k)  # type: ignore[assignment]
        few(torch.randn(MAX_ROWS + 1, 8))
        assert not used  # many rows: F.linear
        few(torch.randn(2, 8))
        assert used  # few rows: the (W @ x.T) product
    finally:
        torch.mm = original_mm  # type: ignore[assignment]
    assert len(calls) == 2


def test_switches_only_plain_float32_linears_and_keeps_the_state_dict(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.model.layers[0].mlp.down_proj.to(torch.float64)
    keys = list(model.state_dict())
    switched = use_few_row_linear(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert switched == len(linears) - 1  # every float32 nn.Linear, the float64 one left alone
    assert type(model.model.layers[0].mlp.down_proj) is nn.Linear
    assert type(model.lm_head) is FewRowLinear
    assert list(model.state_dict()) == keys
    with standard_linear(model) as restored:
        assert restored == switched
        assert not any(type(m) is FewRowLinear for m in model.modules())
    assert sum(type(m) is FewRowLinear for m in model.modules()) == switched


def test_generation_gives_the_same_tokens(tiny_model, tiny_tokenizer):
    model = copy.deepcopy(tiny_model)
    use_few_row_linear(model)
    vector = torch.randn(model.config.hidden_size)
    conversations = [
        [{"role": "user", "content": "hello there"}],
        [{"role": "user", "content": "hi"}],
        [{"role": "user", "content": "what is up"}],
    ]
    kwargs = dict(
        multipliers=[4.0, 0.0, -4.0],
        steer=SteeringSpec(1, vector),
        settings=SamplingSettings(max_new_tokens=12),
        ignore_eos=True,
    )
    few = generate(model, tiny_tokenizer, conversations, **kwargs)
    with standard_linear(model):
        plain = generate(model, tiny_tokenizer, conversations, **kwargs)
    assert few.token_ids == plain.token_ids
    single = generate(
        model, tiny_tokenizer, conversations[:1], settings=SamplingSettings(max_new_tokens=12), ignore_eos=True
    )
    reference = generate(
        tiny_model, tiny_tokenizer, conversations[:1], settings=SamplingSettings(max_new_tokens=12), ignore_eos=True
    )
    assert single.token_ids == reference.token_ids
