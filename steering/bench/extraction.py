"""The extraction section: batched extraction (steering.extract.extraction) vs the paper's one-pair-at-a-time loop,
pairs per second on the same pairs, for both read modes, with the cosine between the two results.

The paper's loop is the tests' yardstick, tests/reference.py (one copy, kept out of the package): this
section loads it from the checkout, so it runs where the checkout's tests/ folder is (as do the datasets
it reads); elsewhere it reports an error line instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

from steering.bench.timing import interleaved, median
from steering.config import PROJECT_ROOT
from steering.core.datasets import load_ab_dataset

# torch and the model code are imported inside the functions (lazy), so `steering bench --help` stays fast.

PAPER_LOOP = PROJECT_ROOT / "tests" / "reference.py"


def paper_loop() -> Callable[..., dict[int, Any]]:
    """reference_vectors of tests/reference.py (the paper's extraction loop), loaded from the checkout.

    Raises:
        FileNotFoundError: the checkout's tests/reference.py is not there (an installed copy without tests).
    """
    if not PAPER_LOOP.is_file():
        raise FileNotFoundError(f"{PAPER_LOOP} not found: the extraction comparison needs the checkout's tests/")
    spec = importlib.util.spec_from_file_location("steering_bench_paper_loop", PAPER_LOOP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_vectors


def bench_extraction(
    model: Any, tokenizer: Any, pairs: int, repeats: int, batch_size: int, dataset: Path
) -> dict[str, Any]:
    """Batched extraction vs the paper's loop on the first `pairs` A/B pairs of `dataset`, every layer.

    Returns:
        Per read mode ("letter", "answer-mean"): pairs/s of each, the speed-up, the smallest cosine between
        the two vectors over layers, raw times; or {"error": ...} when the paper's loop is not available.
    """
    # lazy: torch (the bench package stays torch-free for `steering bench --help`)
    import torch

    from steering.core.layers import decoder_layers
    from steering.extract.extraction import extract_vectors

    try:
        reference_vectors = paper_loop()
    except FileNotFoundError as exc:
        return {"error": str(exc)}
    items = load_ab_dataset(dataset)[:pairs]
    layers = list(range(len(decoder_layers(model))))
    out: dict[str, Any] = {
        "pairs": len(items),
        "layers": len(layers),
        "batch_size": batch_size,
        "dataset": str(dataset.relative_to(PROJECT_ROOT) if dataset.is_relative_to(PROJECT_ROOT) else dataset),
    }
    for mode in ("letter", "answer-mean"):
        result: dict[str, Any] = {}

        def batched() -> None:
            result["batched"] = extract_vectors(  # noqa: B023 (the closure runs within this iteration)
                model,
                tokenizer,
                items,
                layers,
                mode,  # noqa: B023 (the closure runs within this iteration)
                batch_size=batch_size,
                progress=False,  # noqa: B023 (the closure runs within this iteration)
            )

        def reference() -> None:
            result["reference"] = reference_vectors(model, tokenizer, items, layers, mode)  # noqa: B023 (the closure runs within this iteration)

        times = interleaved({"batched": batched, "reference": reference}, repeats)
        cosines = [
            float(torch.nn.functional.cosine_similarity(result["batched"][k], result["reference"][k], dim=0))
            for k in layers
        ]
        b, r = median(times["batched"]), median(times["reference"])
        out[mode] = {
            "batched_pairs_s": len(items) / b,
            "reference_pairs_s": len(items) / r,
            "speedup": r / b,
            "min_cosine_vs_reference": min(cosines),
            "raw_s": times,
        }
    return out
