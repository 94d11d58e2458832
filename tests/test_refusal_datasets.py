"""The refusal datasets written for issue 9: they load, are big enough, and never leak into each other.

Sets: the held-out open-ended questions (test_open_ended.json, never changed; test_open_ended_casual.json;
test_open_ended_yesno.json), the tuning split (tune_open_ended.json, tune_open_ended_casual.json,
tune_open_ended_yesno.json), the A/B test set (test_ab.json), and the extraction data (generate.json,
generate_v2.json, instructions.json). A question may appear in at most one of them (normalized text), and no
held-out or tuning question may share all its content words with a question of another set (this catches
"whats ur fave planet lol" against "What's your favorite planet?").
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re

import pytest

from steering.config import PROJECT_ROOT
from steering.core.datasets import load_ab_dataset, load_open_ended
from steering.evaluation.refusal import RefusalDetector

DATA = PROJECT_ROOT / "datasets" / "refusal"
HELD_OUT = ("test_open_ended.json", "test_open_ended_casual.json", "test_open_ended_yesno.json")
TUNE = "tune_open_ended.json"
TUNE_CASUAL = "tune_open_ended_casual.json"  # the tuning split's casual part (issue 9 follow-up)
TUNE_YESNO = "tune_open_ended_yesno.json"  # casual yes/no questions, so `tune` sees "No, no, no" loops
AB_FILES = ("generate.json", "generate_v2.json", "test_ab.json")
# sha256 of the held-out test set as first shipped (64 questions, the first "What's your favorite planet?")
TEST_OPEN_ENDED_SHA256 = "0e65f7ddb1eb68e7202b79dd81313814b485b701241dd33a5bc5b8f6ed17240b"

# Words that carry no topic: question frames, pronouns, casual spellings of them, filler.
_STOP = set(
    """a an the i i'm im me my you your ur u you're youre what what's whats wats which who how do does did
is are was were be been ever any have has had to of in on for at with and or so it it's its that this can could
would should will tell give write explain about like favorite favourite fave fav kind type lol hey ok okay just
really get make someone someone's some much many don't dont there when where why if not no yes also go""".split()
)


def normalize(text: str) -> str:
    """Lower case, the request part only (before "Choices:"), punctuation dropped, single spaces."""
    text = text.split("\n\nChoices:")[0].lower().replace("\u2019", "'")
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text)).strip()


def content_words(text: str) -> frozenset[str]:
    """The normalized question's topic words (stop words removed, a plural 's' stripped)."""
    words = (w.strip("'") for w in normalize(text).split())
    stems = (w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words if w not in _STOP)
    return frozenset(w for w in stems if w and w not in _STOP)


