"""The benchmark's Markdown tables: the CPU report, the GPU (synthetic 7B) report and the users table
(`--users`), each measurement next to its target (steering.bench.common.TARGETS, steering.bench.users.TARGETS)
and whether it was met."""

from __future__ import annotations

from typing import Any

from steering.bench.users import TARGETS as USERS_TARGETS


def _met(value: float | None, target: float, higher_is_better: bool = False) -> str:
    """ "met", "NOT met" or "n/a" (no value)."""
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "NOT met"


def format_cpu_table(r: dict[str, Any]) -> str:
    """The CPU report (steering.bench.cpu.run_cpu_bench's results) as a Markdown table."""
    m = r["machine"]
    lines = [
        f"machine: {m.get('cpu', '?')}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"load average {m.get('load_average_at_start')} -> {m.get('load_average_at_end')}"
    ]
    if "model" in r:
        lines.append(f"model: {r['model']}; steering: {r['steering']}")
    lines += ["", "| measurement | value | target | |", "| --- | --- | --- | --- |"]
    g = r.get("generation")
    if g:
        lines += [
            f"| one unsteered row, {g['tokens']} tokens | {g['one_s']:.2f} s ({g['ms_per_token_one']:.1f} ms/token) | | |",
            f"| three panes, one batch | {g['three_batched_s']:.2f} s ({g['ms_per_token_three_batched']:.1f} ms/token) | | |",
            f"| three rows one after another | {g['three_sequential_s']:.2f} s | | |",
            f"| three panes / one row | {g['three_panes_vs_one']:.2f}x | <= 1.5x | {_met(g['three_panes_vs_one'], 1.5)} |",
            f"| three sequential / one row | {g['sequential_vs_one']:.2f}x | | |",
        ]
        if "one_standard_linear_s" in g:
            lines.append(
                f"| same with plain nn.Linear (no steering/decode/cpu_linear.py): one row / three panes / ratio "
                f"| {g['one_standard_linear_s']:.2f} s / {g['three_batched_standard_linear_s']:.2f} s / "
                f"{g['three_panes_vs_one_standard_linear']:.2f}x | | |"
            )
        lines += [
            f"| first streamed text (Engine.compare) | {g['first_text_s']:.3f} s | <= 1 s | {_met(g['first_text_s'], 1.0)} |",
        ]
    h = r.get("hook")
    if h:
        lines.append(
            f"| hook at multiplier 0 vs no hook | {h['hook_overhead_pct']:+.1f}% (paired {h['paired_overhead_pct']:+.1f}%) "
            f"| <= 3% | {_met(h['hook_overhead_pct'], 3.0)} |"
        )
    e = r.get("extraction")
    if e and "error" in e:
        lines.append(f"| extraction | error: {e['error']} | | |")
    elif e:
        for mode in ("letter", "answer-mean"):
            x = e[mode]
            lines.append(
                f"| extraction {mode}, {e['pairs']} pairs x {e['layers']} layers | batched {x['batched_pairs_s']:.1f} "
                f"pairs/s vs paper loop {x['reference_pairs_s']:.1f} pairs/s = {x['speedup']:.2f}x "
                f"(cos >= {x['min_cosine_vs_reference']:.4f}) | >= 3x | {_met(x['speedup'], 3.0, True)} |"
            )
    ld = r.get("load")
    if ld and "error" not in ld:
        lines += [
            f"| model load, cold (GGUF dequantize) | {ld['cold_s']:.2f} s | | |",
            f"| model load, cached | {ld['cached_s']:.2f} s (imports {ld['imports_s']:.1f} s not counted) | <= 5 s "
            f"| {_met(ld['cached_s'], 5.0)} |",
        ]
    elif ld:
        lines.append(f"| model load | error: {ld['error']} | | |")
    mem = r.get("memory")
    if mem:
        for name in ("full", "int8", "nf4"):
            x = mem[name]
            if "error" in x:
                lines.append(f"| peak RSS, {name} | error: {x['error'][:120]} | | |")
            else:
                lines.append(
                    f"| peak RSS, {name} ({x['quantization'] or x['dtype']}), load + {mem['generate_tokens']} "
                    f"tokens x 3 rows | peak {x['peak_rss_mib']:.0f} MiB, at the end {x.get('rss_end_mib', 0):.0f} MiB "
                    f"(after imports {x['rss_imports_mib']:.0f} MiB) | | |"
                )
    return "\n".join(lines)


