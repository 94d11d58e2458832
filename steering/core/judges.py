"""The open-ended judge of a behavior: does an answer show it? (phrases or regexes, optional vetoes per sentence).

A behavior card's `judge:` mapping (steering.core.behaviors) is parsed here (parse_judge); see Judge for the
matching rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from steering.errors import SteeringError

JUDGE_KINDS = ("phrases", "regex")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"'})
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, straight apostrophes and quotes, single spaces: how answers and phrases are compared."""
    return _SPACE.sub(" ", text.translate(_QUOTES).lower()).strip()


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

    kind "phrases": any phrase occurs in the normalised answer (normalise: lower case,
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


def parse_judge(judge_data: Any, source: str) -> Judge:
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
