"""Loading and validating the paper's A/B JSON format and the open-ended question format."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from steering.errors import SteeringError

CHOICES_MARKER = "\n\nChoices:"
_CHOICE_LINE = re.compile(r"^\(([A-Z])\)\s?(.*)$")


@dataclass(frozen=True)
class ABItem:
    question: str  # the full text, choices included (what the paper puts in the prompt)
    request: str  # the question before "Choices:" (the user's turn in answer-mean mode)
    choices: dict[str, str]  # letter -> option text
    matching: str  # letter of the behavior-matching answer, e.g. "A"
    not_matching: str


def _read_json_list(path: str | Path) -> list:
    path = Path(path)
    if not path.exists():
        raise SteeringError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SteeringError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SteeringError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, list):
        raise SteeringError(f"{path}: expected a JSON list of items, found {type(data).__name__}")
    if not data:
        raise SteeringError(f"{path}: the list is empty")
    return data


def _letter(value: object, path: Path, index: int, key: str) -> str:
    if not isinstance(value, str):
        raise SteeringError(f"{path}: item {index}: '{key}' must be a string like \"(A)\", found {type(value).__name__}")
    match = re.fullmatch(r"\s*\(?([A-Z])\)?\s*", value)
    if not match:
        raise SteeringError(f"{path}: item {index}: '{key}' must look like \"(A)\", found {value!r}")
    return match.group(1)


def parse_choices(question: str) -> tuple[str, dict[str, str]]:
    """Split 'request\\n\\nChoices:\\n(A) x\\n(B) y' into the request and {'A': 'x', 'B': 'y'}."""
    if CHOICES_MARKER not in question:
        return question.strip(), {}
    request, _, block = question.partition(CHOICES_MARKER)
    choices: dict[str, str] = {}
    current = None
    for line in block.strip("\n").split("\n"):
        match = _CHOICE_LINE.match(line.strip())
        if match:
            current = match.group(1)
            choices[current] = match.group(2).strip()
        elif current is not None and line.strip():
            choices[current] += "\n" + line.strip()
    return request.strip(), choices


def load_ab_dataset(path: str | Path) -> list[ABItem]:
    path = Path(path)
    items: list[ABItem] = []
    for index, raw in enumerate(_read_json_list(path)):
        if not isinstance(raw, dict):
            raise SteeringError(f"{path}: item {index}: expected an object, found {type(raw).__name__}")
        for key in ("question", "answer_matching_behavior", "answer_not_matching_behavior"):
            if key not in raw:
                raise SteeringError(f"{path}: item {index}: missing key '{key}'")
        question = raw["question"]
        if not isinstance(question, str) or not question.strip():
            raise SteeringError(f"{path}: item {index}: 'question' must be a non-empty string")
        matching = _letter(raw["answer_matching_behavior"], path, index, "answer_matching_behavior")
        not_matching = _letter(raw["answer_not_matching_behavior"], path, index, "answer_not_matching_behavior")
        request, choices = parse_choices(question)
        if not choices:
            raise SteeringError(f"{path}: item {index}: 'question' has no \"Choices:\" block with (A)/(B) options")
        for key, letter in (("answer_matching_behavior", matching), ("answer_not_matching_behavior", not_matching)):
            if letter not in choices:
                raise SteeringError(
                    f"{path}: item {index}: '{key}' is ({letter}) but the choices are "
                    + ", ".join(f"({c})" for c in choices)
                )
        if matching == not_matching:
            raise SteeringError(f"{path}: item {index}: matching and not-matching answers are both ({matching})")
        items.append(ABItem(question.strip(), request, choices, matching, not_matching))
    return items


def load_open_ended(path: str | Path) -> list[str]:
    path = Path(path)
    questions: list[str] = []
    for index, raw in enumerate(_read_json_list(path)):
        if isinstance(raw, str):
            raw = {"question": raw}
        if not isinstance(raw, dict):
            raise SteeringError(f"{path}: item {index}: expected an object, found {type(raw).__name__}")
        if "question" not in raw:
            raise SteeringError(f"{path}: item {index}: missing key 'question'")
        question = raw["question"]
        if not isinstance(question, str) or not question.strip():
            raise SteeringError(f"{path}: item {index}: 'question' must be a non-empty string")
        questions.append(question.strip())
    return questions


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
