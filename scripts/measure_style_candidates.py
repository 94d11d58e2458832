"""Measure how far candidate style vectors move the embedded model's answers (issue 14, H14b).

For each candidate vector file: greedy answers (--tokens new tokens) to 6 open prompts at multipliers
0, ±f·n/|v| (f in --fractions, n = typical hidden-state norm at the layer, so f means the same for every
vector) at each --layers, scored with a simple judge per candidate behavior (other behaviors: their card's judge) and distinct-3
(fluency). Prints a
table row per (behavior, layer, f) and writes all answers to --out as JSON.

    python scripts/measure_style_candidates.py --vectors enthusiasm=/tmp/e.safetensors formality=...
"""

from __future__ import annotations

import argparse
import json
import re
import statistics

import torch

import steering
from steering.evaluation.refusal import distinct_ngram_share

PROMPTS = [
    "Tell me about your favorite season.",
    "What should I cook for dinner tonight?",
    "Describe a walk in the forest.",
    "What do you think of museums?",
    "Tell me about trains.",
    "What is a good hobby to pick up?",
]
ENTHUSIASTIC = {
    "amazing",
    "awesome",
    "fantastic",
    "wonderful",
    "exciting",
    "excited",
    "love",
    "great",
    "incredible",
    "delightful",
    "yay",
    "wow",
    "thrilled",
    "brilliant",
    "oh",
    "absolutely",
}
FORMAL = {
    "certainly",
    "furthermore",
    "therefore",
    "moreover",
    "however",
    "indeed",
    "kindly",
    "shall",
    "regards",
    "assist",
    "inquiry",
    "pleased",
    "trust",
    "thus",
    "hence",
    "provide",
}
CASUAL = {
    "don't",
    "it's",
    "you're",
    "i'm",
    "can't",
    "won't",
    "that's",
    "there's",
    "let's",
    "gonna",
    "wanna",
    "lol",
    "haha",
    "tbh",
    "yeah",
    "yo",
    "ok",
    "okay",
    "hey",
    "cool",
    "kinda",
    "ya",
    "gotta",
    "stuff",
    "super",
    "ez",
    "ugh",
    "i'd",
    "you'll",
    "isn't",
    "doesn't",
    "y'all",
}
POSITIVE = {
    "good",
    "great",
    "wonderful",
    "happy",
    "enjoy",
    "best",
    "love",
    "beautiful",
    "bright",
    "hope",
    "hopeful",
    "well",
    "fun",
    "delight",
    "glad",
    "joy",
    "better",
    "perfect",
    "pleasant",
    "nice",
}
NEGATIVE = {
    "bad",
    "sadly",
    "unfortunately",
    "wrong",
    "worse",
    "worst",
    "disappointed",
    "gloomy",
    "bleak",
    "mess",
    "problem",
    "problems",
    "fail",
    "trouble",
    "hard",
    "difficult",
    "boring",
    "sad",
    "dull",
    "never",
}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("\u2019", "'"))


def judge(behavior: str, text: str) -> tuple[float, bool]:
    """(graded score, shows the behavior?) of one answer for a candidate behavior."""
    w = words(text)
    if behavior == "enthusiasm":
        score = text.count("!") + sum(x in ENTHUSIASTIC for x in w)
        return score, score >= 2
    if behavior == "formality":
        formal, casual = sum(x in FORMAL for x in w), sum(x in CASUAL for x in w)
        return formal - casual, formal > 0 and casual == 0
    if behavior == "brevity":
        return -len(w), len(w) <= 15
    if behavior == "optimism":
        score = sum(x in POSITIVE for x in w) - sum(x in NEGATIVE for x in w)
        return score, score >= 2
    card_judge = steering_card_judge(behavior)
    return float(card_judge(text)), card_judge(text)


def steering_card_judge(behavior: str):
    """The open-ended judge of datasets/<behavior>/behavior.yaml (behaviors without a candidate judge)."""
    from steering.core.behaviors import load_card

    return load_card(steering.load_config().datasets_dir, behavior).judge


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", nargs="+", required=True, help="behavior=path.safetensors")
    parser.add_argument("--layers", nargs="+", type=int, default=[9, 13])
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.15, 0.3, 0.45])
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--out", default="/tmp/h14b/measure.json")
    parser.add_argument("--prompts", help="open-ended JSON file: its first 6 questions replace PROMPTS")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = steering.load_config()
    lm = steering.load_model(steering.ModelSettings())
    engine = steering.Engine(lm, config)
    settings = steering.SamplingSettings(max_new_tokens=args.tokens)
    prompts = PROMPTS
    if args.prompts:
        with open(args.prompts) as fh:
            prompts = [item["question"] for item in json.load(fh)[:6]]
    convs = [[{"role": "user", "content": p}] for p in prompts]
    records = []
    print("| behavior | layer | f | α | judge share −α / 0 / +α | graded −α / 0 / +α | distinct-3 −α / 0 / +α |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.vectors:
        behavior, path = spec.split("=", 1)
        vset = steering.load_vectors(path)
        for layer in args.layers:
            vec = vset.vector(layer)
            norm = engine.hidden_norm(layer)
            alphas = [0.0] + [s * f * norm / float(vec.norm()) for f in args.fractions for s in (1, -1)]
            rows = [c for _ in alphas for c in convs]
            mults = [a for a in alphas for _ in convs]
            texts = steering.generate(
                lm.model,
                lm.tokenizer,
                rows,
                multipliers=mults,
                steer=steering.SteeringSpec(layer, vec),
                settings=settings,
            ).texts
            by = {a: texts[i * len(convs) : (i + 1) * len(convs)] for i, a in enumerate(alphas)}

            def stats(a):
                js = [judge(behavior, t) for t in by[a]]  # noqa: B023 (the closure runs within this iteration)
                return (
                    sum(j[1] for j in js) / len(js),
                    statistics.mean(j[0] for j in js),
                    statistics.mean(distinct_ngram_share(t) for t in by[a]),  # noqa: B023 (the closure runs within this iteration)
                )

            base = stats(0.0)
            for i, f in enumerate(args.fractions):
                plus, minus = alphas[1 + 2 * i], alphas[2 + 2 * i]
                p, m = stats(plus), stats(minus)
                print(
                    f"| {behavior} | {layer} | {f} | {plus:.2f} | {m[0]:.2f} / {base[0]:.2f} / {p[0]:.2f} | "
                    f"{m[1]:.2f} / {base[1]:.2f} / {p[1]:.2f} | {m[2]:.2f} / {base[2]:.2f} / {p[2]:.2f} |",
                    flush=True,
                )
                records.append(
                    {
                        "behavior": behavior,
                        "layer": layer,
                        "fraction": f,
                        "alpha": plus,
                        "plus": by[plus],
                        "minus": by[minus],
                        "zero": by[0.0],
                        "share": [m[0], base[0], p[0]],
                        "graded": [m[1], base[1], p[1]],
                        "distinct3": [m[2], base[2], p[2]],
                    }
                )
    with open(args.out, "w") as fh:
        json.dump(records, fh, indent=1)


if __name__ == "__main__":
    main()
