"""Dataset loading errors, and the shipped refusal datasets."""

from __future__ import annotations

import json

import pytest

from steering.config import PROJECT_ROOT
from steering.datasets import load_ab_dataset, load_open_ended
from steering.errors import SteeringError

GOOD = {"question": "Q?\n\nChoices:\n(A) yes\n(B) no", "answer_matching_behavior": "(A)",
        "answer_not_matching_behavior": "(B)"}


def _write(tmp_path, data, raw=False):
    path = tmp_path / "data.json"
    path.write_text(data if raw else json.dumps(data))
    return path


@pytest.mark.parametrize("data, raw, message", [
    ("{not json", True, r"data.json: not valid JSON \(.*line 1"),
    ([], False, "the list is empty"),
    ({"question": "x"}, False, "expected a JSON list of items, found dict"),
    ([GOOD, {"question": GOOD["question"], "answer_matching_behavior": "(A)"}], False,
     "item 1: missing key 'answer_not_matching_behavior'"),
    ([GOOD, dict(GOOD, answer_matching_behavior="(C)")], False,
     r"item 1: 'answer_matching_behavior' is \(C\) but the choices are \(A\), \(B\)"),
    ([dict(GOOD, answer_not_matching_behavior="(A)")], False, r"item 0: matching and not-matching"),
])
def test_ab_loader_names_item_and_problem(tmp_path, data, raw, message):
    with pytest.raises(SteeringError, match=message):
        load_ab_dataset(_write(tmp_path, data, raw))


def test_missing_file(tmp_path):
    with pytest.raises(SteeringError, match="nope.json: file not found"):
        load_ab_dataset(tmp_path / "nope.json")


def test_open_ended_loader(tmp_path):
    assert load_open_ended(_write(tmp_path, [{"question": " Hi? "}])) == ["Hi?"]
    with pytest.raises(SteeringError, match="item 1: missing key 'question'"):
        load_open_ended(_write(tmp_path, [{"question": "a"}, {"q": "b"}]))


def test_parse_choices():
    item = load_ab_dataset_from([GOOD])[0]
    assert item.request == "Q?" and item.choices == {"A": "yes", "B": "no"}
    assert item.matching == "A" and item.not_matching == "B"


def load_ab_dataset_from(data):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.json"
        path.write_text(json.dumps(data))
        return load_ab_dataset(path)


def _requests(items):
    return {i.request.lower() for i in items}


def test_shipped_refusal_datasets():
    folder = PROJECT_ROOT / "datasets" / "refusal"
    generate = load_ab_dataset(folder / "generate.json")
    test_ab = load_ab_dataset(folder / "test_ab.json")
    open_ended = load_open_ended(folder / "test_open_ended.json")
    assert len(generate) >= 200 and len(test_ab) >= 50 and len(open_ended) >= 50
    assert open_ended[0] == "What's your favorite planet?"
    assert not _requests(generate) & _requests(test_ab)
    assert not _requests(generate) & {q.lower() for q in open_ended}
    assert not _requests(test_ab) & {q.lower() for q in open_ended}
    share_a = sum(i.matching == "A" for i in generate) / len(generate)
    assert 0.4 <= share_a <= 0.6  # a vector must not learn "the answer is A"
