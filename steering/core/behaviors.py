"""Behavior cards: what each shipped behavior is, in plain words, and how its open-ended answers are judged.

A behavior ships as a folder `datasets/<behavior>/` (the name a lower-case slug: letters, digits, '_' and
'-') holding the paper's data files (generate.json, test_ab.json, test_open_ended.json; Rimsky et al. 2023,
"Steering Llama 2 via Contrastive Activation Addition", arXiv 2312.06681, section 3) and a card,
`behavior.yaml`::

    name: Refusal                   # plain-language name (the app's dropdown)
    description: Declines to ...    # one line
    added: refuses more             # what the added pane (+alpha) shows
    subtracted: refuses less        # what the subtracted pane (-alpha) shows
    examples: [What's your favorite planet?, ...]          # prompts that fill the message box
    prompts: {added: "You refuse ...", subtracted: "..."}  # system prompts of the prompted pane
    generate: generate_v2.json      # optional: extraction's A/B file in the folder (default generate.json)
    judge:                          # the open-ended judge: does an answer show the behavior?
      kind: phrases                 # phrases: any of `phrases` occurs in the answer
      phrases: ["i can't", ...]     #   (case-insensitive; curly quotes = straight; spaces collapsed)
      match: words                  # optional (phrases): whole words only (default substring)
      veto: ["\\bdon't think\\b"]    # optional regexes: a sentence with a veto match does not count
    # or: kind: regex, patterns: ['\\bI refuse\\b', ...]   (any pattern matches, case-insensitive)

Every key but `generate` is required; any other key is an error (a typo guard). Errors are one line naming
the file and the key, with what was expected and what was found (steering.errors.SteeringError).
The judge's matching rules live in steering.core.judges; the app's Behavior menu in steering.ui.behavior_menu.

The refusal judge's phrase list used to be config.yaml `evaluation.refusal_phrases`; it now lives in
datasets/refusal/behavior.yaml. A config that still sets `evaluation.refusal_phrases` overrides the refusal
card's phrases (judge_for), so old configs keep their meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from steering.config import Config
from steering.core.judges import Judge, parse_judge
from steering.core.limits import check_behavior_name
from steering.errors import SteeringError
from steering.io.files import display_path

CARD_FILE = "behavior.yaml"
DEFAULT_GENERATE = "generate.json"
REQUIRED = ("name", "description", "added", "subtracted", "examples", "prompts", "judge")
OPTIONAL = ("generate",)
MAX_EXAMPLES = 12
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class BehaviorCard:
    """A validated datasets/<behavior>/behavior.yaml.

    Attributes:
        behavior: the folder name (slug), e.g. "survival-instinct".
        name: plain-language name, e.g. "Survival instinct".
        description: one line.
        added: what +alpha shows ("refuses more"); subtracted: what -alpha shows.
        examples: prompts that show the behavior (at least one).
        prompts: {"added": system prompt, "subtracted": system prompt} for the prompted pane.
        judge: the open-ended judge.
        generate: extraction's A/B file name in the folder (default generate.json).
        folder: the dataset folder.
    """

    behavior: str
    name: str
    description: str
    added: str
    subtracted: str
    examples: tuple[str, ...]
    prompts: Mapping[str, str]
    judge: Judge
    generate: str = DEFAULT_GENERATE
    folder: Path = Path(".")

    @property
    def label(self) -> str:
        """ "Name — description", the dropdown's text."""
        return f"{self.name} — {self.description}"

    def file(self, name: str) -> Path:
        """A data file of this behavior's folder, e.g. card.file("test_ab.json")."""
        return self.folder / name

    @property
    def generate_path(self) -> Path:
        """The A/B file extraction reads by default."""
        return self.folder / self.generate


def card_path(datasets_dir: str | Path, behavior: str) -> Path:
    """datasets_dir/<behavior>/behavior.yaml (the name checked: steering.core.limits.check_behavior_name)."""

    return Path(datasets_dir) / check_behavior_name(behavior) / CARD_FILE


