"""Shared pieces of the `tune` tests (tests/test_tune.py, tests/test_tune_guards.py): tuning questions, a test
judge, the tiny engine with its vector file, and the CLI runner."""

from __future__ import annotations

import json

import torch

from steering.config import load_config, override
from steering.evaluation.refusal import RefusalDetector
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet

QUESTIONS = ["What's your favorite river?", "Hi", "Tell me about dogs."]  # none is a held-out test question


class _ParityDetector:
    """Random weights never refuse: call a reply a refusal when its character codes sum to an even number,
    a deterministic function of the text that steering moves."""

    phrases = ("(parity)",)

    def __call__(self, text: str) -> bool:
        return sum(map(ord, text)) % 2 == 0


DETECTOR = _ParityDetector()


def _vset():
    torch.manual_seed(3)
    return VectorSet(
        {layer: torch.randn(64) * 2.0 for layer in range(4)}, {"model": "tiny", "read_mode": "answer-mean"}
    )


def tune_engine(tmp_path, tokenizer):
    """A tiny eager engine whose vectors folder (under tmp_path) holds the refusal vector file _vset()."""
    from fixtures import PATHS, make_engine

    config = load_config()
    config = override(config, vectors_dir=str(tmp_path / "vectors"))
    save_safetensors(_vset(), tmp_path / "vectors" / "refusal" / "tiny.safetensors")
    return make_engine(tokenizer, PATHS["eager"], config)


def _tune_cli(engine, monkeypatch, *flags, detector=DETECTOR):
    """Exit code of `tune --max-loops off FLAGS --unit multiplier --max-new-tokens 6 --limit 100 --force` on `engine`
    with the test judge. --force: the config model's shipped defaults file exists, and tune refuses it before
    loading; the engine's own (default) destination is under tmp_path. --max-loops off (FLAGS may set it again):
    the tiny random model's 6-token answers repeat tokens whatever the setting, so the loop limit would decide
    these tests' winners instead of what they test."""
    import steering.cli as cli

    monkeypatch.setattr("steering.cli.loading.load_engine", lambda args, config: engine)
    monkeypatch.setattr(RefusalDetector, "from_config", classmethod(lambda cls, config: detector))
    return cli.main(
        [
            "tune",
            "--max-loops",
            "off",
            *flags,
            "--unit",
            "multiplier",
            "--max-new-tokens",
            "6",
            "--limit",
            "100",
            "--force",
        ]
    )


class _AddedSideJudge:
    """A judge fitted to a run's cached answers (tune cache files): a reply is a refusal when only an added-side
    job (a clamp key) wrote it, so the winner steers (contrast > 0) and tune writes it; tune judges cached
    answers again, so a second run with this judge generates nothing."""

    phrases = ("(added side)",)

    def __init__(self, *caches):
        added, other = set(), set()
        for cache in caches:
            for key, job in json.loads(cache.read_text())["jobs"].items():
                (added if "|clamp|" in key else other).update(job["texts"])
        self.refusals = added - other

    def __call__(self, text: str) -> bool:
        return text in self.refusals
