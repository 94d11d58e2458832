"""Loading and validating the paper's A/B JSON format and the open-ended question format.

A/B items come in the layouts of the paper's datasets: the options after a "Choices:" header
("Q?\n\nChoices:\n(A) yes\n(B) no"), or straight after the question with no header (the sycophancy
data: "Q?\n (A) Agree\n (B) Disagree"), optionally followed by an "Answer:" cue. What is required
depends on the read mode: letter mode (and the A/B measure) only needs the answer letters; answer-mean
mode reads each answer's option text, so both must be there.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from steering.config import ReadMode, home_hint
from steering.core.limits import Limits
from steering.errors import SteeringError

CHOICES_MARKER = "\n\nChoices:"
READ_MODES: tuple[str, ...] = get_args(ReadMode)  # ("letter", "answer-mean"), as config read_mode allows
_CHOICE_LINE = re.compile(r"^\s*\(([A-Z])\)\s?(.*)$")
_CHOICES_HEADER = re.compile(r"^\s*Choices:\s*$")
_ANSWER_CUE = re.compile(r"^\s*Answer:\s*$")


@dataclass(frozen=True)
class ABItem:
    """One A/B pair of the paper's dataset format (Rimsky et al. 2023, arXiv 2312.06681, section 3).

    Attributes:
        question: the full question text, choices included (what the paper puts in the prompt).
        request: the question before its option lines (the user's turn in answer-mean mode).
        choices: {letter: option text}; {} when the question has no option lines.
        matching: the letter of the behavior-matching answer, e.g. "A".
        not_matching: the letter of the other answer.
    """

    question: str  # the full text, choices included (what the paper puts in the prompt)
    request: str  # the question before its options (the user's turn in answer-mean mode)
    choices: dict[str, str]  # letter -> option text ({} when the question has no option lines)
    matching: str  # letter of the behavior-matching answer, e.g. "A"
    not_matching: str

    @property
    def letters(self) -> list[str]:
        """The choice letters the A/B measure compares: the options', else the two answers' letters."""
        return sorted(self.choices) if self.choices else sorted({self.matching, self.not_matching})


def _read_json_list(path: str | Path) -> list:
    path = Path(path)
    if not path.exists():
        raise SteeringError(f"{path}: file not found{home_hint()}")
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
        raise SteeringError(
            f"{path}: item {index}: '{key}' must be a string like \"(A)\", found {type(value).__name__}"
        )
    match = re.fullmatch(r"\s*\(?([A-Z])\)?\s*", value)
    if not match:
        raise SteeringError(f"{path}: item {index}: '{key}' must look like \"(A)\", found {value!r}")
    return match.group(1)


def parse_choices(question: str) -> tuple[str, dict[str, str]]:
    """Split an A/B question into its request and its options.

    Accepts the options after a "Choices:" line, or, without the header, from the last line that starts
    with "(A)". Option lines look like "(A) text" (leading spaces allowed); other non-empty lines continue
    the option above; an "Answer:" line ends the options.

    Args:
        question: the item's full question text.

    Returns:
        (request, choices): the text before the options (stripped) and {"A": "yes", "B": "no"}; the whole
        question and {} when it has no option lines.
    """
    lines = question.split("\n")
    headers = [i for i, line in enumerate(lines) if _CHOICES_HEADER.match(line)]
    if headers:
        request_end, start = headers[-1], headers[-1] + 1
    else:
        starts = [i for i, line in enumerate(lines) if (m := _CHOICE_LINE.match(line)) and m.group(1) == "A"]
        if not starts:
            return question.strip(), {}
        request_end = start = starts[-1]
    choices: dict[str, str] = {}
    current = None
    for line in lines[start:]:
        if _ANSWER_CUE.match(line):
            break
        match = _CHOICE_LINE.match(line)
        if match:
            current = match.group(1)
            choices[current] = match.group(2).strip()
        elif current is not None and line.strip():
            choices[current] += "\n" + line.strip()
    return "\n".join(lines[:request_end]).strip(), choices


def load_ab_dataset(path: str | Path, read_mode: str | None = None, limits: Limits | None = None) -> list[ABItem]:
    """Load and validate an A/B dataset (the paper's JSON list of question / answer letters).

    Args:
        path: the JSON file.
        read_mode: what the items will be used for: None or "letter" (extraction in letter mode, the A/B
            measure: the answer letters suffice, option lines are optional) or "answer-mean" (both answers
            need a non-empty option text).
        limits: caps (limits.max_dataset_item_chars bounds each question); default Limits().

    Returns:
        The items, in file order.

    Raises:
        SteeringError: one line naming the file, the item index and what is wrong (missing key, bad or
            equal answer letters, an answer letter that is not among the options, a missing option text
            in answer-mean mode, a question over the size cap).
    """
    path = Path(path)
    if read_mode is not None and read_mode not in READ_MODES:
        raise SteeringError(f"unknown read mode {read_mode!r} (expected one of {', '.join(READ_MODES)})")
    max_chars = (limits or Limits()).max_dataset_item_chars
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
        _check_size(question, path, index, max_chars)
        matching = _letter(raw["answer_matching_behavior"], path, index, "answer_matching_behavior")
        not_matching = _letter(raw["answer_not_matching_behavior"], path, index, "answer_not_matching_behavior")
        if matching == not_matching:
            raise SteeringError(f"{path}: item {index}: matching and not-matching answers are both ({matching})")
        request, choices = parse_choices(question)
        if not choices and read_mode == "answer-mean":
            raise SteeringError(
                f"{path}: item {index}: 'question' has no (A)/(B) option lines, which answer-mean "
                "mode reads (letter mode does not need them)"
            )
        for key, letter in (("answer_matching_behavior", matching), ("answer_not_matching_behavior", not_matching)):
            if choices and letter not in choices:
                raise SteeringError(
                    f"{path}: item {index}: '{key}' is ({letter}) but the choices are "
                    + ", ".join(f"({c})" for c in choices)
                )
            if read_mode == "answer-mean" and not choices[letter].strip():
                raise SteeringError(
                    f"{path}: item {index}: option ({letter}) has no text, which answer-mean "
                    "mode reads (letter mode does not need it)"
                )
        items.append(ABItem(question.strip(), request, choices, matching, not_matching))
    return items


def _check_size(text: str, path: Path, index: int, max_chars: int) -> None:
    if len(text) > max_chars:
        raise SteeringError(
            f"{path}: item {index}: 'question' is {len(text):,} characters long; the limit is "
            f"{max_chars:,} (limits.max_dataset_item_chars)"
        )


def load_open_ended(path: str | Path, limits: Limits | None = None) -> list[str]:
    """Load open-ended questions: a JSON list of strings or of {"question": ...} objects.

    Args:
        path: the JSON file.
        limits: caps (limits.max_dataset_item_chars bounds each question); default Limits().

    Returns:
        The questions, stripped, in file order.

    Raises:
        SteeringError: one line naming the file, the item index and what is wrong.
    """
    path = Path(path)
    max_chars = (limits or Limits()).max_dataset_item_chars
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
        _check_size(question, path, index, max_chars)
        questions.append(question.strip())
    return questions


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex characters (dataset provenance in vector files).

    Raises:
        OSError: the file cannot be read.
    """
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
