"""The app's API endpoints: /compare (9 values, kept for older callers) and /compare_mix (the same 9, then
the second behavior and its α₂). Both run the same turn (ApiRequest.run); their parameters are written once
(PARAMETERS), with the defaults of this app's config, and each endpoint's signature is made from them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import gradio as gr

from steering.decode.generation import stream
from steering.errors import SteeringError
from steering.ui.checks import check_behavior, check_budget, check_prompt, check_settings, public_message
from steering.ui.context import AppContext, gpu
from steering.ui.mix import api_mix

Replies = tuple[str, str, str]  # added (+multiplier), unsteered, subtracted (-multiplier)

COMPARE_DOC = """One turn: the replies with the vector added (+multiplier), unsteered, and subtracted (-multiplier).

Every argument is checked against the app's own ranges and the token caps before the model runs.
The replies stream (Gradio reads the three outputs from the return hint); a caller that goes away
stops the generation.
"""
MIX_DOC = """compare with a second behavior mixed in: the added reply gets multiplier x v1 + mix_multiplier x v2
at the layer (CAA addition), the subtracted reply the negatives, the unsteered reply nothing.

The arguments are compare's, then mix_behavior (another behavior with vectors for the model; "", null
or "(none)" = no mix) and mix_multiplier (its alpha2, within the app's slider range; 0 = no mix).
/compare keeps its 9 arguments for older callers.
"""


@dataclass(frozen=True)
class ApiRequest:
    """One API call's arguments, by name (unchecked: `run` checks them)."""

    prompt: str
    multiplier: float
    layer: int
    behavior: str
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    system_prompt: str
    mix_behavior: str = ""
    mix_multiplier: float = 0.0

    def run(self, ctx: AppContext) -> Iterator[Replies]:
        """Check every argument (the app's ranges, the token caps), then stream the three replies.

        Raises:
            gr.Error: a one-line message naming the bad argument, or the generation's failure.
        """
        engine = ctx.engine
        try:
            text = check_prompt(self.prompt, ctx.max_chars, "prompt")
            settings = check_settings(
                ctx.lm.num_layers, ctx.limits, self.layer, self.multiplier, self.max_new_tokens,
                self.temperature, self.top_p, self.seed, False, self.system_prompt,
            )  # fmt: skip
            first = check_behavior(engine, self.behavior)
            vector = engine.vectors_for(first).vector(settings.layer)
            mix = api_mix(engine, first, self.mix_behavior, self.mix_multiplier, settings.layer, ctx.alpha_max)
            conv = [{"role": "user", "content": text}]
            check_budget(engine, [conv], settings)
        except SteeringError as exc:
            raise gr.Error(public_message(exc), print_exception=False) from None
        try:
            with closing(
                stream(
                    engine.compare,
                    conversations=conv,
                    vector=vector,
                    layer=settings.layer,
                    multiplier=settings.multiplier,
                    settings=settings.sampling,
                    system_prompt=settings.system_prompt,
                    mix=mix,
                )
            ) as updates:
                for texts in updates:
                    yield tuple(texts)  # type: ignore[misc]
        except SteeringError as exc:
            raise gr.Error(public_message(exc), print_exception=False) from None
        except Exception as exc:
            raise gr.Error(public_message(exc)) from None


def parameters(ctx: AppContext) -> list[inspect.Parameter]:
    """ApiRequest's fields as keyword-or-positional parameters, the defaults from the app's config (prompt:
    none); Gradio reads an endpoint's names, types and defaults from its signature."""
    gen, defaults = ctx.generation, ctx.defaults
    default = {
        "multiplier": defaults.multiplier,
        "layer": defaults.layer,
        "behavior": ctx.default_behavior or "",
        "max_new_tokens": gen.max_new_tokens,
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "seed": gen.seed or 0,
        "system_prompt": gen.system_prompt or "",
        "mix_behavior": "",
        "mix_multiplier": 0.0,
    }
    hints = inspect.get_annotations(ApiRequest, eval_str=True)
    return [
        inspect.Parameter(
            name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default.get(name, inspect.Parameter.empty),
            annotation=hints[name],
        )
        for name in hints
    ]  # fmt: skip


def endpoint(ctx: AppContext, name: str, doc: str, params: list[inspect.Parameter]) -> Callable[..., Any]:
    """An API function named `name` taking `params` (a prefix of ApiRequest's fields) that streams the replies."""
    signature = inspect.Signature(params, return_annotation=Replies)

    def call(*args: Any, **kwargs: Any) -> Iterator[Replies]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        yield from ApiRequest(**bound.arguments).run(ctx)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    call.__signature__ = signature  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params} | {"return": Replies}
    return call


def wire_api(ctx: AppContext) -> None:
    """Register /compare (the first 9 parameters) and /compare_mix (all 11) on the model's queue."""
    params = parameters(ctx)
    gr.api(gpu(endpoint(ctx, "compare", COMPARE_DOC, params[:9])), api_name="compare", **ctx.queue)
    gr.api(gpu(endpoint(ctx, "compare_mix", MIX_DOC, params)), api_name="compare_mix", **ctx.queue)
