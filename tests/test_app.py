"""The app's `compare` API endpoint, driven with gradio_client against the app on a local port."""

from __future__ import annotations

import json
import time

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
    from steering.decode.generation import SamplingSettings

    plain = embedded_engine.plain(
        [{"role": "user", "content": PROMPT}],
        SamplingSettings(max_new_tokens=TOKENS, temperature=0.0, top_p=1.0, seed=0),
    )
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
    assert list(api["named_endpoints"]) == ["/compare", "/compare_mix"]  # compare_mix: issue 14 item 4
    assert not api["unnamed_endpoints"]
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/compare"]["parameters"]}
    assert list(params)[:3] == ["prompt", "multiplier", "layer"]
    gen = embedded_engine.config.generation
    assert params["multiplier"]["parameter_default"] == embedded_engine.defaults.multiplier
    assert params["layer"]["parameter_default"] == embedded_engine.defaults.layer
    assert params["max_new_tokens"]["parameter_default"] == gen.max_new_tokens
    assert params["temperature"]["parameter_default"] == gen.temperature
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


def test_api_enforces_the_ui_ranges(client):
    """The API accepted max_new_tokens 1500 (the UI stops at 1024) and seeds that overflow (issue 10, item 10)."""
    from gradio_client.exceptions import AppError

    refused = {
        "max_new_tokens 1500 is out of range: expected 1 to 1024": dict(max_new_tokens=1500),
        "seed 99999999999999999999999 is out of range": dict(seed=99999999999999999999999),
        "temperature 5 is out of range: expected 0 to 2": dict(temperature=5),
        "top_p 0 is out of range": dict(top_p=0),
        r"multiplier \(α\) 1e\+30 is out of range": dict(multiplier=1e30),
    }
    for message, change in refused.items():
        with pytest.raises(AppError, match=f"^{message}"):
            client.predict(PROMPT, **change, api_name="/compare")


def post_json(url: str, body: str) -> str:
    """One raw call of /compare (JSON as given, e.g. with NaN), its whole event stream as text."""
    import httpx

    response = httpx.post(url + "gradio_api/call/compare", content=body, headers={"content-type": "application/json"})
    response.raise_for_status()
    return httpx.get(url + f"gradio_api/call/compare/{response.json()['event_id']}", timeout=120).text


def test_api_refuses_non_finite_multipliers(client):
    """A NaN or infinite multiplier returned three empty answers (issue 10, item 10)."""
    for value in ("NaN", "Infinity", "-Infinity"):
        events = post_json(client.src, f'{{"data": ["{PROMPT}", {value}, 9, "refusal", 4, 0.0, 1.0, 0, ""]}}')
        assert "event: error" in events and "must be a finite number" in events, events
        assert "event: complete" not in events


def test_api_behavior_is_a_name_and_messages_carry_no_paths(client, embedded_engine):
    """`behavior` took an absolute path and loaded <folder>/<model>.safetensors from anywhere (issue 10, item 10)."""
    from gradio_client.exceptions import AppError

    folder = str(embedded_engine.vectors_dir / "refusal")
    for behavior in (folder, "../vectors/refusal", "refusal/../refusal"):
        with pytest.raises(AppError, match=r"^behavior must be a name such as 'refusal', not a path$"):
            client.predict(PROMPT, behavior=behavior, max_new_tokens=1, api_name="/compare")
    with pytest.raises(AppError) as info:
        client.predict(PROMPT, behavior="nosuch", max_new_tokens=1, api_name="/compare")  # no dataset, no vectors
    message = str(info.value)
    assert "nosuch" in message and "/" not in message and "python -m" not in message


def test_api_bounds_the_work_before_the_model_runs(client, embedded_engine):
    """A 100,000-character system prompt held the only model slot for over 20 minutes (issue 10, item 10)."""
    from gradio_client.exceptions import AppError

    for system_prompt, expected in (("x " * 50_000, "characters long"), ("hello " * 5_000, "tokens long")):
        start = time.monotonic()
        with pytest.raises(AppError, match=expected):
            client.predict(PROMPT, system_prompt=system_prompt, max_new_tokens=4, api_name="/compare")
        assert time.monotonic() - start < 10
    assert not embedded_engine.lm.lock.locked()


def test_a_caller_that_goes_away_stops_the_model(client, embedded_engine):
    """A client that disconnected mid-call left the server generating for 131 s (issue 10, item 10)."""
    import httpx

    url = client.src
    fast = getattr(embedded_engine.lm, "fast_path", None)
    if fast is not None and fast.compiled:
        # The compiled fast path builds its decoding step for a new cache length inside the first request that
        # needs one, and Stop is seen once that compile ends (README, fast path). Build this request's shape
        # first, so that what is measured below is cancellation, not compilation.
        import threading

        from steering.decode.generation import SamplingSettings

        stop, updates = threading.Event(), []
        embedded_engine.compare(
            [{"role": "user", "content": "Write a very long story about a dragon."}],
            layer=9,
            multiplier=2.0,
            settings=SamplingSettings(max_new_tokens=1024),
            on_text=lambda texts: (updates.append(1), len(updates) >= 3 and stop.set()),
            stop_event=stop,
        )
    body = json.dumps({"data": ["Write a very long story about a dragon.", 2.0, 9, "refusal", 1024, 0.0, 1.0, 0, ""]})
    event = httpx.post(
        url + "gradio_api/call/compare", content=body, headers={"content-type": "application/json"}
    ).json()["event_id"]
    with httpx.stream("GET", url + f"gradio_api/call/compare/{event}", timeout=120):
        start = time.monotonic()
        while not embedded_engine.lm.lock.locked():  # the model is at work
            assert time.monotonic() - start < 60
            time.sleep(0.02)
        time.sleep(0.5)
    # the connection is closed: the model stops within a few tokens (1024 tokens take far longer)
    closed = time.monotonic()
    while embedded_engine.lm.lock.locked():
        assert time.monotonic() - closed < 10, "the model kept generating for a caller that went away"
        time.sleep(0.02)
