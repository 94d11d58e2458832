"""The app's `compare` API endpoint, driven with gradio_client against the app on a local port."""

from __future__ import annotations

import pytest

from app_harness import running_app

pytestmark = pytest.mark.integration

PROMPT = "What's your favorite planet?"
TOKENS = 12


@pytest.fixture(scope="module")
def client(embedded_engine):
    from gradio_client import Client

    with running_app(embedded_engine) as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def replies(client, embedded_engine):
    """Two requests submitted at once, each with its own α: neither may see the other's settings."""
    layer = embedded_engine.defaults.layer
    steered = client.submit(PROMPT, 3.0, layer, max_new_tokens=TOKENS, api_name="/compare")
    zero = client.submit(PROMPT, 0.0, layer, max_new_tokens=TOKENS, api_name="/compare")
    return {"steered": steered.result(timeout=300), "zero": zero.result(timeout=300)}


def test_compare_returns_three_nonempty_texts(replies):
    texts = replies["steered"]
    assert len(texts) == 3
    assert all(isinstance(t, str) and t.strip() for t in texts)


def test_unsteered_equals_plain_generation(replies, embedded_engine):
    from steering.generation import SamplingSettings

    plain = embedded_engine.plain([{"role": "user", "content": PROMPT}],
                                  SamplingSettings(max_new_tokens=TOKENS, temperature=0.0, top_p=1.0, seed=0))
    assert replies["steered"][1] == plain


def test_added_differs_from_subtracted(replies):
    added, _, subtracted = replies["steered"]
    assert added != subtracted


def test_alpha_zero_gives_three_identical_texts(replies):
    added, unsteered, subtracted = replies["zero"]
    assert added == unsteered == subtracted
    assert unsteered == replies["steered"][1]


def test_only_compare_is_public_with_config_defaults(client, embedded_engine):
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/compare"]
    assert not api["unnamed_endpoints"]
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/compare"]["parameters"]}
    assert list(params)[:3] == ["prompt", "multiplier", "layer"]
    gen = embedded_engine.config["generation"]
    assert params["multiplier"]["parameter_default"] == embedded_engine.defaults.multiplier
    assert params["layer"]["parameter_default"] == embedded_engine.defaults.layer
    assert params["max_new_tokens"]["parameter_default"] == gen["max_new_tokens"]
    assert params["temperature"]["parameter_default"] == gen["temperature"]
    assert len(api["named_endpoints"]["/compare"]["returns"]) == 3


def test_bad_requests_are_one_line_errors_and_the_app_keeps_serving(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="prompt is empty"):
        client.predict("   ", api_name="/compare")
    with pytest.raises(AppError, match="no 'no-such-behavior' vectors"):
        client.predict(PROMPT, behavior="no-such-behavior", api_name="/compare")
    with pytest.raises(AppError, match="layer 99"):
        client.predict(PROMPT, 1.0, 99, max_new_tokens=1, api_name="/compare")
    assert all(client.predict(PROMPT, 1.0, max_new_tokens=2, api_name="/compare"))
