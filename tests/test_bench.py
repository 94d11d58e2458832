"""The bench command's pieces on the tiny random model (fast; the numbers themselves are not checked)."""

from __future__ import annotations

import argparse
import json

import torch

from steering import bench


def test_bench_is_a_cli_command():
    from steering.cli import build_parser

    args = build_parser().parse_args(["bench", "--only", "generation", "hook", "--tokens", "8", "--json", "x.json"])
    assert args.func is bench.cmd_bench and args.only == ["generation", "hook"] and args.tokens == 8


def test_interleaved_runs_each_variant_in_turn():
    order = []
    times = bench.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=2)
    assert order == ["a", "b"] * 3  # one warm-up round, then two timed rounds
    assert [len(v) for v in times.values()] == [2, 2]


def test_generation_and_hook_sections(tiny_model, tiny_tokenizer):
    vector = torch.randn(tiny_model.config.hidden_size)
    gen = bench.bench_generation(tiny_model, tiny_tokenizer, vector, 1, 2.0, tokens=6, repeats=1)
    assert gen["tokens"] == 6 and gen["three_panes_vs_one"] > 0 and gen["sequential_vs_one"] > 0
    hook = bench.bench_hook(tiny_model, tiny_tokenizer, vector, 1, tokens=6, repeats=1)
    assert set(hook) >= {"hook_overhead_pct", "paired_overhead_pct", "no_hook_s", "hook_zero_s"}
    table = bench.format_cpu_table({"machine": bench.machine_info(), "generation": {**gen, "first_text_s": 0.1},
                                    "hook": hook})
    assert "three panes / one row" in table and "hook at multiplier 0" in table


def test_synthetic_gpu_path_runs_tiny_on_cpu(tmp_path, capsys):
    args = argparse.Namespace(synthetic_7b=True, smoke=True, layers_7b=2, tokens=4, repeats=1, skip_quantized=True,
                              work_dir=None, json=str(tmp_path / "gpu.json"))
    assert bench.cmd_bench(args, {}) == 0
    out = capsys.readouterr().out
    assert "graphs after warm-up / after 3 alpha changes" in out
    assert "static cache + CUDA graphs, no compiler" in out and "decoding ms per step" in out
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["cuda_graphs"]["greedy_tokens_equal_to_eager"] == [1.0, 1.0, 1.0]  # fp32: the same tokens
    assert result["compiled"]["decode_ms_per_step"] > 0
    assert (tmp_path / "gpu.json").exists() and (tmp_path / "gpu.md").exists()