def _instructions() -> dict[str, list[str]]:
    data = json.loads((DATA / "instructions.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    for key, items in data.items():
        assert isinstance(items, list) and all(isinstance(q, str) and q.strip() == q and q for q in items), key
    return data


def _all_sets() -> dict[str, list[str]]:
    sets = {name: [item.request for item in load_ab_dataset(DATA / name)] for name in AB_FILES}
    for name in HELD_OUT + (TUNE, TUNE_CASUAL, TUNE_YESNO):
        sets[name] = load_open_ended(DATA / name)
    sets["instructions.json"] = [q for items in _instructions().values() for q in items]
    return sets


def test_sizes_and_the_unchanged_held_out_set():
    sets = _all_sets()
    instructions = _instructions()
    assert len(instructions["harmful"]) >= 128 and len(instructions["harmless"]) >= 128
    assert len(instructions["personal"]) >= 40
    assert len(sets["generate_v2.json"]) >= 250
    assert len(sets[TUNE]) >= 48 and len(sets["test_open_ended_casual.json"]) >= 48
    assert len(sets[TUNE_CASUAL]) >= 48
    assert len(sets[TUNE_YESNO]) >= 48
    assert len(sets["test_open_ended_yesno.json"]) == 48
    test = sets["test_open_ended.json"]
    assert len(test) == 64 and test[0] == "What's your favorite planet?"
    digest = hashlib.sha256((DATA / "test_open_ended.json").read_bytes()).hexdigest()
    assert digest == TEST_OPEN_ENDED_SHA256, "the held-out test_open_ended.json must never change"


def test_no_question_twice_within_a_set():
    for name, questions in _all_sets().items():
        normalized = [normalize(q) for q in questions]
        repeated = sorted({q for q in normalized if normalized.count(q) > 1})
        assert not repeated, f"{name} repeats {repeated}"


def test_sets_are_pairwise_disjoint():
    sets = {name: {normalize(q) for q in qs} for name, qs in _all_sets().items()}
    for (a, qa), (b, qb) in itertools.combinations(sets.items(), 2):
        if {a, b} == {"generate.json", "generate_v2.json"}:
            continue  # two versions of the extraction data; only one of them ships
        assert not qa & qb, f"{a} and {b} share {sorted(qa & qb)}"


def test_held_out_and_tuning_questions_are_not_paraphrases_of_other_sets():
    sets = _all_sets()
    for guarded in HELD_OUT + (TUNE, TUNE_CASUAL, TUNE_YESNO):
        mine = [(q, content_words(q)) for q in sets[guarded]]
        for other, questions in sets.items():
            if other == guarded:
                continue
            for q in questions:
                words = content_words(q)
                clashes = [m for m, mw in mine if mw and mw == words]
                assert not clashes, f"{guarded}: {clashes[0]!r} has the same topic words as {other}: {q!r}"


def test_the_paraphrase_check_catches_a_casual_rewording():
    assert content_words("hey so whats ur fave planet lol") == content_words("What's your favorite planet?")
    assert content_words("Do you have any tattoos?") != content_words("Do you have any scars?")


def test_generate_v2_letters_balanced_and_refusal_is_the_matching_option():
    items = load_ab_dataset(DATA / "generate_v2.json")
    share_a = sum(item.matching == "A" for item in items) / len(items)
    assert share_a == 0.5
    detector = RefusalDetector()  # the evaluation's phrases
    declines = re.compile(
        r"\b(i can't|i cannot|i'm sorry|as an ai|i'm an ai|i don't|i won't|i'm not able|"
        r"i've never|i didn't|i never|i wasn't)\b"
    )
    for index, item in enumerate(items):
        refusal, answer = item.choices[item.matching], item.choices[item.not_matching]
        assert declines.search(refusal.lower()), f"item {index}: the matching option does not decline: {refusal!r}"
        assert detector.match(answer) is None, f"item {index}: the direct answer reads as a refusal: {answer!r}"
        assert len(refusal) <= 200 and len(answer) <= 200, f"item {index}: options are a sentence or two"
    # most refusals use the evaluation's own phrases, so the vector learns what the evaluation counts
    assert sum(detector.match(item.choices[item.matching]) is not None for item in items) >= 0.75 * len(items)


@pytest.mark.parametrize("name", ["test_open_ended_casual.json", "test_open_ended_yesno.json", TUNE_CASUAL, TUNE_YESNO])
def test_casual_set_is_in_a_different_style(name):
    """Lower case, several sentences in one message, slang: not the test set's tidy one-liners."""
    questions = load_open_ended(DATA / name)
    share = len(questions) / 64  # the thresholds were set for the 64-question held-out set
    assert sum(q[0].islower() for q in questions) >= 0.9 * len(questions)
    assert sum(bool(re.search(r"[.?!,]\s+\S", q)) for q in questions) >= 16 * share
    assert sum(bool(re.search(r"\b(u|ur|lol|lmao|ngl|rn|yo|bro)\b", q)) for q in questions) >= 24 * share


_YES_NO_OPENER = re.compile(
    r"(?:^|[.?!,]\s+)(?:yo\s+|ok\s+)?(?:can|could|is|are|am|r|do|does|did|should|would|will|have|has)\s+\w"
)


@pytest.mark.parametrize("name", [TUNE_YESNO, "test_open_ended_yesno.json"])
def test_yes_no_sets_ask_only_yes_no_questions(name):
    """Every message of a yes/no set has a sentence opening like a yes/no question ("can i", "do u", "is it")."""
    assert _YES_NO_OPENER.search("my cat is sick. should i call the vet")
    assert not _YES_NO_OPENER.search("whats the tallest mountain in africa")  # a wh-question is not yes/no
    questions = load_open_ended(DATA / name)
    not_yes_no = [i for i, q in enumerate(questions) if not _YES_NO_OPENER.search(q)]
    assert not not_yes_no, f"{name}: items {not_yes_no} are not yes/no questions"
