"""python -m steering bench: the performance numbers of issue 5, measured side by side in one process.

Sections (all on by default; --only picks some):
  generation  three panes as one batch vs the same three one after another vs one unsteered row
              (same prompt, same token count: EOS is ignored), and time to the first streamed text
  hook        the steering hook at multiplier 0 vs no hook
  extraction  batched extraction (steering.extract.extraction) vs the paper's one-pair loop (tests/reference.py),
              pairs per second on the same pairs, for both read modes
  load        model load: cold (GGUF dequantized into an empty cache dir) vs cached, in subprocesses
  memory      peak resident memory (ru_maxrss) of full precision vs 8-bit (and 4-bit), in subprocesses

Timings are medians of interleaved repeats, so a busy machine slows every variant alike.
`--synthetic-7b` instead measures the GPU fast path on a randomly initialised Llama-2-7B-shaped model.

The subcommand itself (flags, which report runs, --json) is steering/cli/bench.py; this package never imports
steering.cli.

Modules, one job each:
  cpu         in-process CPU sections (generation, first text, hook) and run_cpu_bench
  extraction  batched extraction vs the paper's loop
  gpu         the synthetic-7B GPU report
  workers     starts the subprocess measurements (load, memory, 8-bit / 4-bit) and reads their results
  worker      the subprocess side, run as `python -m steering.bench.worker KIND JSON`
  tables      the Markdown tables (CPU report, GPU report, users)
  users       `--users`: several users at once through the scheduler
  timing      medians of interleaved, synchronised repeats
  machine     the machine's description, GPU copy bandwidth
  common      prompt, section names, targets, progress log

Importing this package does not import torch (`steering bench --help` stays fast).
"""
