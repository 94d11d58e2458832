"""What every benchmark section shares: the prompt, the section names, the targets, the progress log."""

from __future__ import annotations

import sys

SECTIONS = ("generation", "hook", "extraction", "load", "memory")
PROMPT = [{"role": "user", "content": "Tell me about the history of the printing press in a few paragraphs."}]
TARGETS = {
    "three_panes_vs_one": 1.5,
    "hook_overhead_pct": 3.0,
    "extraction_speedup": 3.0,
    "cached_load_s": 5.0,
    "first_text_s": 1.0,
    "compiled_tok_s_per_pane": 125.0,
    "eager_tok_s_per_pane": 40.0,
    "int8_peak_gib": 7.5,
}


def log(message: str) -> None:
    """One progress line on stderr (the table goes to stdout)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
