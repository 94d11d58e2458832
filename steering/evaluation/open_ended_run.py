"""The open-ended part of one behavior's evaluation run (steering.evaluation.run): greedy answers to the test
questions at every multiplier, with the random and negated controls, scored by the behavior's judge and for
coherence, and its files open_ended.json and open_ended.png."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from steering import evaluation as ev
from steering.evaluation import reliability as rel
from steering.evaluation.coherence_rule import COHERENCE, LOOP_DISTINCT3, LOOP_MIN_TRIGRAMS
from steering.evaluation.run_setup import RunSetup, log
from steering.io.files import display_path, write_json


def run_open_ended(
    args: Any, engine: Any, run: RunSetup, questions: list[str], open_path: Path, detector: Any, score_label: str
) -> tuple[dict | None, Any]:
    """The open-ended answers and their summary, written to run.out (nothing when there are no questions).

    Args:
        args: the `evaluate` flags (--no-negated, --gen-batch-size).
        engine: the loaded steering.engine.Engine (its hidden_norm scales relative recipes).
        run: the settled run (steering.evaluation.run_setup.prepare_run).
        questions: the open-ended questions; open_path: their file, as recorded.
        detector: the behavior's judge (steering.core.judges / RefusalDetector); score_label: what it scores.

    Returns:
        (the open_ended.json payload or None; the per-question steerability of the judge's score against the
        multiplier, steering.evaluation.reliability.summarize, or None).
    """
    if not questions:
        return None, None
    lm, out, layer, settings = run.lm, run.out, run.layer, run.settings
    open_multipliers = run.open_multipliers
    positive = [m for m in open_multipliers if m > 0]
    variants = {
        "vector": (run.vector if run.recipe.shared_vector else run.vset, list(open_multipliers)),
        "random": (run.controls["random"], positive),
        "negated": (run.controls["negated"], positive),
    }
    if args.no_negated:  # for plain addition, -v at +α is the vector at -α: the same answers
        del variants["negated"]
    t0 = time.perf_counter()
    with lm.lock:
        answers = ev.open_ended_answers(
            lm.model,
            lm.tokenizer,
            questions,
            layer,
            variants,
            settings,
            detector,
            run.system_prompt,
            batch_size=args.gen_batch_size,
            on_progress=lambda d, n: log(f"open-ended: {d}/{n} answers"),
            recipe=run.recipe,
            hidden_norm=engine.hidden_norm,
        )
    open_seconds = time.perf_counter() - t0
    summary = ev.summarize_answers(
        answers, {name: open_multipliers if name == "vector" else [0.0] + positive for name in variants}
    )
    breakdown = ev.breakdown_multiplier(summary["vector"])
    refusal = run.behavior == "refusal"
    payload = {
        "settings": {
            **run.common,
            "dataset": display_path(open_path),
            "questions": len(questions),
            "layer": layer,
            "max_new_tokens": settings.max_new_tokens,
            "decoding": "greedy",
            "judge": detector.to_dict(),
            "score": score_label,
            **({"refusal_phrases": list(detector.phrases)} if refusal else {}),
            "coherence": "distinct3 = share of distinct word trigrams (falls with repetition); "
            "perplexity = exp(median per-answer mean NLL) under the unsteered model "
            "(rises with garbled text)",
            "loops": f"share of answers whose own distinct3 < {LOOP_DISTINCT3:g} (more than half of their word "
            f"trigrams repeat an earlier one; fewer than {LOOP_MIN_TRIGRAMS} trigrams never count); per answer: loops",
            "breakdown_rule": f"smallest |multiplier| with {COHERENCE.breakdown_text('distinct3', 'x')}",
            "seconds": round(open_seconds, 1),
        },
        "summary": summary,
        "breakdown": breakdown,
        "answers": [
            {
                "question": a.question,
                "variant": a.variant,
                "multiplier": a.multiplier,
                "text": a.text,
                **({"refusal": a.refusal} if refusal else {}),
                "shows_behavior": a.refusal,
                "distinct3": round(a.distinct3, 4),
                "loops": a.loops,
                "nll": None if a.nll is None else round(a.nll, 4),
                "tokens": a.tokens,
            }
            for a in answers
        ],
    }
    write_json(out / "open_ended.json", payload, indent=1)
    ev.save_figure(
        ev.plot_open_ended(
            summary,
            layer,
            breakdown=breakdown,
            score_label=score_label,
            title=f"{lm.name} · {run.behavior} · open-ended answers at layer {layer} "
            f"({len(questions)} questions, {settings.max_new_tokens} tokens)",
        ),
        out / "open_ended.png",
    )
    log(f"open-ended: {open_seconds:.1f} s; wrote {out / 'open_ended.json'}, open_ended.png")
    reliability = None
    if len(open_multipliers) > 1:  # per question: refused (1) or not (0) against alpha
        open_m, _, open_scores = rel.open_ended_scores(answers, "vector")
        reliability = rel.summarize(open_m, open_scores, score_label)
    return payload, reliability