def format_gpu_table(r: dict[str, Any]) -> str:
    """The GPU report (steering.bench.gpu.run_gpu_bench's results) as a Markdown table."""
    m, c = r["machine"], r["ceiling"]
    lines = [
        f"GPU: {m.get('gpu')}, torch {m['torch']}, transformers {m.get('transformers')}; random Llama-2-7B shape "
        f"({r['model']['layers']} layers, {r['model']['params'] / 1e9:.2f} B params, fp16 {r['model']['weights_gib']:.1f} GiB)",
        "",
        "| measurement | value | target | |",
        "| --- | --- | --- | --- |",
    ]
    e, k, g = r["eager"], r["compiled"], r.get("cuda_graphs")
    lines += [
        f"| eager, batch of three: tok/s per pane | {e['tok_s_per_pane']:.1f} | >= 40 | {_met(e['tok_s_per_pane'], 40, True)} |",
    ]
    if g:
        lines += [
            f"| static cache + CUDA graphs, no compiler (default on CUDA), batch of three: tok/s per pane "
            f"| {g['tok_s_per_pane']:.1f} | | |",
            f"| CUDA graphs: one row tok/s; first generation (warm-up + capture) | {g['tok_s_single_row']:.1f}; "
            f"{g['first_generation_s']:.2f} s (captures {', '.join(f'{x:.2f}' for x in g['captures_s'])} s) | | |",
            f"| CUDA graphs: greedy tokens equal to eager (per row) "
            f"| {', '.join(f'{x:.0%}' for x in g['greedy_tokens_equal_to_eager'])} | | |",
        ]
    steps = [
        (name, x) for name, x in (("eager", e), ("CUDA graphs", g), ("compiled", k)) if x and "decode_ms_per_step" in x
    ]
    if steps:
        lines.append(
            "| time to first text (setup + prefill) / decoding ms per step: "
            + ", ".join(name for name, _ in steps)
            + " | "
            + "; ".join(f"{x['first_text_s'] * 1000:.0f} ms / {x['decode_ms_per_step']:.2f} ms" for _, x in steps)
            + " | | |"
        )
    lines += [
        f"| static cache + torch.compile, batch of three: tok/s per pane | {k['tok_s_per_pane']:.1f} | >= 125 "
        f"| {_met(k['tok_s_per_pane'], 125, True)} |",
        f"| static cache + torch.compile, one row: tok/s | {k['tok_s_single_row']:.1f} | | |",
        f"| compiled: three panes / one row (time) | {k['three_panes_vs_one']:.2f}x | | |",
        f"| same, host sync before queuing each step (no lookahead): eager / compiled tok/s per pane "
        f"| {e.get('tok_s_per_pane_without_lookahead', 0):.1f} / {k.get('tok_s_per_pane_without_lookahead', 0):.1f} | | |",
        f"| compile warm-up at start (batches 3 and 1) | {k['warm_up_s']:.0f} s | | |",
        f"| graphs after warm-up / after 3 alpha changes | {k['graphs_after_warm_up']} / {k['graphs_after_alpha_changes']} "
        f"| no recompile | {'met' if k['graphs_after_warm_up'] == k['graphs_after_alpha_changes'] else 'NOT met'} |",
        f"| greedy tokens equal to eager (per row, fp16) | {', '.join(f'{x:.0%}' for x in k['greedy_tokens_equal_to_eager'])} | | |",
        f"| memory-bandwidth ceiling (fp16 weights / bandwidth) | {c['tok_s_at_copy_bandwidth']:.0f} tok/s at measured copy "
        f"{c['copy_bandwidth_gb_s']:.0f} GB/s"
        + (
            f"; {c['tok_s_at_datasheet_bandwidth']:.0f} tok/s at datasheet {c['datasheet_bandwidth_gb_s']:.0f} GB/s"
            if c.get("tok_s_at_datasheet_bandwidth")
            else ""
        )
        + " | | |",
    ]
    for name, label in (("int8", "8-bit LLM.int8"), ("nf4", "4-bit nf4")):
        x = r.get(name)
        if x is None:
            continue
        if "error" in x:
            lines.append(f"| {label} | error: {x['error'][-200:]} | | |")
            continue
        target = f"<= 7.5 GiB | {_met(x['peak_allocated_gib'], 7.5)}" if name == "int8" else "|"
        lines.append(
            f"| {label}: peak GPU memory (allocated; reserved) | {x['peak_allocated_gib']:.2f} GiB; "
            f"{x['peak_reserved_gib']:.2f} GiB (weights {x['weights_gib']:.2f}) | {target} |"
        )
        lines.append(
            f"| {label}: eager batch of three, tok/s per pane ({x['tokens']} tokens) | {x['tok_s_per_pane']:.1f} | | |"
        )
    return "\n".join(lines)


