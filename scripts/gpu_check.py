"""GPU check of issue 10 ("Done when"): the CLI and the Calibrate sweep on the default CUDA-graph path.

On a random Llama-2-7B-shaped fp16 model (32 layers, hidden 4096, MLP 11008, 32 heads, vocabulary 32000)
with a Llama-2-chat template on a Llama-style test tokenizer (tests/chat_templates.py), through the
Engine's default fast path on CUDA (static cache + CUDA-graph decoding, `model.cuda_graphs`):

1. `python -m steering test` with 3-row batches and 12-row batches (more rows than the fast path's
   initial 4: the crash of issue 10 item 3), the two giving the same answers;
2. `python -m steering evaluate --no-open-ended` (A/B forward passes with the fast path's hooks on the
   model);
3. a Calibrate-style A/B sweep (evaluation.ab_sweep over layers x multipliers, as the app's tab runs it);
4. the CUDA-graph path against the eager path (greedy token ids, 3 and 12 rows), item 4 (sampled panes
   at alpha 0 identical and equal to the plain reply; at alpha != 0 the unsteered pane equals plain), and
   a 100,000-character system prompt refused before the model runs.

The CLI runs in this process (steering.cli.main) with the model loader returning the model built here,
so no 13 GB checkpoint is written. Writes report.json (and the CLI's outputs) under --out.

    python scripts/gpu_check.py --out OUT            # a CUDA GPU
    python scripts/gpu_check.py --out OUT --smoke    # a tiny model on the CPU, compile backend "eager"
    python scripts/gpu_check.py --out OUT --compile  # the compiled (inductor) fast path instead of CUDA graphs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from gpu_common import Sections, parse_args  # noqa: E402


def build(smoke: bool, compile: bool = False) -> Any:
    """The random model as a LoadedModel (Llama-2-chat template, fp16 on CUDA or float32 tiny on the CPU)."""
    from steering.config import ModelSettings
    from steering.models import LoadedModel
    from steering.synthetic import LLAMA2_7B, TINY, random_llama
    from tests.chat_templates import sentencepiece_tokenizer

    tokenizer = sentencepiece_tokenizer("llama2")
    if smoke:
        shape = replace(TINY, context=1024)
        device, dtype = torch.device("cpu"), torch.float32
        settings = ModelSettings(name="random-llama-2-7b-shape", compile=True, compile_backend="eager")
    else:
        shape = LLAMA2_7B
        device, dtype = torch.device("cuda"), torch.float16
        settings = ModelSettings(name="random-llama-2-7b-shape", dtype="float16", device="cuda", compile=compile)
    model = random_llama(shape, device, dtype)  # no EOS: fixed lengths
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=settings.name,
        slug=settings.name,
        dtype=dtype,
        device=device,
        quantization=None,
        num_layers=shape.layers,
        hidden_size=shape.hidden,
        load_seconds=0.0,
        settings=settings,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile", action="store_true", help="model.compile: inductor, compiled batch steps")
    args, out = parse_args(parser, argv)

    import steering.engine as engine_module
    from steering import cli
    from steering.config import load_config
    from steering.core.datasets import load_ab_dataset
    from steering.decode.generation import SamplingSettings, SteeringSpec, generate
    from steering.engine import Engine
    from steering.errors import SteeringError
    from steering.evaluation import ab_sweep
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if not args.smoke else "cpu (smoke)",
        "torch": torch.__version__,
    }
    import transformers

    report["transformers"] = transformers.__version__
    start = time.perf_counter()
    lm = build(args.smoke, args.compile)
    report["model"] = {
        "layers": lm.num_layers,
        "hidden": lm.hidden_size,
        "dtype": str(lm.dtype),
        "params": sum(p.numel() for p in lm.model.parameters()),
        "build_s": time.perf_counter() - start,
    }
    engine_module.load_model = lambda settings: lm  # the CLI's Engine.from_config gets the model built here
    config = load_config()
    engine = Engine(lm, config)
    engine.warm_up()  # the fast path the settings ask for (an explicit call since issue 11 item 4)
    fast = engine.fast_path
    report["fast_path"] = {
        "on": fast is not None,
        "compiled": bool(fast and fast.compiled),
        "cuda_graphs": bool(fast and fast.graphs is not None),
    }
    assert fast is not None, "the fast path should be on by default on CUDA"

    # a random vector set at 10% of a typical hidden-state norm, every layer
    norms = {layer: engine.hidden_norm(layer) for layer in (lm.num_layers // 3, lm.num_layers // 2)}
    gen = torch.Generator().manual_seed(1)
    vectors = {layer: torch.randn(lm.hidden_size, generator=gen) for layer in range(lm.num_layers)}
    scale = 0.5 * max(norms.values())
    vectors = {layer: v / v.norm() * scale for layer, v in vectors.items()}
    vector_file = save_safetensors(VectorSet(vectors, source="random"), out / "random_vectors.safetensors")
    layer = lm.num_layers // 3
    report["vector"] = {"layer": layer, "norm": scale, "hidden_norms": norms}
    checks: dict[str, Any] = {}

    check = Sections(checks).run

    def cli_test() -> dict[str, Any]:
        results = {}
        for batch in (1, 4):  # 3 rows, then 12 rows per batch
            folder = out / f"test_b{batch}"
            code = cli.main(
                [
                    "test",
                    "--vector",
                    str(vector_file),
                    "--layer",
                    str(layer),
                    "--multipliers",
                    "1.5",
                    "--limit",
                    "8",
                    "--batch-size",
                    str(batch),
                    "--max-new-tokens",
                    "16",
                    "--out",
                    str(folder),
                ]
            )
            assert code == 0, f"steering test --batch-size {batch} exited {code}"
            results[batch] = json.loads((folder / "test_results_x1.5.json").read_text())["results"]
        assert results[1] == results[4], "answers depend on the batch size"
        return {
            "questions": len(results[1]),
            "rows_per_batch": [3, 12],
            "same_answers_both_batch_sizes": True,
            "graphs_captured": len(fast.graphs.graphs) if fast.graphs else None,
            "steering_capacity": fast.steering.max_batch,
        }

    def cli_evaluate() -> dict[str, Any]:
        folder = out / "evaluate"
        code = cli.main(
            [
                "evaluate",
                "--vector",
                str(vector_file),
                "--no-open-ended",
                "--layers",
                str(layer),
                str(lm.num_layers // 2),
                "--multipliers",
                "-2",
                "0",
                "2",
                "--limit-ab",
                "12",
                "--out",
                str(folder),
            ]
        )
        assert code == 0, f"steering evaluate exited {code}"
        ab = json.loads((folder / "ab_sweep.json").read_text())
        return {"p_match": ab["p_match"], "layers": ab["layers"], "multipliers": ab["multipliers"]}

    def calibrate_sweep() -> dict[str, Any]:
        items = load_ab_dataset(ROOT / "datasets" / "refusal" / "test_ab.json")[:12]
        layers = [layer, lm.num_layers // 2, lm.num_layers - 1]
        multipliers = [-4.0, -2.0, 0.0, 2.0, 4.0]
        values = ab_sweep(engine, VectorSet(vectors, source="random"), layers, multipliers, items)
        assert values.shape == (3, 5) and bool(((values > 0) & (values < 1)).all())
        # Calibrate runs between chat turns: the chat still goes through the fast path afterwards
        engine.compare(
            [{"role": "user", "content": "Hello"}], vectors[layer], layer, 2.0, SamplingSettings(max_new_tokens=8)
        )
        return {"layers": layers, "multipliers": multipliers, "p_match": values.round(4).tolist()}

    def graphs_match_eager() -> dict[str, Any]:
        questions = json.loads((ROOT / "datasets" / "refusal" / "test_open_ended.json").read_text())[:4]
        questions = [q["question"] if isinstance(q, dict) else q for q in questions]
        settings = SamplingSettings(max_new_tokens=24)
        out_rows = {}
        for prompts in (questions[:1], questions[:4]):  # 3 and 12 rows
            convs = [[{"role": "user", "content": q}] for q in prompts for _ in range(3)]
            alphas = [m for _ in prompts for m in (2.0, 0.0, -2.0)]
            got = engine._generate(
                convs, settings, None, multipliers=alphas, steer=SteeringSpec(layer, vectors[layer])
            ).token_ids
            with lm.lock:
                want = generate(
                    lm.model,
                    lm.tokenizer,
                    convs,
                    multipliers=alphas,
                    steer=SteeringSpec(layer, vectors[layer]),
                    settings=settings,
                ).token_ids
            same = sum(a == b for a, b in zip(got, want))
            first = sum(a[:8] == b[:8] for a, b in zip(got, want))
            out_rows[len(convs)] = {"rows_identical": same, "rows_first_8_identical": first, "rows": len(convs)}
            assert got[1] != got[0], "steering should change the tokens"
        return {"by_rows": out_rows}

    def sampled_panes() -> dict[str, Any]:
        settings = SamplingSettings(max_new_tokens=24, temperature=0.8, top_p=0.9, seed=0)
        vector = vectors[layer]

        def agree(a: list[int], b: list[int]) -> int:  # leading tokens in common
            return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

        found: dict[str, Any] = {}
        failures = []
        for n, text in enumerate(
            ["Tell me about your weekend.", "What's your favorite planet?", "How do I make a cup of tea?"]
        ):
            conv = [{"role": "user", "content": text}]
            zero = engine.compare(conv, vector, layer, 0.0, settings).token_ids
            plain = engine._generate([conv], settings, None).token_ids[0]
            steered = engine.compare(conv, vector, layer, 4.0, settings).token_ids
            with lm.lock:  # the eager path, batch of 3 at alpha 0 and batch of 1
                eager3 = generate(lm.model, lm.tokenizer, [conv] * 3, settings=settings).token_ids
                eager1 = generate(lm.model, lm.tokenizer, [conv], settings=settings).token_ids[0]
            found[f"prompt{n}"] = {
                "alpha0_panes_identical": zero[0] == zero[1] == zero[2],
                "alpha0_pane_vs_plain_common_tokens": agree(zero[1], plain),
                "alpha4_unsteered_vs_plain_common_tokens": agree(steered[1], plain),
                "alpha4_added_vs_plain_common_tokens": agree(steered[0], plain),
                "eager_rows_identical": eager3[0] == eager3[1] == eager3[2],
                "eager_batch3_vs_batch1_common_tokens": agree(eager3[0], eager1),
                "tokens": len(plain),
            }
            if not (zero[0] == zero[1] == zero[2] == plain and steered[1] == plain):
                failures.append(n)
        assert not failures, f"item 4 not met for prompts {failures}: {found}"
        return found

    def token_budget() -> dict[str, Any]:
        began = time.perf_counter()
        try:
            engine.compare(
                [{"role": "user", "content": "Hi"}],
                vectors[layer],
                layer,
                2.0,
                SamplingSettings(max_new_tokens=16),
                system_prompt="x" * 100_000,
            )
        except SteeringError as exc:
            return {"refused_in_s": round(time.perf_counter() - began, 3), "message": str(exc)}
        raise AssertionError("a 100,000-character system prompt was not refused")

    check("cli_test", cli_test)
    check("cli_evaluate_no_open_ended", cli_evaluate)
    check("calibrate_sweep", calibrate_sweep)
    check("graph_path_vs_eager_greedy", graphs_match_eager)
    check("sampled_panes_item4", sampled_panes)
    check("token_budget", token_budget)
    report["checks"] = checks
    report["fast_path"].update(
        {
            "graphs": len(fast.graphs.graphs) if fast.graphs else None,
            "capture_s_total": round(sum(fast.graphs.capture_seconds), 2) if fast.graphs else None,
            "static_caches": len(fast._caches),
            "steering_capacity": fast.steering.max_batch,
            # the Engine's requests batched in the static cache (steering/decode/static_batch.py): graphs per bucket
            "scheduler": {
                "static_cache": engine.scheduler.fast_path is fast,
                "requests": engine.scheduler.stats.requests,
                "most_rows": engine.scheduler.stats.most_rows,
                "graph_buckets": sorted({key[2][0] for key in fast.graphs.graphs}) if fast.graphs else None,
                # compiled: the static batch's steps through the compiled step / the plain one (compiled_batch.py)
                "compiled_steps": fast.batch_steps.compiled_steps if fast.batch_steps else None,
                "plain_steps": fast.batch_steps.plain_steps if fast.batch_steps else None,
                "compiled_shapes": sorted(fast.batch_steps.ready) if fast.batch_steps else None,
            },
        }
    )
    if not args.smoke:
        report["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    report["total_s"] = time.perf_counter() - start
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(
        json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "traceback"} for k, v in checks.items()}, indent=1, default=str
        )
    )
    return 0 if all(c["ok"] for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