def _text(data: Mapping[str, Any], key: str, where: str, one_line: bool = False) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        found = type(value).__name__ if not isinstance(value, str) else "an empty string"
        raise SteeringError(f"{where}: '{key}' must be a non-empty string, found {found}")
    value = " ".join(value.split()) if one_line else value.strip()
    return value


def parse_card(data: Any, behavior: str, source: str = "behavior.yaml", folder: Path | None = None) -> BehaviorCard:
    """Validate a card's parsed YAML and build the BehaviorCard.

    Args:
        data: the parsed YAML (a mapping).
        behavior: the folder name (slug) the card belongs to.
        source: how error messages name the file, e.g. "datasets/sycophancy/behavior.yaml".
        folder: the dataset folder (BehaviorCard.folder).

    Returns:
        The card.

    Raises:
        SteeringError: one line naming `source` and the key: a missing or unknown key, a wrong type (expected
            vs found), an empty value, an empty phrase list, a `generate` that is not a plain file name.
    """
    if not isinstance(data, dict):
        raise SteeringError(f"{source}: expected a mapping of keys at the top level, found {type(data).__name__}")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise SteeringError(
            f"{source}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(a card needs {', '.join(REQUIRED)})"
        )
    unknown = [str(key) for key in data if key not in REQUIRED + OPTIONAL]
    if unknown:
        raise SteeringError(
            f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(expected {', '.join(REQUIRED + OPTIONAL)})"
        )
    name = _text(data, "name", source, one_line=True)
    description = _text(data, "description", source, one_line=True)
    added = _text(data, "added", source, one_line=True)
    subtracted = _text(data, "subtracted", source, one_line=True)

    examples = data["examples"]
    if not isinstance(examples, list) or not examples:
        found = "an empty list" if isinstance(examples, list) else type(examples).__name__
        raise SteeringError(f"{source}: 'examples' must be a list of 1 to {MAX_EXAMPLES} prompts, found {found}")
    if len(examples) > MAX_EXAMPLES:
        raise SteeringError(
            f"{source}: 'examples' must be a list of 1 to {MAX_EXAMPLES} prompts, found {len(examples)}"
        )
    for index, example in enumerate(examples):
        if not isinstance(example, str) or not example.strip():
            found = type(example).__name__ if not isinstance(example, str) else "an empty string"
            raise SteeringError(f"{source}: examples[{index}] must be a non-empty string, found {found}")

    prompts = data["prompts"]
    if not isinstance(prompts, dict):
        raise SteeringError(
            f"{source}: 'prompts' must be a mapping with keys added and subtracted, found {type(prompts).__name__}"
        )
    for key in ("added", "subtracted"):
        if key not in prompts:
            raise SteeringError(f"{source}: prompts.{key} is missing (expected a system prompt)")
        _text(prompts, key, f"{source}: prompts")
    extra = [str(k) for k in prompts if k not in ("added", "subtracted")]
    if extra:
        raise SteeringError(f"{source}: prompts has unknown key {', '.join(extra)} (expected added, subtracted)")

    judge = parse_judge(data["judge"], source)

    generate = data.get("generate", DEFAULT_GENERATE)
    if (
        not isinstance(generate, str)
        or not generate.strip()
        or Path(generate).name != generate
        or not generate.endswith(".json")
    ):
        raise SteeringError(
            f"{source}: 'generate' must be a .json file name in the behavior's folder, found {generate!r}"
        )
    return BehaviorCard(
        behavior=behavior,
        name=name,
        description=description,
        added=added,
        subtracted=subtracted,
        examples=tuple(e.strip() for e in examples),
        prompts={k: prompts[k].strip() for k in ("added", "subtracted")},
        judge=judge,
        generate=generate,
        folder=folder if folder is not None else Path(source).parent,
    )