def format_users_table(
    users: dict[str, Any], gpu: bool, machine: dict[str, Any] | None = None, model: Any = None
) -> str:
    """The users section as a Markdown table, with the issue-12 targets marked met / NOT met (on the medians).

    Args: users: run_users' result; gpu: mark the GPU targets (else the CPU one); machine, model: described
    in a first line when given (machine_info: CPU / GPU, threads, load average at start and end).
    """
    lines = []
    if machine is not None:
        lines.append(
            f"machine: {machine.get('gpu') or machine.get('cpu', '?')}, {machine.get('cpu_count')} cores, "
            f"torch {machine.get('torch')} ({machine.get('torch_threads')} threads), load average "
            f"{machine.get('load_average_at_start')} -> {machine.get('load_average_at_end')}; model: {model}"
        )
    repeats = users.get("repeats", 1)
    lines += [
        f"three panes per user, {users['tokens']} tokens per pane (EOS ignored), all users submit at once; "
        f"medians of {repeats} interleaved rounds (min-max over the rounds in brackets); scheduler path: "
        f"{users.get('path', 'eager')}",
        "",
        "| users | aggregate tok/s | x 1 user | per-user tok/s | first token p50 / p95 | "
        "last token p50 / p95 | largest batch (requests) | rows identical to alone | token positions agreeing |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in users["runs"]:
        aggregate = f"{r['aggregate_tok_s']:.1f}"
        if "aggregate_tok_s_min" in r:
            aggregate += f" ({r['aggregate_tok_s_min']:.1f}-{r['aggregate_tok_s_max']:.1f})"
        ratio = f"{users['speedup'].get(str(r['users']), 0):.2f}x"
        if r.get("speedup_min") is not None and r["users"] != 1:
            ratio += f" ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
        lines.append(
            f"| {r['users']} | {aggregate} | {ratio} "
            f"| {r['per_user_tok_s']:.1f} | {r['first_token_p50_s']:.2f} / {r['first_token_p95_s']:.2f} s "
            f"| {r['last_token_p50_s']:.2f} / {r['last_token_p95_s']:.2f} s | {r['most_requests_in_batch']} "
            f"| {r['rows_identical']}/{r['rows']} | {100 * r['positions_agree']:.1f}% |"
        )
    lines.append("")
    by = {r["users"]: r for r in users["runs"]}
    if gpu:
        s16 = users["speedup"].get("16")
        ok = "n/a" if s16 is None else ("met" if s16 >= USERS_TARGETS["gpu_16_users_vs_1"] else "NOT met")
        lines.append(
            f"target (medians): 16 users >= 8x the aggregate tok/s of 1 user: {ok}"
            + (f" ({s16:.2f}x)" if s16 is not None else "")
        )
        p95 = by.get(16, {}).get("first_token_p95_s")
        ok = "n/a" if p95 is None else ("met" if p95 <= USERS_TARGETS["gpu_p95_first_token_s_16"] else "NOT met")
        lines.append(
            f"target (medians): p95 time to first token <= 1 s at 16 users: {ok}" + (f" ({p95:.2f} s)" if p95 else "")
        )
    else:
        s4 = users["speedup"].get("4")
        ok = "n/a" if s4 is None else ("met" if s4 >= USERS_TARGETS["cpu_4_users_vs_1"] else "NOT met")
        lines.append(
            f"target (medians): 4 users >= 2x the aggregate tok/s of 1 user: {ok}"
            + (f" ({s4:.2f}x)" if s4 is not None else "")
        )
    return "\n".join(lines)
