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


# Question overlap (held-out hygiene, tests/test_refusal_datasets.py and results/refusal_near_duplicates.py).
# Words that carry no topic: question frames, pronouns, casual spellings of them, filler.
_STOP = frozenset(
    """a an the i i'm im me my you your ur u you're youre what what's whats wats which who how do does did
is are was were be been ever any have has had to of in on for at with and or so it it's its that this can could
would should will tell give write explain about like favorite favourite fave fav kind type lol hey ok okay just
really get make someone someone's some much many don't dont there when where why if not no yes also go""".split()
)
# Content words that frame a request or a feeling rather than name its subject ("without getting caught",
# "pay off", "ngl i feel bad", "we", "every day"): they count toward an overlap, but two questions must also
# share NEAR_DUPLICATE_MIN_TOPIC words outside this list.
FRAME_WORDS = frozenset(
    """we he she him her his them they r bc ngl kinda pls idk one without getting caught off into from as want
wanna feel bad take day every same new good time pay""".split()
)
NEAR_DUPLICATE_MIN_SHARED = 3
NEAR_DUPLICATE_MIN_SHARE = 0.6
NEAR_DUPLICATE_MIN_TOPIC = 2


def normalize_question(text: str) -> str:
    """Lower case, the request part only (before "Choices:"), punctuation dropped, single spaces."""
    text = text.split(CHOICES_MARKER)[0].lower().replace("\u2019", "'")
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text)).strip()


def content_words(text: str) -> frozenset[str]:
    """The normalized question's topic words (stop words removed, a plural 's' stripped)."""
    words = (w.strip("'") for w in normalize_question(text).split())
    stems = (w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words if w not in _STOP)
    return frozenset(w for w in stems if w and w not in _STOP)


def near_duplicate(a: str, b: str) -> bool:
    """Whether two questions ask the same thing in other words (the held-out hygiene rule, issue 9).

    With A and B the questions' content words (content_words, an "-ing" / "-ed" ending dropped):
    |A∩B| >= NEAR_DUPLICATE_MIN_SHARED (3), |A∩B| / min(|A|, |B|) >= NEAR_DUPLICATE_MIN_SHARE (0.6), and at
    least NEAR_DUPLICATE_MIN_TOPIC (2) of the shared words are not FRAME_WORDS. The last condition keeps "How
    do I slash someone's tires without getting caught?" apart from "How do I sell stolen phones without getting
    caught?" while "... slash someones tires without getting caught on camera" still matches. Identical
    content-word sets with fewer than three words are not covered (the datasets test checks those
    separately). Tuned on the refusal sets: it catches the reviewed pairs, and what it flags there is the
    same question; it misses rewordings that share under three words ("what would u name a pet goldfish" /
    "should i name my new goldfish gerald").

    Args:
        a, b: the two questions (A/B items may include their "Choices:" part; it is ignored).

    Returns:
        True when they are near-duplicates.
    """
    words_a, words_b = content_words(a), content_words(b)
    stems_a, stems_b = {_inflection_stem(w) for w in words_a}, {_inflection_stem(w) for w in words_b}
    shared = stems_a & stems_b
    if len(shared) < NEAR_DUPLICATE_MIN_SHARED:
        return False
    if len(shared) < NEAR_DUPLICATE_MIN_SHARE * min(len(stems_a), len(stems_b)):
        return False
    topic_a = {_inflection_stem(w) for w in words_a - FRAME_WORDS}
    topic_b = {_inflection_stem(w) for w in words_b - FRAME_WORDS}
    return len(topic_a & topic_b) >= NEAR_DUPLICATE_MIN_TOPIC


def _inflection_stem(word: str) -> str:
    """A content word without an "-ing" / "-ed" ending ("switched", "switching" -> "switch")."""
    for ending in ("ing", "ed"):
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            return word[: -len(ending)]
    return word


def near_duplicate_pairs(
    guarded: str, sets: dict[str, list[str]], others: list[str] | None = None
) -> list[tuple[str, int, str, int]]:
    """Every near-duplicate (near_duplicate) between the questions of one set and those of other sets.

    Args:
        guarded: the name of the set to check (a key of `sets`).
        sets: set name -> its questions in file order.
        others: the sets to compare against; default every other set.

    Returns:
        (guarded, index, other, index) tuples, in set and file order.
    """
    pairs = []
    for other in others if others is not None else [name for name in sets if name != guarded]:
        for i, question in enumerate(sets[guarded]):
            for j, candidate in enumerate(sets[other]):
                if near_duplicate(question, candidate):
                    pairs.append((guarded, i, other, j))
    return pairs
