"""Evaluating a steering vector: the paper's A/B measure over layers x multipliers, open-ended answers
(refusal rate and coherence) over multipliers, and controls (a random vector of the same norm, the
negated vector).

A/B measure (Rimsky et al. 2023, section 4): the prompt is the chat template with the question and its
choices as the user turn, the generation prompt, then "(" as the start of the reply. The score of a
question is p(matching letter) / sum of p(letter) over its choices, read from the next-token
distribution at "(" with steering applied from the assistant part on (the engine's position rule).

Cost: everything before the steered positions (system prompt and user turn) is the same in every cell
of a sweep, so it is run once per question with a KV cache; each cell then runs only the few steered
tokens ("<|im_start|>assistant\\n(" for SmolLM2), batched over questions x multipliers (one multiplier
per row), and the LM head is computed at the last position only.

The functions the app can call: ab_sweep, plot_heatmap, cosine_plot (and plot_ab_curves,
plot_open_ended for the other figures).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from steering.datasets import ABItem
from steering.errors import SteeringError
from steering.generation import SamplingSettings, SteeringSpec, generate
from steering.hooks import apply_steering, steering, unit_vector
from steering.layers import decoder_layers
from steering.limits import model_context_length
from steering.prompts import answer_letter_tokens, build_messages, chat_prompt, pad_token_id
from steering.refusal import RefusalDetector, distinct_ngram_share

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from steering.engine import Engine
    from steering.vector_files import VectorSet


# ============================================================================ A/B prompts
@dataclass(frozen=True)
class ABPrompt:
    """One A/B question split where steering starts."""

    prefix: list[int]  # unsteered: everything through the user's turn
    suffix: list[int]  # steered: the assistant header (or the instruction's last token) and "(" (read next)
    letter_ids: dict[str, int]  # choice letter -> token id of the letter after "("
    matching: str

    @property
    def input_ids(self) -> list[int]:
        return self.prefix + self.suffix


def ab_prompts(tokenizer: Any, items: Sequence[ABItem], system_prompt: str | None = None,
               context_length: int | None = None) -> list[ABPrompt]:
    """Tokenize the A/B questions for the measure (Rimsky et al. 2023, section 4).

    Each prompt is the chat prompt the model would answer (steering.prompts.chat_prompt: the same tokens
    and the same first steered position as in generation) followed by the reply's opening "(", tokenized
    on its own (prompts.answer_letter_tokens); the letter tokens are those that follow that opening. So
    the measure does not depend on how the template's last characters and "(A" would tokenize joined
    (Llama-2's "[/INST](A" merges into "…INST", "](", "A"); with SentencePiece vocabularies the reply
    reads "[/INST] (", the paper's own prompt.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        items: the A/B items (their choice letters; items without option lines use the two answers' letters).
        system_prompt: a system prompt for the template (None: the template's default).
        context_length: the model's context in tokens (steering.limits.model_context_length); a prompt
            longer than it is refused before the model runs (None: not checked).

    Returns:
        One ABPrompt per item, in order.

    Raises:
        SteeringError: naming the item's index, when its letters cannot be told apart as tokens or its
            prompt does not fit the context.
    """
    prompts = []
    openings: dict[tuple[str, ...], tuple[list[int], dict[str, int]]] = {}
    for index, item in enumerate(items):
        letters = tuple(item.letters)
        if letters not in openings:
            try:
                openings[letters] = answer_letter_tokens(tokenizer, letters)
            except SteeringError as exc:
                raise SteeringError(f"A/B item {index}: {exc}") from None
        opening, letter_ids = openings[letters]
        prompt = chat_prompt(tokenizer, build_messages([{"role": "user", "content": item.question}], system_prompt))
        ids = prompt.input_ids + opening
        if context_length is not None and len(ids) > context_length:
            raise SteeringError(f"A/B item {index}: the prompt is {len(ids)} tokens long; the model's context is "
                                f"{context_length} tokens")
        prompts.append(ABPrompt(ids[:prompt.steer_from], ids[prompt.steer_from:], dict(letter_ids), item.matching))
    return prompts


# ============================================================================ A/B: batched, prefix-cached
@dataclass
class ABResult:
    """p[s, j, i]: normalised p(matching letter) for steering spec s, multiplier j, question i;
    mass[s, j, i]: p(all choice letters), how much of the next-token distribution the measure covers."""

    p: np.ndarray
    mass: np.ndarray


def _as_specs(vector: Any, layers: Sequence[int]) -> list[tuple[int, torch.Tensor]]:
    from steering.vector_files import VectorSet

    if isinstance(vector, VectorSet):
        return [(layer, vector.vector(layer)) for layer in layers]
    if isinstance(vector, Mapping):
        missing = [layer for layer in layers if layer not in vector]
        if missing:
            raise SteeringError(f"no vector for layer(s) {', '.join(map(str, missing))}")
        return [(layer, vector[layer]) for layer in layers]
    if isinstance(vector, torch.Tensor):
        return [(layer, vector) for layer in layers]
    raise TypeError(f"expected a VectorSet, a {{layer: tensor}} mapping or a tensor, got {type(vector).__name__}")


def _letter_scores(logits: torch.Tensor, prompts: Sequence[ABPrompt]) -> tuple[np.ndarray, np.ndarray]:
    probs = torch.softmax(logits.float(), dim=-1)
    p, mass = np.empty(len(prompts)), np.empty(len(prompts))
    for row, prompt in enumerate(prompts):
        letters = {letter: float(probs[row, token]) for letter, token in prompt.letter_ids.items()}
        total = sum(letters.values())
        p[row] = letters[prompt.matching] / total if total > 0 else float("nan")
        mass[row] = total
    return p, mass


@contextmanager
def _layers_from(model: Any, start: int) -> Iterator[bool]:
    """Run only the decoder blocks from `start` on (the input is then block start-1's output, passed as
    inputs_embeds). Yields False, changing nothing, for a model whose blocks are not `model.model.layers`."""
    base = getattr(model, "model", None)
    blocks = getattr(base, "layers", None)
    if not isinstance(blocks, nn.ModuleList) or blocks is not decoder_layers(model):
        yield False
        return
    base.layers = nn.ModuleList(list(blocks)[start:])
    try:
        yield True
    finally:
        base.layers = blocks


@torch.inference_mode()
def ab_probabilities(
    model: Any,
    prompts: Sequence[ABPrompt],
    specs: Sequence[tuple[int, torch.Tensor]],
    multipliers: Sequence[float],
    batch_size: int = 16,
    pad_id: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    skip_layers: bool = True,
) -> ABResult:
    """The A/B measure for every (layer, vector) spec x multiplier x question.

    Per chunk of questions: the unsteered prefixes run once into a KV cache; the unsteered suffix runs
    once (the multiplier-0 cells, the same for every spec), keeping each block's output; then the cache
    is repeated once per non-zero multiplier and, for each spec, only the steered suffix tokens run
    (rows = questions x multipliers, one multiplier per row), after which the cache is cropped back.

    With skip_layers (default), a spec at layer L starts from block L's recorded unsteered output plus
    multiplier x vector and runs blocks L+1.. only (blocks 0..L see no steering, so they would repeat
    the unsteered computation); otherwise the whole model runs with the steering hook on block L.
    Both give the same numbers (tests/test_evaluation.py checks both against a plain computation).
    """
    from transformers import DynamicCache

    if not prompts:
        raise SteeringError("no A/B questions to evaluate")
    if not multipliers:
        raise SteeringError("no multipliers to evaluate")
    device = next(model.parameters()).device
    base = getattr(model, "model", model)
    blocks = decoder_layers(model)
    n_specs, n_mult, n_items = len(specs), len(multipliers), len(prompts)
    p = np.full((n_specs, n_mult, n_items), np.nan)
    mass = np.full((n_specs, n_mult, n_items), np.nan)
    zero = [j for j, m in enumerate(multipliers) if m == 0]
    nonzero = [j for j, m in enumerate(multipliers) if m != 0]
    order = sorted(range(n_items), key=lambda i: len(prompts[i].prefix))
    done = 0
    for start in range(0, n_items, batch_size):
        chunk = order[start:start + batch_size]
        rows = [prompts[i] for i in chunk]
        q = len(rows)
        width = max(len(r.prefix) for r in rows)
        span = max(len(r.suffix) for r in rows)
        prefix_ids = torch.full((q, width), pad_id, dtype=torch.long)
        prefix_mask = torch.zeros((q, width), dtype=torch.long)
        suffix_ids = torch.full((q, span), pad_id, dtype=torch.long)
        suffix_mask = torch.zeros((q, span), dtype=torch.long)
        suffix_pos = torch.zeros((q, span), dtype=torch.long)
        for row, prompt in enumerate(rows):
            # left padding in both parts: every row's last token ("(") is the last column
            prefix_ids[row, width - len(prompt.prefix):] = torch.tensor(prompt.prefix)
            prefix_mask[row, width - len(prompt.prefix):] = 1
            suffix_ids[row, span - len(prompt.suffix):] = torch.tensor(prompt.suffix)
            suffix_mask[row, span - len(prompt.suffix):] = 1
            suffix_pos[row] = len(prompt.prefix)  # pads (masked out) sit at the first steered position
            suffix_pos[row, span - len(prompt.suffix):] = len(prompt.prefix) + torch.arange(len(prompt.suffix))
        steer_from = torch.tensor([len(r.prefix) for r in rows])
        mask = torch.cat([prefix_mask, suffix_mask], dim=-1).to(device)
        cache = DynamicCache(config=model.config)
        base(input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
             position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0).to(device), cache=cache, use_cache=True)

        # the unsteered suffix: the multiplier-0 cells, and each needed block's output for skip_layers
        outputs: dict[int, torch.Tensor] = {}

        def keeper(layer: int):
            def keep(module: Any, args: Any, output: Any) -> None:
                outputs[layer] = (output[0] if isinstance(output, tuple) else output).detach()
            return keep

        handles = [blocks[layer].register_forward_hook(keeper(layer))
                   for layer in sorted({layer for layer, _ in specs})] if skip_layers and nonzero else []
        try:
            out = model(input_ids=suffix_ids.to(device), attention_mask=mask, position_ids=suffix_pos.to(device),
                        cache=cache, use_cache=True, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
        cache.crop(-span)  # back to the shared prefix
        if zero:
            zp, zm = _letter_scores(out.logits[:, -1, :], rows)
            for j in zero:
                p[:, j, chunk], mass[:, j, chunk] = zp, zm
        if nonzero:
            k = len(nonzero)
            cache.batch_repeat_interleave(k)
            row_multipliers = torch.tensor([float(multipliers[j]) for j in nonzero]).repeat(q)  # row = i * k + j
            row_prompts = [prompt for prompt in rows for _ in range(k)]
            row_mask = mask.repeat_interleave(k, 0)
            row_pos = suffix_pos.repeat_interleave(k, 0).to(device)
            for s, (layer, vector) in enumerate(specs):
                logits = None
                if skip_layers:
                    with _layers_from(model, layer + 1) as skipping:
                        if skipping:
                            hidden = outputs[layer].repeat_interleave(k, 0)
                            v = vector.to(hidden.device, hidden.dtype)
                            add = row_multipliers.to(hidden.device, hidden.dtype)
                            none = torch.zeros_like(add)
                            # the suffix is all steered positions: active = 1 everywhere
                            embeds = apply_steering(hidden, v, unit_vector(v), add, none, none,
                                                    torch.ones(hidden.shape[:2], dtype=hidden.dtype,
                                                               device=hidden.device))
                            logits = model(inputs_embeds=embeds, attention_mask=row_mask, position_ids=row_pos,
                                           cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
                            for later in range(layer + 1, len(blocks)):
                                cache.layers[later].crop(-span)
                if logits is None:
                    with steering(model, layer, vector.to(device), row_multipliers, steer_from.repeat_interleave(k)):
                        logits = model(input_ids=suffix_ids.repeat_interleave(k, 0).to(device), attention_mask=row_mask,
                                       position_ids=row_pos, cache=cache, use_cache=True,
                                       logits_to_keep=1).logits[:, -1, :]
                    cache.crop(-span)
                sp, sm = _letter_scores(logits, row_prompts)
                p[s][np.ix_(nonzero, chunk)] = sp.reshape(q, k).T
                mass[s][np.ix_(nonzero, chunk)] = sm.reshape(q, k).T
        done += q
        if on_progress is not None:
            on_progress(done, n_items)
    return ABResult(p, mass)


def ab_sweep(engine: "Engine", vector: Any, layers: Sequence[int], multipliers: Sequence[float],
             items: Sequence[ABItem], system_prompt: str | None = None, batch_size: int = 16) -> np.ndarray:
    """Mean normalised p(matching letter) over `items`, shape (len(layers), len(multipliers)).

    `vector` is a VectorSet (each layer steered with its own vector), a {layer: tensor} mapping or one
    tensor used at every layer. For the app: values near 0.5 mean no preference; > 0.5 more behavior.
    """
    from steering.layers import check_layer

    for layer in layers:
        check_layer(layer, engine.lm.num_layers)
    lm = engine.lm
    prompts = ab_prompts(lm.tokenizer, items, system_prompt, context_length=model_context_length(lm.model))
    with lm.lock:
        result = ab_probabilities(lm.model, prompts, _as_specs(vector, layers), multipliers, batch_size,
                                  pad_token_id(lm.tokenizer))
    return result.p.mean(axis=-1)


# ============================================================================ controls
def random_like(vector: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random direction (seeded Gaussian) with the same L2 norm as `vector`."""
    generator = torch.Generator().manual_seed(int(seed))
    direction = torch.randn(vector.shape[-1], generator=generator, dtype=torch.float32)
    return direction / direction.norm() * vector.detach().float().cpu().norm()


def control_vectors(vector: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """The vector and its controls: 'random' (same norm, seeded) and 'negated' (-vector)."""
    v = vector.detach().float().cpu()
    return {"vector": v, "random": random_like(v, seed), "negated": -v}


# ============================================================================ open-ended
@dataclass
class Answer:
    question: str
    variant: str  # vector, random, negated
    multiplier: float
    text: str
    tokens: int
    refusal: bool
    distinct3: float
    nll: float | None = None  # mean negative log-likelihood per token under the unsteered model
    token_ids: list[int] = field(default_factory=list, repr=False)


@torch.inference_mode()
def answer_nll(model: Any, tokenizer: Any, questions: Sequence[str], answers: Sequence[Sequence[int]],
               system_prompt: str | None = None, batch_size: int = 64) -> list[float | None]:
    """Mean per-token NLL of each answer (token ids) after its question, under the unsteered model.

    exp(NLL) is the unsteered model's perplexity of the answer: it rises when steering makes the text
    stop looking like language (it stays low for a fluent refusal, and for a loop: pair it with the
    distinct-n share). Empty answers give None. Each question's prompt runs once into a KV cache
    shared by all its answers; only the answer positions go through the LM head.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    base = getattr(model, "model", model)
    pad_id = pad_token_id(tokenizer)
    groups: dict[str, list[int]] = {}
    for i, (question, answer) in enumerate(zip(questions, answers)):
        if answer:
            groups.setdefault(question, []).append(i)
    prompt_ids = {q: chat_prompt(tokenizer, build_messages([{"role": "user", "content": q}], system_prompt)).input_ids
                  for q in groups}
    out: list[float | None] = [None] * len(answers)
    # chunks of whole questions, up to `batch_size` answer rows each
    chunks: list[list[str]] = [[]]
    for q in sorted(groups, key=lambda q: len(prompt_ids[q])):
        if chunks[-1] and sum(len(groups[c]) for c in chunks[-1]) + len(groups[q]) > batch_size:
            chunks.append([])
        chunks[-1].append(q)
    for chunk in chunks:
        width = max(len(prompt_ids[q]) for q in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, q in enumerate(chunk):
            ids[row, width - len(prompt_ids[q]):] = torch.tensor(prompt_ids[q])
            mask[row, width - len(prompt_ids[q]):] = 1
        cache = DynamicCache(config=model.config)
        last = base(input_ids=ids.to(device), attention_mask=mask.to(device), cache=cache, use_cache=True,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device)).last_hidden_state[:, -1]
        rows = [(k, i) for k, q in enumerate(chunk) for i in groups[q]]
        select = torch.tensor([k for k, _ in rows])
        cache.batch_select_indices(select.to(device))
        span = max(len(answers[i]) for _, i in rows)
        ans_ids = torch.full((len(rows), span), pad_id, dtype=torch.long)
        ans_mask = torch.zeros((len(rows), span), dtype=torch.long)
        ans_pos = torch.zeros((len(rows), span), dtype=torch.long)
        for row, (k, i) in enumerate(rows):
            n, start = len(answers[i]), len(prompt_ids[chunk[k]])
            ans_ids[row, span - n:] = torch.tensor(list(answers[i]))  # pads between prompt and answer, masked
            ans_mask[row, span - n:] = 1
            ans_pos[row] = start
            ans_pos[row, span - n:] = start + torch.arange(n)
        hidden = base(input_ids=ans_ids.to(device), attention_mask=torch.cat([mask[select], ans_mask], -1).to(device),
                      position_ids=ans_pos.to(device), cache=cache, use_cache=True).last_hidden_state
        for row, (k, i) in enumerate(rows):
            n = len(answers[i])
            # answer token t is predicted from the hidden state before it: the prompt's last for t = 0
            states = torch.cat([last[k:k + 1], hidden[row, span - n:span - 1]], dim=0)
            logits = head(states).float()
            target = torch.tensor(list(answers[i]), device=logits.device)
            out[i] = float(torch.nn.functional.cross_entropy(logits, target))
    return out


def open_ended_answers(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    layer: int,
    variants: Mapping[str, tuple[torch.Tensor, Sequence[float]]],
    settings: SamplingSettings,
    detector: RefusalDetector,
    system_prompt: str | None = None,
    batch_size: int = 32,
    score: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    recipe: Any = None,
    hidden_norm: Callable[[int], float] | None = None,
) -> list[Answer]:
    """Answers to every question for every variant name -> (vector, multipliers), scored.

    Rows of one variant run together in batches (generate() steers each row with its own
    multiplier). Multiplier 0 is the same unsteered answer for every variant: it is generated once,
    under the first variant's name.

    Without `recipe`: CAA addition of multiplier x vector at `layer` (the paper's). With a
    steering.recipe.Recipe: its band (`layer` is then unused), operators and unit; each multiplier is a
    signed strength in the recipe's unit, the variant's vector (a tensor, or a VectorSet / {layer: tensor}
    for per-layer vectors) replaces the recipe's; `hidden_norm` (Engine.hidden_norm) for unit "relative".
    """
    num_layers = len(decoder_layers(model))
    jobs: list[tuple[str, float, str]] = []  # (variant, multiplier, question)
    zero_done = False
    for name, (_, multipliers) in variants.items():
        for m in multipliers:
            if m == 0:
                if zero_done:
                    continue
                zero_done = True
            jobs.extend((name, float(m), q) for q in questions)
    answers: list[Answer] = []
    total, finished = len(jobs), 0
    for name, (vector, _) in variants.items():
        mine = sorted((j for j in jobs if j[0] == name), key=lambda j: len(j[2]))
        for start in range(0, len(mine), batch_size):
            batch = mine[start:start + batch_size]
            if recipe is None:
                steer: dict[str, Any] = {"multipliers": [m for _, m, _ in batch], "steer": SteeringSpec(layer, vector)}
            else:
                steer = {"steer": recipe.plan(vector, [m for _, m, _ in batch], num_layers, hidden_norm)}
            result = generate(model, tokenizer, [[{"role": "user", "content": q}] for _, _, q in batch],
                              settings=settings, system_prompt=system_prompt, **steer)
            for (variant, m, q), text, ids in zip(batch, result.texts, result.token_ids):
                answers.append(Answer(q, variant, m, text, len(ids), detector(text), distinct_ngram_share(text), None,
                                      list(ids)))
            finished += len(batch)
            if on_progress is not None:
                on_progress(finished, total)
    if score:
        nlls = answer_nll(model, tokenizer, [a.question for a in answers], [a.token_ids for a in answers],
                          system_prompt, batch_size=batch_size)
        for answer, value in zip(answers, nlls):
            answer.nll = value
    return answers


def summarize_answers(answers: Sequence[Answer], variants: Mapping[str, Sequence[float]]) -> dict[str, list[dict]]:
    """Per variant and multiplier: refusal rate, mean distinct-3 share, median perplexity, mean length.

    Multiplier 0 of every variant is the shared unsteered answers.
    """
    unsteered = [a for a in answers if a.multiplier == 0]
    out: dict[str, list[dict]] = {}
    for name, multipliers in variants.items():
        rows = []
        for m in sorted(set(float(x) for x in multipliers)):
            group = unsteered if m == 0 else [a for a in answers if a.variant == name and a.multiplier == m]
            if not group:
                continue
            nlls = [a.nll for a in group if a.nll is not None]
            rows.append({
                "multiplier": m,
                "n": len(group),
                "refusal_rate": float(np.mean([a.refusal for a in group])),
                "distinct3": float(np.mean([a.distinct3 for a in group])),
                "perplexity": float(math.exp(np.median(nlls))) if nlls else None,
                "mean_tokens": float(np.mean([a.tokens for a in group])),
            })
        out[name] = rows
    return out


def breakdown_multiplier(rows: Sequence[dict], distinct_drop: float = 0.85, ppl_factor: float = 3.0) -> dict[str, Any]:
    """Where text breaks down, per sign: the smallest |multiplier| at which the mean distinct-3 share falls
    below `distinct_drop` x the unsteered value, or the median perplexity exceeds `ppl_factor` x the
    unsteered value. None when it holds up over the whole range."""
    base = next((r for r in rows if r["multiplier"] == 0), None)
    if base is None:
        return {"positive": None, "negative": None}
    result: dict[str, Any] = {}
    for sign, label in ((1, "positive"), (-1, "negative")):
        found = None
        for row in sorted((r for r in rows if r["multiplier"] * sign > 0), key=lambda r: abs(r["multiplier"])):
            repetitive = row["distinct3"] < distinct_drop * base["distinct3"]
            garbled = (row["perplexity"] is not None and base["perplexity"] is not None
                       and row["perplexity"] > ppl_factor * base["perplexity"])
            if repetitive or garbled:
                found = {"multiplier": row["multiplier"], "repetitive": bool(repetitive), "garbled": bool(garbled)}
                break
        result[label] = found
    return result


# ============================================================================ plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(values: np.ndarray, layers: Sequence[int], multipliers: Sequence[float],
                 default: tuple[int, float] | None = None, title: str = "A/B: p(behavior-matching answer)",
                 annotate: bool = True) -> "Figure":
    """Heatmap of a (layers x multipliers) sweep; `default` = (layer, multiplier) is outlined."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    values = np.asarray(values, dtype=float)
    fig = Figure(figsize=(1.1 * len(multipliers) + 2.6, 0.28 * len(layers) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu_r", vmin=0.0, vmax=1.0, aspect="auto", origin="lower")
    ax.set_xticks(range(len(multipliers)), [f"{m:g}" for m in multipliers])
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_xlabel("multiplier α")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    if annotate:
        for y in range(values.shape[0]):
            for x in range(values.shape[1]):
                v = values[y, x]
                ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                        color="white" if abs(v - 0.5) > 0.3 else "black")
    if default is not None and default[0] in list(layers) and default[1] in list(multipliers):
        y, x = list(layers).index(default[0]), list(multipliers).index(default[1])
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="gold", linewidth=2.5))
        ax.annotate("default", (x + 0.5, y), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=7, color="black", annotation_clip=False)
    fig.colorbar(image, ax=ax, label="mean p(match) / (p(A) + p(B))")
    return fig


_STYLE = {"vector": dict(color="C3", marker="o"), "random": dict(color="0.5", marker="s", linestyle="--"),
          "negated": dict(color="C0", marker="^", linestyle=":")}


def plot_ab_curves(curves: Mapping[str, Sequence[float]], multipliers: Sequence[float], layer: int,
                   title: str | None = None) -> "Figure":
    """p(match) against the multiplier at one layer for the vector and its controls."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(multipliers, values, label=name, **_STYLE.get(name, {}))
    ax.axhline(0.5, color="0.8", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("multiplier α")
    ax.set_ylabel("mean p(match) / (p(A) + p(B))")
    ax.set_title(title or f"A/B at layer {layer}: vector vs controls", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_open_ended(summary: Mapping[str, Sequence[dict]], layer: int, title: str | None = None,
                    breakdown: Mapping[str, Any] | None = None) -> "Figure":
    """Refusal rate, distinct-3 share and perplexity of the answers against the multiplier."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (("refusal_rate", "refusal rate", (0, 1)), ("distinct3", "distinct-3 share (coherence)", (0, 1.02)),
              ("perplexity", "unsteered-model perplexity (log)", None))
    for ax, (key, label, ylim) in zip(axes, panels):
        for name, rows in summary.items():
            pts = [(r["multiplier"], r[key]) for r in rows if r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), label=name, **_STYLE.get(name, {}))
        ax.set_xlabel("multiplier α")
        ax.set_title(label, fontsize=10)
        if ylim:
            ax.set_ylim(*ylim)
        else:
            ax.set_yscale("log")
        if breakdown:
            for side in ("positive", "negative"):
                if breakdown.get(side):
                    ax.axvline(breakdown[side]["multiplier"], color="C1", linewidth=0.9, linestyle="-.")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"Open-ended answers at layer {layer}", fontsize=11)
    return fig


def cosine_plot(vset_a: "VectorSet", vset_b: "VectorSet", labels: tuple[str, str] | None = None) -> "Figure":
    """Cosine similarity per layer between two vector sets (e.g. two read modes, or two models' sets)."""
    from matplotlib.figure import Figure

    from steering.vector_files import cosine_by_layer

    cosines = cosine_by_layer(vset_a, vset_b)
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(list(cosines), list(cosines.values()), marker="o", color="C2")
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("layer")
    ax.set_ylabel("cosine similarity")
    a, b = labels or (vset_a.source or "a", vset_b.source or "b")
    ax.set_title(f"{a} vs {b}", fontsize=9)
    return fig


def save_figure(fig: "Figure", path: Any) -> None:
    """Save `fig` as an image at `path` (format from the suffix, 130 dpi), atomically (steering.files)."""
    from pathlib import Path

    from steering.files import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format=path.suffix[1:] or None))
