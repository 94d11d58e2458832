"""What `tune` writes into the defaults file besides the winning recipe (steering.core.recipe.save_defaults):
the model, how the winner was chosen, its scores and the best settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steering.io.files import display_path


def defaults_record(
    args: Any,
    model: str,
    result: Any,
    sources: list[Any],
    space: Any,
    groups: list[tuple[str, list[str]]],
    hashes: list[str],
    questions_path: Path,
) -> dict[str, Any]:
    """What the defaults file records besides the recipe: the model, how the winner was chosen (questions,
    answer length, coherence limits, the search space), its scores and the ten best settings.

    Args:
        args: the `tune` flags (behavior, max_new_tokens, min_distinct, max_perplexity, max_loops are read).
        model: the model's name.
        result: the combined TuneResult (its winner is not None).
        sources, space: the search's vector sources and space.
        groups: (display name, questions) per question file; hashes: their questions_hash values.
        questions_path: the first question file.
    """
    return {
        "model": model,
        "behavior": args.behavior,
        "chosen_by": "python -m steering tune",
        "coherent": result.coherent,
        "tuning": {
            "questions": display_path(questions_path) if len(groups) == 1 else [g for g, _ in groups],
            "questions_used": sum(len(part) for _, part in groups),
            "questions_sha256": hashes[0] if len(groups) == 1 else hashes,
            "max_new_tokens": args.max_new_tokens,
            "decoding": "greedy",
            "min_distinct": args.min_distinct,
            "max_perplexity": args.max_perplexity,
            "max_loops": getattr(args, "max_loops", None),
            "search": {
                "vectors": [s.label for s in sources],
                "layers": space.layers,
                "bands": space.bands,
                "plus": space.plus,
                "minus": space.minus,
                "strengths": space.strengths,
                **({"minus_strengths": space.minus_strengths} if space.minus_strengths else {}),
                **({"minus_windows": space.minus_windows} if space.minus_windows else {}),
                "unit": space.unit,
                "shared_vector": space.shared_vector,
                # the recipe of the file this run replaced, scored with the search (tune's --no-incumbent: not)
                **({"incumbent": [r.to_dict() for _, r in space.extra]} if getattr(space, "extra", None) else {}),
            },
        },
        "scores": {k: result.winner[k] for k in ("contrast", "coherent", "score", "margin", "ratios")}
        | {
            "added": _short(result.winner["added"]),
            "subtracted": _short(result.winner["subtracted"]),
            "unsteered": _short(result.unsteered),
        }
        | (
            {
                "groups": {
                    name: {
                        "scores": {k: part[k] for k in ("contrast", "coherent", "score", "margin")},
                        "added": _short(part["added"]),
                        "subtracted": _short(part["subtracted"]),
                        "unsteered": _short(result.unsteered["groups"][name]),
                    }
                    for name, part in result.winner["groups"].items()
                }
            }
            if "groups" in result.winner
            else {}
        ),
        "top": [
            {
                **r["setting"],
                "score": r["score"],
                "contrast": r["contrast"],
                "margin": r["margin"],
                "coherent": r["coherent"],
                **({"demo_ready": r["demo"]["ready"]} if "demo" in r else {}),  # --demo: such rows rank first
            }
            for r in result.rows[:10]
        ],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _short(metrics: dict) -> dict:
    """A side's metrics as the defaults file keeps them: floats rounded, no sample answers or per-group parts."""
    return {
        k: (round(v, 4) if isinstance(v, float) else v)
        for k, v in metrics.items()
        if k not in ("samples", "groups", "texts")
    }
