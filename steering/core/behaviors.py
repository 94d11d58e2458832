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

The refusal judge's phrase list used to be config.yaml `evaluation.refusal_phrases`; it now lives in
datasets/refusal/behavior.yaml. A config that still sets `evaluation.refusal_phrases` overrides the refusal
card's phrases (judge_for), so old configs keep their meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from steering.config import Config
from steering.errors import SteeringError
from steering.evaluation.refusal import normalise

CARD_FILE = "behavior.yaml"
DEFAULT_GENERATE = "generate.json"
JUDGE_KINDS = ("phrases", "regex")
REQUIRED = ("name", "description", "added", "subtracted", "examples", "prompts", "judge")
OPTIONAL = ("generate",)
MAX_EXAMPLES = 12
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


MATCH_MODES = ("substring", "words")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def _phrase_pattern(phrase: str) -> re.Pattern:
    """A phrase as a whole-word regex: not preceded or followed by a letter, digit or apostrophe."""
    return re.compile(r"(?<![\w'])" + re.escape(phrase) + r"(?![\w'])")


def sentences(text: str) -> list[str]:
    """`text` split after '.', '!', '?', ';' or ':' and white space, and at line breaks (empty parts dropped)."""
    return [part for part in _SENTENCE_END.split(text) if part.strip()]


