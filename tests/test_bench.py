"""The bench command's pieces on the tiny random model (fast; the numbers themselves are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from steering.bench import cli as bench_cli
from steering.bench import cpu, gpu, tables, timing, worker, workers
from steering.bench.machine import machine_info


def test_bench_is_a_cli_command():
    from steering.cli import build_parser

    args = build_parser().parse_args(["bench", "--only", "generation", "hook", "--tokens", "8", "--json", "x.json"])
    assert args.func.func is bench_cli.cmd_bench and args.only == ["generation", "hook"] and args.tokens == 8


def test_no_hidden_flags():
    from steering.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--smoke"])  # the former hidden test-only flag is gone


def test_bench_does_not_import_the_cli():
    """steering.cli imports steering.bench to register it; bench never imports steering.cli (no cycle)."""
    code = ("import sys, steering.bench, steering.bench.cpu, steering.bench.gpu, steering.bench.workers, "
            "steering.bench.extraction; print('steering.cli' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]  # nor torch: `steering bench --help` stays light


def test_interleaved_runs_each_variant_in_turn():
    order = []
    times = timing.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=2)
    assert order == ["a", "b"] * 3  # one warm-up round, then two timed rounds
    assert [len(v) for v in times.values()] == [2, 2]


def test_generation_and_hook_sections(tiny_model, tiny_tokenizer):
    vector = torch.randn(tiny_model.config.hidden_size)
    gen = cpu.bench_generation(tiny_model, tiny_tokenizer, vector, 1, 2.0, tokens=6, repeats=1)
    assert gen["tokens"] == 6 and gen["three_panes_vs_one"] > 0 and gen["sequential_vs_one"] > 0
    hook = cpu.bench_hook(tiny_model, tiny_tokenizer, vector, 1, tokens=6, repeats=1)
    assert set(hook) >= {"hook_overhead_pct", "paired_overhead_pct", "no_hook_s", "hook_zero_s"}
    table = tables.format_cpu_table({"machine": machine_info(), "generation": {**gen, "first_text_s": 0.1},
                                     "hook": hook, "extraction": {"error": "tests/reference.py not found"}})
    assert "three panes / one row" in table and "hook at multiplier 0" in table
    assert "| extraction | error: tests/reference.py not found |" in table


def test_extraction_section_against_the_paper_loop(tiny_model, tiny_tokenizer):
    from steering.bench.extraction import bench_extraction
    from steering.config import PROJECT_ROOT

    result = bench_extraction(tiny_model, tiny_tokenizer, pairs=3, repeats=1, batch_size=2,
                              dataset=PROJECT_ROOT / "datasets" / "refusal" / "generate.json")
    assert result["pairs"] == 3 and result["layers"] == tiny_model.config.num_hidden_layers
    for mode in ("letter", "answer-mean"):
        assert result[mode]["min_cosine_vs_reference"] > 0.9999  # the same vectors, batched or one pair at a time


def test_worker_module_prints_one_result_line(monkeypatch):
    """The subprocess side is a module run with -m (no code in strings); an unknown kind is a usage error."""
    assert worker.main(["nope", "{}"]) == 2
    seen = []
    monkeypatch.setitem(worker.KINDS, "echo", lambda args: seen.append(args) or {"got": args["x"]})
    assert worker.main(["echo", '{"x": 3}']) == 0 and seen == [{"x": 3}]


def test_run_worker_reports_the_subprocess_error():
    result = workers.run_worker("load", {"device": "cpu", "threads": 1, "name": "/no/such/model/folder"}, timeout=300)
    # the worker module ran (python -m steering.bench.worker) and got as far as the model loader
    assert set(result) == {"error"} and "cannot load model '/no/such/model/folder'" in result["error"]


def test_synthetic_gpu_path_runs_tiny_on_cpu(tmp_path, capsys):
    result = gpu.run_gpu_bench(tokens=4, repeats=1, layers=2, skip_quantized=True, tiny_cpu=True)
    table = tables.format_gpu_table(result)
    assert "graphs after warm-up / after 3 alpha changes" in table
    assert "static cache + CUDA graphs, no compiler" in table and "decoding ms per step" in table
    assert result["cuda_graphs"]["greedy_tokens_equal_to_eager"] == [1.0, 1.0, 1.0]  # fp32: the same tokens
    assert result["compiled"]["decode_ms_per_step"] > 0
    bench_cli.write_results(tmp_path / "gpu.json", result, table)
    assert json.loads((tmp_path / "gpu.json").read_text())["compiled"]["tokens"] == 4
    assert (tmp_path / "gpu.md").read_text() == table + "\n"
    assert "wrote" in capsys.readouterr().out


def test_users_section_runs_several_users_in_one_batch(tiny_tokenizer):
    """bench --users (issue 12 item 4): all users in one batch, each checked against running alone."""
    from steering.bench.users import format_users_table, run_users
    from steering.models import LoadedModel, ModelSettings
    from fixtures import make_tiny_model

    lm = LoadedModel(model=make_tiny_model(len(tiny_tokenizer)), tokenizer=tiny_tokenizer, name="tiny", slug="tiny",
                     dtype=torch.float32, device=torch.device("cpu"), quantization=None, num_layers=4,
                     hidden_size=64, load_seconds=0.0, settings=ModelSettings(name="tiny"))
    vector = torch.randn(64, generator=torch.Generator().manual_seed(0)) * 4
    users = run_users(lm, [1, 3], 6, lambda layer: vector * (layer + 1), base_layer=2, multiplier=2.0)
    one, three = users["runs"]
    assert (one["users"], three["users"]) == (1, 3)
    assert one["most_requests_in_batch"] == 1 and three["most_requests_in_batch"] == 3
    assert one["tokens_generated"] == 3 * 6 and three["tokens_generated"] == 9 * 6
    assert three["rows_identical"] == three["rows"] == 9 and three["positions_agree"] == 1.0
    assert three["first_token_p50_s"] <= three["first_token_p95_s"] <= three["last_token_p95_s"]
    table = format_users_table(users, gpu=False)
    assert "| 3 | " in table and "9/9" in table and "4 users >= 2x" in table and ": n/a" in table


def test_users_flag_refuses_zero_users(tmp_path):
    from steering.errors import SteeringError

    from steering.cli import build_parser

    args = build_parser().parse_args(["bench", "--users", "0", "--json", str(tmp_path / "u.json")])
    with pytest.raises(SteeringError, match="--users: each user count must be at least 1, got 0"):
        bench_cli.cmd_bench(args, {}, engine_factory=lambda a, c: None)
    assert not (tmp_path / "u.json").exists()


def test_users_section_on_the_synthetic_model_layout(capsys):
    """The --synthetic-7b users path (GPU) on a tiny model of the same layout on the CPU: runs, GPU targets shown."""
    from steering.bench.users import _synthetic_lm, format_users_table, run_users

    lm = _synthetic_lm(2, tiny_cpu=True)
    vector = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    users = run_users(lm, [1, 2], 4, lambda layer: vector, base_layer=1, multiplier=4.0)
    assert [r["most_requests_in_batch"] for r in users["runs"]] == [1, 2]
    assert users["runs"][1]["rows_identical"] == 6
    table = format_users_table(users, gpu=True)
    assert "16 users >= 8x" in table and "p95 time to first token <= 1 s at 16 users: n/a" in table
