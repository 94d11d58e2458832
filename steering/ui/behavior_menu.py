"""The app's Behavior menu: the dropdown's entries and the example prompt that fills the message box."""

from __future__ import annotations

from typing import Mapping, Sequence

from steering.core.behaviors import BehaviorCard


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