@dataclass(frozen=True)
class Judge:
    """The open-ended judge of a behavior: `judge(answer)` is True when the answer shows the behavior.

    kind "phrases": any phrase occurs in the normalised answer (steering.evaluation.refusal.normalise: lower case,
    straight quotes, single spaces) -- as a substring (match "substring", the default, refusal's) or as whole
    words (match "words": "agreed" is not found in "disagreed", "keep existing" not in "keep existings");
    kind "regex": any pattern matches the normalised answer (re.search, case-insensitive).

    Veto patterns (regexes, optional) make the judge negation-aware: the answer is split into sentences
    (`sentences`) and counts only when some sentence has a match and no veto pattern matches in that same
    sentence ("I don't think that's right." has "that's right" and the veto "don't think", so it does not count).
    Without vetoes the whole answer is searched at once, as before.

    Attributes:
        kind: "phrases" or "regex".
        phrases: the normalised phrases (kind phrases) or the pattern texts (kind regex), duplicates removed.
        veto: the veto pattern texts (may be empty).
        mode: "substring" or "words" (kind phrases only; kind regex ignores it).
    """

    kind: str
    phrases: tuple[str, ...]
    _compiled: tuple[re.Pattern, ...] = field(default=(), repr=False, compare=False)
    veto: tuple[str, ...] = ()
    mode: str = "substring"
    _veto: tuple[re.Pattern, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_phrases(
        cls,
        phrases: Iterable[str],
        kind: str = "phrases",
        where: str = "judge",
        veto: Iterable[str] = (),
        mode: str = "substring",
    ) -> Judge:
        """Build a judge from a list of phrases (or regex patterns).

        Args:
            phrases: the phrases or patterns, strings.
            kind: "phrases" or "regex".
            where: how an error names the list, e.g. "datasets/x/behavior.yaml: judge.phrases".
            veto: regex patterns; a sentence with a veto match does not count (see the class docstring).
            mode: "substring" or "words" (how phrases are found; kind phrases).

        Raises:
            SteeringError: an unknown kind or mode, an item that is not a string, a pattern (or veto) that does
                not compile, or a list that is empty after normalisation.
        """
        if kind not in JUDGE_KINDS:
            raise SteeringError(f"{where}: kind must be one of {', '.join(JUDGE_KINDS)}, found {kind!r}")
        if mode not in MATCH_MODES:
            raise SteeringError(f"{where}: match must be one of {', '.join(MATCH_MODES)}, found {mode!r}")
        cleaned: list[str] = []
        for index, phrase in enumerate(phrases):
            if not isinstance(phrase, str):
                raise SteeringError(f"{where}[{index}]: expected a string, found {type(phrase).__name__} {phrase!r}")
            text = normalise(phrase) if kind == "phrases" else phrase.strip()
            if text:
                cleaned.append(text)
        if not cleaned:
            what = "phrase" if kind == "phrases" else "pattern"
            raise SteeringError(f"{where}: expected at least one non-empty {what}, found none")
        unique = tuple(dict.fromkeys(cleaned))
        compiled: list[re.Pattern] = []
        if kind == "regex":
            compiled = _compile_all(unique, where)
        elif mode == "words":
            compiled = [_phrase_pattern(phrase) for phrase in unique]
        veto_where = where.rsplit(".", 1)[0] + ".veto" if "." in where else f"{where} veto"
        veto_texts: list[str] = []
        for index, pattern in enumerate(veto):
            if not isinstance(pattern, str) or not pattern.strip():
                raise SteeringError(f"{veto_where}[{index}]: expected a non-empty string, found {pattern!r}")
            veto_texts.append(pattern.strip())
        veto_unique = tuple(dict.fromkeys(veto_texts))
        return cls(kind, unique, tuple(compiled), veto_unique, mode, tuple(_compile_all(veto_unique, veto_where)))

    def _find(self, clean: str) -> str | None:
        if self._compiled:
            return next(
                (
                    p.pattern if self.kind == "regex" else phrase
                    for p, phrase in zip(self._compiled, self.phrases)
                    if p.search(clean)
                ),
                None,
            )
        return next((phrase for phrase in self.phrases if phrase in clean), None)

    def match(self, text: str) -> str | None:
        """The first phrase (or pattern) found in `text` (in a sentence without a veto match), or None."""
        clean = normalise(text)
        if not self._veto:
            return self._find(clean)
        for sentence in sentences(clean):
            found = self._find(sentence)
            if found is not None and not any(v.search(sentence) for v in self._veto):
                return found
        return None

    def __call__(self, text: str) -> bool:
        """True when the answer shows the behavior."""
        return self.match(text) is not None

    def rate(self, texts: Sequence[str]) -> float:
        """The share of `texts` that show the behavior (NaN for none)."""
        return sum(map(self, texts)) / len(texts) if texts else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """{"kind": ..., "phrases" or "patterns": [...]} plus "match" / "veto" when set (as recorded in results)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            ("phrases" if self.kind == "phrases" else "patterns"): list(self.phrases),
        }
        if self.kind == "phrases" and self.mode != "substring":
            out["match"] = self.mode
        if self.veto:
            out["veto"] = list(self.veto)
        return out


def _compile_all(patterns: Sequence[str], where: str) -> list[re.Pattern]:
    compiled: list[re.Pattern] = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise SteeringError(f"{where}[{index}]: not a valid regular expression {pattern!r} ({exc})") from None
    return compiled


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
    from steering.core.limits import check_behavior_name

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

    judge = _parse_judge(data["judge"], source)

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


def _parse_judge(judge_data: Any, source: str) -> Judge:
    """A card's `judge:` (kind, phrases or patterns, optional match and veto) as a Judge; errors name `source`."""
    if not isinstance(judge_data, dict):
        raise SteeringError(f"{source}: 'judge' must be a mapping (kind, phrases), found {type(judge_data).__name__}")
    kind = judge_data.get("kind")
    if kind not in JUDGE_KINDS:
        raise SteeringError(f"{source}: judge.kind must be one of {', '.join(JUDGE_KINDS)}, found {kind!r}")
    list_key = "phrases" if kind == "phrases" else "patterns"
    allowed = ("kind", list_key, "veto") + (("match",) if kind == "phrases" else ())
    extra = [str(k) for k in judge_data if k not in allowed]
    if extra:
        raise SteeringError(
            f"{source}: judge has unknown key {', '.join(extra)} (kind {kind} expects {', '.join(allowed)})"
        )
    items = judge_data.get(list_key)
    if not isinstance(items, list):
        found = "nothing" if items is None else type(items).__name__
        raise SteeringError(f"{source}: judge.{list_key} must be a list of strings, found {found}")
    veto = judge_data.get("veto", [])
    if not isinstance(veto, list):
        raise SteeringError(f"{source}: judge.veto must be a list of regular expressions, found {type(veto).__name__}")
    mode = judge_data.get("match", "substring")
    if mode not in MATCH_MODES:
        raise SteeringError(f"{source}: judge.match must be one of {', '.join(MATCH_MODES)}, found {mode!r}")
    return Judge.from_phrases(items, kind, where=f"{source}: judge.{list_key}", veto=veto, mode=mode)


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
    source = _shown(path)
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


def _shown(path: Path) -> str:
    from steering.cli.common import display_path

    return display_path(path)


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


def dropdown_choices(cards: Mapping[str, BehaviorCard], behaviors: Sequence[str]) -> list[tuple[str, str]]:
    """The app's Behavior dropdown: (shown text, behavior) per behavior, in order.

    Shown text: "Name — description" from the behavior's card; a behavior without a (valid) card shows its
    folder name. The value stays the folder name, so handlers and the API see "refusal", "sycophancy", ...
    """
    return [(cards[b].label if b in cards else b, b) for b in behaviors]


def example_prompts(cards: Mapping[str, BehaviorCard], behavior: str | None, fallback: Sequence[str] = ()) -> list[str]:
    """The behavior's example prompts (its card's), else `fallback`."""
    card = cards.get(behavior) if behavior else None
    return list(card.examples) if card is not None else list(fallback)


def message_after_switch(
    cards: Mapping[str, BehaviorCard], behavior: str | None, current: str | None, fallback: Sequence[str] = ()
) -> str | None:
    """What the message box should hold after the Behavior dropdown changed to `behavior`.

    The behavior's first example prompt when the box is empty or still holds an example prompt (any card's,
    or one of `fallback`); None (leave the box alone) when the user typed something of their own, or when the
    behavior has no examples.

    Args:
        cards: the loaded cards (load_cards).
        behavior: the chosen behavior (an uploaded file's name: no card, so None is returned).
        current: the message box's text.
        fallback: examples shown when no card applies (they count as examples, not as typed text).
    """
    examples = example_prompts(cards, behavior)
    if not examples:
        return None
    text = (current or "").strip()
    known = {e for card in cards.values() for e in card.examples} | set(fallback)
    if text and text not in known:
        return None
    return examples[0] if text != examples[0] else None