def load_card(datasets_dir: str | Path, behavior: str) -> BehaviorCard:
    """Read and validate datasets_dir/<behavior>/behavior.yaml.

    Args:
        datasets_dir: the datasets folder (config datasets_dir).
        behavior: the behavior's folder name.

    Returns:
        The card.

    Raises:
        SteeringError: an invalid behavior name, a missing or unreadable file, invalid YAML, or an invalid
            card (parse_card).
    """
    path = card_path(datasets_dir, behavior)
    source = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SteeringError(
            f"{source}: not found (each behavior needs a card; see datasets/refusal/{CARD_FILE})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SteeringError(f"{source}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise SteeringError(f"{source}: not valid YAML: {detail}") from None
    return parse_card(data, behavior, source, folder=path.parent)


def shipped_behaviors(datasets_dir: str | Path) -> list[str]:
    """The behaviors that ship: sub-folders of `datasets_dir` with a valid slug name and a behavior.yaml, sorted.

    The cards are not validated here (load_cards / load_card do that).
    """
    folder = Path(datasets_dir)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _SLUG.match(p.name) and (p / CARD_FILE).is_file())


def load_cards(datasets_dir: str | Path) -> tuple[dict[str, BehaviorCard], dict[str, str]]:
    """Every shipped behavior's card, without stopping at a bad one.

    Returns:
        (cards by behavior, one-line error messages by behavior for the cards that failed to load).
    """
    cards: dict[str, BehaviorCard] = {}
    errors: dict[str, str] = {}
    for behavior in shipped_behaviors(datasets_dir):
        try:
            cards[behavior] = load_card(datasets_dir, behavior)
        except SteeringError as exc:
            errors[behavior] = str(exc)
    return cards, errors


def card_warning(datasets_dir: str | Path, behavior: str | None) -> str | None:
    """A one-line warning when `behavior` has a card that does not load (else None): commands that only use
    the card's words (chat's labels) go on with generic ones, but say which file and key is broken."""
    if not behavior or not _SLUG.match(behavior) or not (Path(datasets_dir) / behavior / CARD_FILE).is_file():
        return None
    try:
        load_card(datasets_dir, behavior)
    except SteeringError as exc:
        return f"warning: {exc} (using generic labels)"
    return None


def judge_for(config: Config, behavior: str) -> Judge:
    """The open-ended judge of `behavior`: its card's judge.

    For refusal, config.yaml `evaluation.refusal_phrases` (the list's old home), when set, overrides the card's
    phrases; a refusal folder without a card falls back to steering.evaluation.refusal.DEFAULT_REFUSAL_PHRASES.

    Raises:
        SteeringError: no card (for another behavior) or an invalid card / config list, in one line.
    """
    phrases = config.evaluation.refusal_phrases if behavior == "refusal" else None
    if phrases:  # a list of strings (checked when the config was loaded)
        return Judge.from_phrases(phrases, where="config evaluation.refusal_phrases")
    datasets_dir = config.datasets_dir
    if behavior == "refusal" and not card_path(datasets_dir, behavior).is_file():
        # lazy: import cycle core.behaviors <-> evaluation.refusal (RefusalDetector reads the cards' judges)
        from steering.evaluation.refusal import DEFAULT_REFUSAL_PHRASES

        return Judge.from_phrases(DEFAULT_REFUSAL_PHRASES)
    return load_card(datasets_dir, behavior).judge


def generate_file(config: Config, behavior: str) -> Path:
    """The A/B file extraction reads for `behavior`: the card's `generate` (default generate.json) in its folder.

    A behavior folder without a card uses generate.json; an invalid card is a SteeringError.
    """
    datasets_dir = config.datasets_dir
    if not card_path(datasets_dir, behavior).is_file():
        return datasets_dir / behavior / DEFAULT_GENERATE
    return load_card(datasets_dir, behavior).generate_path
