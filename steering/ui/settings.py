"""The chat tab's settings as one object: what every chat handler (Send, Retry, the strip, links) receives.

Gradio hands a handler whose inputs are a set of components one dict {component: value}; `Controls` maps
each component to a field of `ChatSettings` (by name), so a new setting is one field here and one entry in
the map, and a bad value is refused with a one-line message that names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from steering.core.limits import Limits
from steering.errors import SteeringError
from steering.ui.checks import TurnSettings, VectorChoice, check_settings
from steering.ui.demo import check_prompted
from steering.ui.mix import NO_MIX


class SettingsError(SteeringError):
    """A setting that does not fit, with the field it belongs to (`field`: a ChatSettings field name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ChatSettings:
    """One request's chat settings, as the controls sent them (unchecked; `turn()` etc. check them).

    Fields (the control each comes from):
        behavior: the Behavior dropdown: a behavior's folder name or "Uploaded: <file>" (None: none chosen).
        uploads: the session's uploaded vector files, {dropdown entry: path}.
        layer: the Layer slider (0..num_layers-1).
        alpha: the steering strength α (the +α pane gets +α, the −α pane −α).
        max_new_tokens: the cap on new tokens per answer.
        temperature, top_p: sampling (temperature 0 = greedy).
        seed: the seed box's text (digits, 0..SEED_MAX); ignored when random_seed is on.
        random_seed: draw a new seed every time.
        system_prompt: the system prompt ("" = the model's default).
        prompted: the "Also ask by prompting" checkbox.
        prompted_added, prompted_subtracted: the prompted panes' system prompts.
        mix_behavior: "Mix with" (NO_MIX, "" or None: no mix).
        mix_alpha: the second behavior's strength α₂.
    """

    behavior: str | None = None
    uploads: Mapping[str, str] | None = None
    layer: Any = 0
    alpha: Any = 0.0
    max_new_tokens: Any = 1
    temperature: Any = 0.0
    top_p: Any = 1.0
    seed: Any = 0
    random_seed: bool = False
    system_prompt: str | None = ""
    prompted: bool = False
    prompted_added: str | None = ""
    prompted_subtracted: str | None = ""
    mix_behavior: str | None = NO_MIX
    mix_alpha: Any = 0.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, in order."""
        return tuple(f.name for f in fields(cls))

    def changed(self, **values: Any) -> ChatSettings:
        """A copy with some fields changed (by name; an unknown name raises TypeError)."""
        return replace(self, **values)

    def vector_choice(self) -> VectorChoice:
        """The Behavior entry parsed (a behavior or an upload of this session)."""
        return VectorChoice.parse(self.behavior, dict(self.uploads or {}))

    def turn(self, num_layers: int, limits: Limits) -> TurnSettings:
        """The checked layer, α, sampling and system prompt (steering.ui.checks.check_settings).

        Raises:
            SettingsError: one line naming the field (layer, multiplier (α), max_new_tokens, temperature,
                top_p, seed, system_prompt) and the accepted range.
        """
        try:
            return check_settings(
                num_layers,
                limits,
                self.layer,
                self.alpha,
                self.max_new_tokens,
                self.temperature,
                self.top_p,
                self.seed,
                bool(self.random_seed),
                self.system_prompt,
            )
        except SteeringError as exc:
            raise SettingsError(_field_named(str(exc)), str(exc)) from None

    def prompts(self) -> tuple[str, str] | None:
        """The prompted panes' two system prompts when they are on, else None.

        Raises:
            SettingsError: field prompted_added or prompted_subtracted, when that prompt is empty, not text or
                too long.
        """
        for name in ("prompted_added", "prompted_subtracted"):  # each checked alone, so the error names its box
            only = {k: (getattr(self, k) if k == name else "-") for k in ("prompted_added", "prompted_subtracted")}
            try:
                check_prompted(self.prompted, only["prompted_added"], only["prompted_subtracted"])
            except SteeringError as exc:
                raise SettingsError(name, str(exc)) from None
        return check_prompted(self.prompted, self.prompted_added, self.prompted_subtracted)


_MESSAGE_FIELDS = {  # the first word(s) of check_settings' messages -> the field
    "layer": "layer",
    "multiplier": "alpha",
    "max_new_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "system_prompt": "system_prompt",
}


def _field_named(message: str) -> str:
    """The ChatSettings field a check_settings message is about (its first word names it)."""
    first = message.split(" ", 1)[0]
    return _MESSAGE_FIELDS.get(first, "alpha" if "α" in message.split(":")[0] else "layer")


@dataclass(frozen=True)
class Controls:
    """Which component holds which ChatSettings field: {field name: Gradio component}.

    `inputs()` is the set of components a handler lists as its inputs (Gradio then passes one dict);
    `read(data)` turns that dict into ChatSettings; `component(field)` says where a field's error goes.
    """

    by_field: Mapping[str, Any]

    def __post_init__(self) -> None:
        unknown = set(self.by_field) - set(ChatSettings.names())
        if unknown:
            raise ValueError(f"Controls: no ChatSettings field named {sorted(unknown)}")

    def inputs(self, *extra: Any) -> set[Any]:
        """The components of every field, plus `extra` ones (e.g. the message box, the session's turns)."""
        return {*self.by_field.values(), *extra}

    def read(self, data: Mapping[Any, Any]) -> ChatSettings:
        """ChatSettings from a handler's dict input (fields whose component is absent keep their defaults)."""
        return ChatSettings(**{name: data[c] for name, c in self.by_field.items() if c in data})

    def component(self, field: str) -> Any:
        """The component that shows field `field` (KeyError for a field no control holds)."""
        return self.by_field[field]

    def values(self, settings: ChatSettings | None = None, extra: Mapping[Any, Any] | None = None) -> dict[Any, Any]:
        """The dict Gradio would pass: every field of `settings` at its component, then `extra`
        ({component: value}, e.g. the message box and the turns). For links and tests."""
        settings = settings or ChatSettings()
        return {c: getattr(settings, name) for name, c in self.by_field.items()} | dict(extra or {})
