"""The bench command's pieces on the tiny random model (fast; the numbers themselves are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from steering.bench import cpu, gpu, tables, timing, worker, workers
from steering.bench.machine import machine_info
from steering.cli import bench as bench_cli
from steering.errors import SteeringError


def test_bench_is_a_cli_command():
    from steering.cli import build_parser

    args = build_parser().parse_args(["bench", "--only", "generation", "hook", "--tokens", "8", "--json", "x.json"])
    assert args.func is bench_cli.cmd_bench and args.only == ["generation", "hook"] and args.tokens == 8


def test_no_hidden_flags():
    from steering.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--smoke"])  # the former hidden test-only flag is gone


def test_bench_does_not_import_the_cli():
    """steering.cli.bench runs steering.bench; the bench package never imports steering.cli (no cycle)."""
    code = (
        "import sys, steering.bench, steering.bench.cpu, steering.bench.gpu, steering.bench.workers, "
        "steering.bench.extraction; print('steering.cli' in sys.modules, 'torch' in sys.modules)"
    )
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
    table = tables.format_cpu_table(
        {
            "machine": machine_info(),
            "generation": {**gen, "first_text_s": 0.1},
            "hook": hook,
            "extraction": {"error": "tests/reference.py not found"},
        }
    )
    assert "three panes / one row" in table and "hook at multiplier 0" in table
    assert "| extraction | error: tests/reference.py not found |" in table


def test_extraction_section_against_the_paper_loop(tiny_model, tiny_tokenizer):
    from steering.bench.extraction import bench_extraction
    from steering.config import PROJECT_ROOT

    result = bench_extraction(
        tiny_model,
        tiny_tokenizer,
        pairs=3,
        repeats=1,
        batch_size=2,
        dataset=PROJECT_ROOT / "datasets" / "refusal" / "generate.json",
    )
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
    from fixtures import make_tiny_lm

    from steering.bench.tables import format_users_table
    from steering.bench.users import run_users

    lm = make_tiny_lm(tiny_tokenizer)
    vector = torch.randn(64, generator=torch.Generator().manual_seed(0)) * 4
    users = run_users(lm, [1, 3], 6, lambda layer: vector * (layer + 1), base_layer=2, multiplier=2.0, repeats=2)
    one, three = users["runs"]
    assert (one["users"], three["users"]) == (1, 3) and users["repeats"] == 2
    assert [len(one["samples"]), len(three["samples"])] == [2, 2]
    assert one["most_requests_in_batch"] == 1 and three["most_requests_in_batch"] == 3
    assert one["tokens_generated"] == 3 * 6 and three["tokens_generated"] == 9 * 6
    assert three["rows_identical"] == three["rows"] == 2 * 9 and three["positions_agree"] == 1.0  # both rounds
    assert three["aggregate_tok_s_min"] <= three["aggregate_tok_s"] <= three["aggregate_tok_s_max"]
    assert three["first_token_p50_s"] <= three["first_token_p95_s"] <= three["last_token_p95_s"]
    table = format_users_table(users, gpu=False)
    assert "| 3 | " in table and "18/18" in table and "4 users >= 2x" in table and ": n/a" in table
    assert "medians of 2 interleaved rounds" in table


def test_users_rounds_interleave_the_counts_and_the_verdict_uses_medians(monkeypatch):
    """--repeats rounds: every round runs each count once, the order rotated per round (1 2 4, 2 4 1, 4 1 2);
    each count's numbers are medians over the rounds with the spread kept, and the target verdict reads the
    medians: one lucky 1-user round (the tester saw 2 users 3.14x faster than 1 alone) does not decide it."""
    from steering.bench import users as users_mod

    order = []
    one_user = iter([10.0, 2.0, 10.0])  # round 2's 1-user sample is an outlier (a load spike)

    def fake_sample(lm, requests, reference, fast_path=None):
        count = len(requests)
        order.append(count)
        tok_s = next(one_user) if count == 1 else {2: 15.0, 4: 19.0}[count]
        return {
            "users": count,
            "wall_s": 1.0,
            "tokens_generated": 3 * count,
            "aggregate_tok_s": tok_s,
            "per_user_tok_s": tok_s / count,
            "first_token_p50_s": 0.1,
            "first_token_p95_s": 0.2,
            "last_token_p50_s": 1.0,
            "last_token_p95_s": 1.0,
            "most_requests_in_batch": count,
            "steps": 3,
            "rows_identical": 3 * count,
            "rows": 3 * count,
            "agree": 9 * count,
            "positions": 9 * count,
        }

    class Quiet:  # the warm-up / reference scheduler
        def __init__(self, *args, **kwargs):
            pass

        def run(self, request):
            return type("R", (), {"token_ids": [[1]] * 3})()

        def close(self):
            pass

    monkeypatch.setattr(users_mod, "_sample", fake_sample)
    monkeypatch.setattr(users_mod, "user_requests", lambda lm, count, *a: [object()] * count)
    monkeypatch.setattr("steering.decode.scheduler.Scheduler", Quiet)
    result = users_mod.run_users(None, [1, 2, 4], 4, None, 0, 1.0, repeats=3)
    assert order == [1, 2, 4, 2, 4, 1, 4, 1, 2]
    by = {r["users"]: r for r in result["runs"]}
    assert by[1]["aggregate_tok_s"] == 10.0 and (by[1]["aggregate_tok_s_min"], by[1]["aggregate_tok_s_max"]) == (
        2.0,
        10.0,
    )
    assert result["speedup"]["4"] == pytest.approx(1.9)  # median 19 / median 10, not 19 / 2
    assert (by[4]["speedup_min"], by[4]["speedup_max"]) == (pytest.approx(1.9), pytest.approx(9.5))
    table = tables.format_users_table(result, gpu=False)
    assert "| 4 | 19.0 (19.0-19.0) | 1.90x (1.90-9.50) |" in table
    assert "target (medians): 4 users >= 2x the aggregate tok/s of 1 user: NOT met (1.90x)" in table
    with pytest.raises(SteeringError, match="--repeats: expected at least 1 round, got 0"):
        users_mod.run_users(None, [1], 4, None, 0, 1.0, repeats=0)


def test_users_flag_refuses_zero_users(tmp_path):
    from steering.cli import build_parser
    from steering.errors import SteeringError

    args = build_parser().parse_args(["bench", "--users", "0", "--json", str(tmp_path / "u.json")])
    with pytest.raises(SteeringError, match="--users: each user count must be at least 1, got 0"):
        bench_cli.cmd_bench(args, {}, engine_factory=lambda a, c: None)
    assert not (tmp_path / "u.json").exists()


def test_users_section_on_the_synthetic_model_layout(capsys):
    """The --synthetic-7b users path (GPU) on a tiny model of the same layout on the CPU: runs, GPU targets shown."""
    from steering.bench.tables import format_users_table
    from steering.bench.users import run_users
    from steering.bench.users_setup import synthetic_lm

    lm = synthetic_lm(2, tiny_cpu=True)
    vector = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    users = run_users(lm, [1, 2], 4, lambda layer: vector, base_layer=1, multiplier=4.0, repeats=1)
    assert [r["most_requests_in_batch"] for r in users["runs"]] == [1, 2]
    assert users["runs"][1]["rows_identical"] == 6
    table = format_users_table(users, gpu=True)
    assert "16 users >= 8x" in table and "p95 time to first token <= 1 s at 16 users: n/a" in table
    assert "scheduler path: eager" in table


def test_users_section_on_the_fast_paths_static_batch(tiny_tokenizer):
    """bench --users --fast-path: the scheduler batches in the fast path's static caches (CUDA graphs per bucket on
    a GPU; here the static cache on the CPU); every user still gets what it gets alone on that path."""
    from steering.bench.tables import format_users_table
    from steering.bench.users import run_users
    from steering.bench.users_setup import synthetic_lm
    from steering.decode.fast_path_setup import enable_fast_path

    lm = synthetic_lm(2, tiny_cpu=True)
    fast = enable_fast_path(lm, compile=False)
    try:
        vector = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
        users = run_users(lm, [1, 3], 4, lambda layer: vector, base_layer=1, multiplier=4.0, repeats=1, fast_path=fast)
    finally:
        fast.steering.remove()
    assert [r["most_requests_in_batch"] for r in users["runs"]] == [1, 3]
    assert users["runs"][1]["rows_identical"] == 9 and users["path"] == "static cache"
    assert "scheduler path: static cache" in format_users_table(users, gpu=True)
