"""Issue 10 item 10, CLI parts: bad arguments and destinations are one-line errors (exit 2) found before
the model loads; names are not paths; numbers are finite and bounded; the token budget is checked before
generating; replacing a vector file that has more layers or pairs needs --force; --threads everywhere.

Every command runs through the real `steering.cli.main([...])`. `no_model` makes loading a model a test
failure, so a refusal that comes only after the (slow) load fails the test. No test writes under the
project's vectors/ folder (`shipped_vectors_untouched` checks it).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import assert_refused, run_main

from steering.cli import build_parser
from steering.config import PROJECT_ROOT
from steering.errors import SteeringError

SHIPPED = PROJECT_ROOT / "vectors"


def _digest(folder):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def shipped_vectors_untouched():
    before = _digest(SHIPPED)
    yield
    assert _digest(SHIPPED) == before, "a test changed the shipped vectors/ files"


@pytest.fixture(autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _unwritable(tmp_path):
    """Destinations no user can write: a folder under a regular file; a path in /proc (Linux)."""
    blocker = tmp_path / "a-file.txt"
    blocker.write_text("not a folder")
    places = [blocker / "sub"]
    if sys.platform.startswith("linux"):
        places.append(Path("/proc/steering-no-such-folder"))  # not even root can create files there
    return places


def _vector_file(path, layers=range(30), pairs=250, size=8):
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet

    vectors = {layer: torch.full((size,), 0.01 * (layer + 1)) for layer in layers}  # small: fits the tiny model
    return save_safetensors(VectorSet(vectors, {"pairs": str(pairs), "read_mode": "letter"}), path)


def _config(tmp_path, **sections):
    """A config file: the project's, data folders pointing at tmp_path/vectors and the project's datasets."""
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    config.update({"vectors_dir": str(tmp_path / "vectors"), "datasets_dir": str(PROJECT_ROOT / "datasets")})
    config["models"]["smollm2-135m-instruct"]["layer"] = 2  # the tiny stand-in has 4 layers (0..3)
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _tiny_engine(config, name="smollm2-135m-instruct"):
    """An Engine around the tiny random Llama (hidden 64, 4 layers, byte tokenizer, context 512)."""
    from fixtures import make_tiny_engine, make_tiny_tokenizer

    from steering.config import ModelSettings

    return make_tiny_engine(make_tiny_tokenizer(), config, ModelSettings(name=name, cuda_graphs=False), name=name)


@pytest.fixture
def cli_loads_tiny(monkeypatch):
    """steering.cli._engine returns the tiny model (with the command's config); the engines made are listed."""
    made = []

    def load(args, config):
        made.append(_tiny_engine(config))
        return made[-1]

    monkeypatch.setattr("steering.cli.loading.load_engine", load)
    return made


# ---------------------------------------------------------------- tracebacks where one line is promised


def test_extract_dataset_that_is_a_folder(capsys, tmp_path, no_model):
    assert_refused(capsys, ["extract", "--dataset", tmp_path], f"--dataset {tmp_path}: is a folder, expected a file")


def test_test_questions_that_is_a_folder(capsys, tmp_path, no_model):
    assert_refused(
        capsys,
        ["test", "--questions", tmp_path, "--multipliers", "1", "--out", tmp_path / "o"],
        "is a folder, expected a file",
    )


def test_extract_unwritable_out_is_refused_before_the_model_loads(capsys, tmp_path, no_model):
    for place in _unwritable(tmp_path):
        out = place / "refusal.safetensors"
        assert_refused(
            capsys, ["extract", "--max-pairs", "2", "--layers", "9", "--out", out], f"--out {out}: cannot write"
        )
        assert_refused(
            capsys,
            ["extract", "--max-pairs", "2", "--layers", "9", "--out", out, "--gguf"],
            f"--out {out}: cannot write",
        )


def test_extract_out_that_is_a_folder_or_not_safetensors(capsys, tmp_path, no_model):
    assert_refused(capsys, ["extract", "--max-pairs", "2", "--out", tmp_path], "is a folder, expected a file name")
    assert_refused(capsys, ["extract", "--max-pairs", "2", "--out", tmp_path / "v.pt"], "expected a .safetensors")


def test_test_unwritable_out_is_refused_before_the_model_loads(capsys, tmp_path, no_model):
    for place in _unwritable(tmp_path):
        assert_refused(
            capsys, ["test", "--multipliers", "1", "--limit", "1", "--out", place], f"--out {place}: cannot write"
        )
    blocker = tmp_path / "a-file.txt"
    assert_refused(capsys, ["test", "--multipliers", "1", "--out", blocker], "exists and is not a folder")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["extract", "--batch-size", "-3"], "--batch-size must be at least 1, got -3"),
        (["extract", "--max-pairs", "0"], "--max-pairs must be at least 1, got 0"),
        (["extract", "--max-pairs", "-2"], "--max-pairs must be at least 1, got -2"),  # used to drop the last 2 pairs
        (["extract", "--layers", "9", "-1"], "--layers: layer -1 is out of range"),
        (["test", "--multipliers", "1", "--out", "OUT", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["test", "--multipliers", "1", "--out", "OUT", "--limit", "0"], "--limit must be at least 1, got 0"),
        (["chat", "--prompt", "hi", "--layer", "-2"], "--layer: layer -2 is out of range"),
        (["chat", "--prompt", "hi", "--threads", "0"], "--threads must be at least 1, got 0"),
        (["bench", "--tokens", "0"], "--tokens must be at least 1, got 0"),
        (["bench", "--repeats", "-1"], "--repeats must be at least 1, got -1"),
        (
            ["bench", "--json", "/proc/steering-no-such-folder/b.json"],
            "--json /proc/steering-no-such-folder/b.json: cannot write",
        ),
        (["evaluate", "--gen-batch-size", "0"], "--gen-batch-size must be at least 1, got 0"),
        (["tune", "--batch-rows", "-1"], "--batch-rows must be at least 1, got -1"),
        (["tune", "--limit", "0"], "--limit must be at least 1, got 0"),
        (
            ["tune", "--out", "/proc/steering-no-such-folder/d.json"],
            "--out /proc/steering-no-such-folder/d.json: cannot write",
        ),
        (
            ["bench", "--synthetic-7b", "--work-dir", "/proc/steering-no-such-folder"],
            "--work-dir /proc/steering-no-such-folder: cannot write",
        ),
    ],
)
def test_counts_below_one_and_negative_layers(capsys, no_model, argv, message):
    assert_refused(capsys, argv, message)


def test_export_gguf_unwritable_destination(capsys, tmp_path):
    source = _vector_file(tmp_path / "v.safetensors", layers=[1, 2])
    for place in _unwritable(tmp_path):
        out = place / "v.gguf"
        assert_refused(capsys, ["export-gguf", source, out], f"out {out}: cannot write")
    assert_refused(capsys, ["export-gguf", source, tmp_path], "is a folder, expected a file name")
    assert_refused(capsys, ["export-gguf", tmp_path / "missing.safetensors", tmp_path / "v.gguf"], "file not found")
    code, out, err = run_main(capsys, "export-gguf", source, tmp_path / "new" / "v.gguf")  # missing folders are made
    assert code == 0 and (tmp_path / "new" / "v.gguf").is_file(), err


def test_os_errors_during_a_command_are_one_line(capsys, tmp_path, monkeypatch):
    a = _vector_file(tmp_path / "a.safetensors", layers=[1])

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/a.safetensors")

    monkeypatch.setattr("steering.io.vector_store.load_vectors", denied)
    assert_refused(capsys, ["compare-vectors", a, a], "/somewhere/a.safetensors: Permission denied")


# ---------------------------------------------------------------- numbers finite and bounded


@pytest.mark.parametrize(
    "argv, message",
    [
        (["chat", "--prompt", "hi", "--multiplier", "nan"], "--multiplier must be a finite number, got nan"),
        (["chat", "--prompt", "hi", "--multiplier=-inf"], "--multiplier must be a finite number, got -inf"),
        (
            ["chat", "--prompt", "hi", "--multiplier", "1e30"],
            "--multiplier 1e+30 is out of range: expected between -100",
        ),
        (["test", "--multipliers", "1", "nan", "--out", "OUT"], "--multipliers must be a finite number, got nan"),
        (["test", "--multipliers", "-500", "--out", "OUT"], "--multipliers -500 is out of range"),
        (
            ["chat", "--prompt", "hi", "--seed", "99999999999999999999999"],
            "--seed 99999999999999999999999 is out of range",
        ),
        (["chat", "--prompt", "hi", "--seed", "-1"], "--seed -1 is out of range"),
        (["test", "--multipliers", "1", "--out", "OUT", "--seed", str(2**64)], "is out of range"),
        (
            ["chat", "--prompt", "hi", "--max-new-tokens", "5000"],
            "--max-new-tokens 5000 is out of range: expected 1 to 1024",
        ),
        (["chat", "--prompt", "hi", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
        (["chat", "--prompt", "hi", "--temperature", "nan"], "--temperature must be a finite number"),
        (["chat", "--prompt", "hi", "--temperature", "-1"], "--temperature must be 0 (greedy) or more"),
        (["chat", "--prompt", "hi", "--top-p", "nan"], "--top-p must be a finite number"),
        (["chat", "--prompt", "hi", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["tune", "--strengths", "0.5", "nan"], "--strengths must be a finite number, got nan"),
        (["tune", "--strengths", "1e9"], "--strengths 1e+09 is out of range"),
        (["tune", "--min-distinct", "nan"], "--min-distinct must be a finite number, got nan"),
        (["tune", "--max-perplexity", "inf"], "--max-perplexity must be a finite number, got inf"),
    ],
)
def test_numbers_refused_before_the_model_loads(capsys, no_model, argv, message):
    assert_refused(capsys, argv, message)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--ab", "no/such/file.json"], "no/such/file.json: file not found"),
        (["evaluate", "--open-ended", "no/such/open.json"], "no/such/open.json: file not found"),
        (["evaluate", "--vector", "no/such/vector.safetensors"], "no/such/vector.safetensors: file not found"),
        (["evaluate", "--limit-ab", "0"], "--limit-ab must be at least 1"),
        (["evaluate", "--multipliers", "1", "nan"], "--multipliers must be a finite number, got nan"),
        (["evaluate", "--open-multipliers", "inf"], "--open-multipliers must be a finite number, got inf"),
        (
            ["evaluate", "--multipliers", "1", "1e30"],
            "--multipliers 1e+30 is out of range: expected between -100 and 100",
        ),
        (["evaluate", "--seed", "-1"], "seed -1 is out of range"),
        (["evaluate", "--max-new-tokens", "5000"], "--max-new-tokens 5000 is out of range: expected 1 to 1024"),
        (["evaluate", "--batch-size", "-3"], "--batch-size must be at least 1, got -3"),
        (["evaluate", "--behavior", "../../x"], "behavior name '../../x' is not valid"),
        (["evaluate", "--out", "/proc/steering-test/eval"], "--out /proc/steering-test/eval: cannot write"),
        (["evaluate", "--ab", "/tmp"], "--ab /tmp: is a folder, expected a file"),
    ],
)
def test_evaluate_input_refused_before_the_model_loads(capsys, no_model, argv, message):
    assert_refused(capsys, argv, message)


def test_config_values_are_checked_like_flags(capsys, tmp_path, no_model):
    config = _config(tmp_path, generation={"seed": 99999999999999999999999})
    assert_refused(
        capsys, ["chat", "--prompt", "hi", "--config", config], "config file", "generation.seed", "out of range"
    )
    config = _config(tmp_path, generation={"max_new_tokens": 100000})
    assert_refused(
        capsys,
        ["test", "--multipliers", "1", "--out", tmp_path / "o", "--config", config],
        "config file",
        "generation.max_new_tokens 100000 is out of range",
    )
    config = _config(tmp_path, limits={"max_abs_multiplier": 5.0})
    assert_refused(
        capsys,
        ["chat", "--prompt", "hi", "--multiplier", "6", "--config", config],
        "--multiplier 6 is out of range: expected between -5 and 5",
    )


def test_chat_prompt_over_the_token_budget(capsys, tmp_path, cli_loads_tiny):
    config = _config(tmp_path, limits={"max_prompt_tokens": 100})
    _vector_file(tmp_path / "vectors" / "refusal" / "smollm2-135m-instruct.safetensors", layers=range(4), size=64)
    assert_refused(
        capsys, ["chat", "--prompt", "x" * 300, "--layer", "1", "--config", config], "tokens long", "the limit is 100"
    )
    assert cli_loads_tiny, "the check needs the tokenizer: it runs once the model is there"
    code, out, err = run_main(
        capsys, "chat", "--prompt", "hi", "--layer", "1", "--max-new-tokens", "4", "--config", config
    )
    assert code == 0 and "[unsteered]" in out, err  # a short prompt passes the same check


def test_test_refuses_an_oversized_question_before_writing_anything(capsys, tmp_path, cli_loads_tiny):
    config = _config(tmp_path)
    _vector_file(tmp_path / "vectors" / "refusal" / "smollm2-135m-instruct.safetensors", layers=range(4), size=64)
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps(["A short question?", "y" * 600]))  # 600 bytes > the tiny model's 512 context
    out = tmp_path / "out"
    assert_refused(
        capsys,
        [
            "test",
            "--questions",
            questions,
            "--multipliers",
            "1",
            "--layer",
            "1",
            "--max-new-tokens",
            "4",
            "--out",
            out,
            "--config",
            config,
        ],
        "context of 512 tokens",
    )
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- names are not paths


@pytest.mark.parametrize(
    "command",
    [
        ["extract", "--max-pairs", "1"],
        ["chat", "--prompt", "hi"],
        ["test", "--multipliers", "1", "--out", "OUT"],
        ["evaluate"],
        ["bench", "--only", "generation"],
        ["tune", "--dry-run"],
    ],
)
@pytest.mark.parametrize("name", ["../../x", "", "/tmp/abs", "a/b", "Refusal"])
def test_behavior_names_are_not_paths(capsys, tmp_path, monkeypatch, no_model, command, name):
    monkeypatch.chdir(tmp_path)
    assert_refused(capsys, command + ["--behavior", name], f"behavior name {name!r} is not valid")
    assert not any(tmp_path.rglob("*")), "something was written"


# ---------------------------------------------------------------- replacing a vector file


def test_extract_does_not_replace_a_file_with_more_layers_or_pairs(capsys, tmp_path, no_model):
    """The issue's example, against a copy-like file in a temporary vectors folder (never the shipped one)."""
    config = _config(tmp_path)
    target = _vector_file(tmp_path / "vectors" / "refusal" / "smollm2-135m-instruct.safetensors")
    before = target.read_bytes()
    assert_refused(
        capsys,
        ["extract", "--behavior", "refusal", "--max-pairs", "4", "--layers", "9", "--config", config],
        "30 layers (0..29), 250 pairs",
        "lose layers 0..8, 10..29 and 246 of its 250 pairs",
        "--force",
    )
    # all layers but fewer pairs: refused too, and so is the same file named with --out
    assert_refused(capsys, ["extract", "--max-pairs", "4", "--config", config], "246 of its 250 pairs")
    assert_refused(capsys, ["extract", "--max-pairs", "4", "--out", target, "--config", config], "--force")
    assert_refused(
        capsys,
        ["extract", "--method", "instructions", "--layers", "9", "--config", config],
        "lose layers 0..8, 10..29",
        "--force",
    )
    assert target.read_bytes() == before


def test_extract_force_replaces_and_says_what_it_replaced(capsys, tmp_path, cli_loads_tiny):
    config = _config(tmp_path)
    target = _vector_file(
        tmp_path / "vectors" / "refusal" / "smollm2-135m-instruct.safetensors", layers=range(4), size=64
    )
    code, out, err = run_main(
        capsys, "extract", "--behavior", "refusal", "--max-pairs", "4", "--layers", "1", "--force", "--config", config
    )
    assert code == 0, err
    assert "it replaced" in out and "4 layers (0..3), 250 pairs" in out, out
    from steering.io.vector_store import describe_vector_file

    info = describe_vector_file(target)
    assert info.layers == [1] and info.pairs == 4
    # same layers, more pairs: no --force needed, and the note still says what was replaced
    code, out, err = run_main(capsys, "extract", "--max-pairs", "5", "--layers", "1", "--config", config)
    assert code == 0 and "it replaced" in out and "1 layer (1), 4 pairs" in out, err


# ---------------------------------------------------------------- threads


def test_resolve_threads(monkeypatch):
    from steering.device import resolve_threads

    monkeypatch.setattr("steering.device.usable_cpus", lambda: 8)
    assert resolve_threads("auto", environ={}) == 4
    assert resolve_threads(None, environ={}) == 4
    assert resolve_threads("auto", environ={"OMP_NUM_THREADS": "3"}) == 3
    assert resolve_threads("auto", environ={"OMP_NUM_THREADS": "junk"}) == 4
    assert resolve_threads(2, environ={"OMP_NUM_THREADS": "3"}) == 2  # an explicit count wins
    assert resolve_threads("6") == 6
    monkeypatch.setattr("steering.device.usable_cpus", lambda: 1)
    assert resolve_threads("auto", environ={}) == 1
    for bad in (0, -2, "lots", 1.5, True):
        with pytest.raises(SteeringError, match="threads must be"):
            resolve_threads(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["extract"],
        ["chat", "--prompt", "hi"],
        ["test", "--multipliers", "1", "--out", "OUT"],
        ["compare-vectors", "a", "b"],
        ["export-gguf", "a", "b"],
        ["evaluate"],
        ["bench"],
        ["tune"],
    ],
)
def test_every_command_takes_threads(argv):
    assert build_parser().parse_args(argv + ["--threads", "1"]).threads == 1
    assert build_parser().parse_args(argv + ["--threads", "auto"]).threads == "auto"


def test_threads_flag_and_config_key_reach_torch_and_the_model_loader(capsys, tmp_path, monkeypatch):
    seen = []

    def load(args, config):
        from steering.cli.loading import model_overrides

        seen.append((model_overrides(args)["threads"], torch.get_num_threads()))
        raise SteeringError("stop here")

    monkeypatch.setattr("steering.cli.loading.load_engine", load)
    torch.set_num_threads(2)
    assert run_main(capsys, "chat", "--prompt", "hi", "--threads", "1")[0] == 2
    assert seen[-1] == (1, 1)
    torch.set_num_threads(2)
    config = _config(tmp_path, model={"threads": 1})
    assert run_main(capsys, "chat", "--prompt", "hi", "--config", config)[0] == 2
    assert seen[-1] == (None, 1)  # from config model.threads
    assert_refused(
        capsys,
        ["chat", "--prompt", "hi", "--config", _config(tmp_path, model={"threads": 0})],
        "threads must be at least 1, got 0",
    )


def test_load_model_sets_the_threads_first(monkeypatch):
    from steering import models
    from steering.config import ModelSettings

    calls = []
    monkeypatch.setattr(models, "set_threads", lambda value: calls.append(value))

    def stop(device):
        raise SteeringError("stop here")

    monkeypatch.setattr(models, "resolve_device", stop)
    with pytest.raises(SteeringError, match="stop here"):
        models.load_model(ModelSettings(threads=3))
    assert calls == [3]


# ---------------------------------------------------------------- devices this machine does not have


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "device, message",
    [
        ("cuda", "device 'cuda': CUDA is not available on this machine"),
        ("cuda:1", "device 'cuda:1': CUDA is not available on this machine"),
        ("tpu", "unknown device 'tpu'"),
    ],
)
def test_device_without_hardware_is_one_line(capsys, device, message):
    assert_refused(capsys, ["chat", "--prompt", "hi", "--device", device], message)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_mps_without_mps_is_one_line(capsys):
    assert_refused(capsys, ["chat", "--prompt", "hi", "--device", "mps"], "Apple MPS is not available")


# ---------------------------------------------------------------- program names and --config's help
COMMANDS = sorted(build_parser().commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_flags_are_reported_under_the_commands_name(capsys, no_model, command):
    """`steering bench --nope` said `error: python -m steering: unrecognized arguments` (the top level's name)
    for the commands without required arguments; every command's errors now name the command."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: python -m steering {command}: "), err
    assert "--nope" in lines[0] or "required" in lines[0], err  # a missing required argument is found first


@pytest.mark.parametrize(
    "argv0, prog", [("/venv/bin/steering", "steering"), ("/x/steering/__main__.py", "python -m steering")]
)
def test_every_usage_line_names_the_program_and_the_command(monkeypatch, argv0, prog):
    monkeypatch.setattr(sys, "argv", [argv0])
    parser = build_parser()
    assert parser.format_usage().startswith(f"usage: {prog} [-h]")
    for name, command in parser.commands.items():
        assert command.format_usage().startswith(f"usage: {prog} {name} "), name


def test_config_help_says_where_the_default_file_is(monkeypatch, tmp_path):
    """--config said "default: config.yaml"; the default is <home>/config.yaml (steering.config.home)."""
    squeeze = lambda text: "".join(text.split())  # noqa: E731  (argparse wraps the help, also at hyphens)
    monkeypatch.setenv("LLAMA_STEERING_HOME", str(tmp_path))
    parser = build_parser()
    for name in ("chat", "compare-vectors", "import-caa"):
        text = squeeze(parser.commands[name].format_help())
        assert squeeze("$LLAMA_STEERING_HOME when set, else the source checkout") in text, name
        assert squeeze(f"here: {tmp_path / 'config.yaml'})") in text, name
    monkeypatch.setenv("LLAMA_STEERING_HOME", str(tmp_path / "missing"))
    assert squeeze("missing: not a folder") in squeeze(build_parser().commands["chat"].format_help())


@pytest.mark.parametrize("alpha", ["1.5", "-1.5"])
def test_chat_labels_each_pane_with_the_strength_it_applied(capsys, tmp_path, cli_loads_tiny, alpha):
    """A recipe with its own subtracted strength (strength_minus 2 at strength 1.5): the pane steered by a negative
    row says what it applied ("-1.5 x 1.33 = -2"), whichever pane that is; a negative --multiplier does not print
    "+-1.5" / "--1.5", and the JSON's added / subtracted multipliers are the applied ones."""
    from steering.core.recipe import Recipe
    from steering.io.recipe_defaults import save_defaults

    config = _config(tmp_path)
    _vector_file(tmp_path / "vectors" / "refusal" / "smollm2-135m-instruct.safetensors", layers=range(4), size=64)
    recipe = Recipe(layer=1, strength=1.5, unit="multiplier", plus="clamp", minus="add", strength_minus=2.0)
    save_defaults(tmp_path / "vectors" / "refusal" / "smollm2-135m-instruct.defaults.json", recipe)
    argv = ["chat", "--prompt", "hi", "--max-new-tokens", "3", "--multiplier", alpha, "--config", str(config)]
    code, out, err = run_main(capsys, *argv)
    assert code == 0, err
    negative = "-1.5 x 1.33 = -2"
    if alpha == "1.5":
        assert "[added +1.5]" in out and f"[subtracted {negative}]" in out
    else:
        assert f"[added {negative}]" in out and "[subtracted +1.5]" in out
    assert "+-" not in out and "--1.5" not in out
    code, out, err = run_main(capsys, *argv, "--json")
    settings = json.loads(out)["settings"]
    expected = (1.5, -2.0) if alpha == "1.5" else (-2.0, 1.5)
    assert (settings["added_multiplier"], settings["subtracted_multiplier"]) == expected


def test_chat_strips_the_prompt_as_the_app_does(capsys, tmp_path, cli_loads_tiny):
    """`chat --prompt " hi "` answers exactly what `--prompt hi` answers (the app strips a message before sending it;
    a trailing space is another token sequence and changed the planet answers)."""
    config = _config(tmp_path)
    _vector_file(tmp_path / "vectors" / "refusal" / "smollm2-135m-instruct.safetensors", layers=range(4), size=64)
    answers = []
    for prompt in ("hi", "  hi \n"):
        code, out, err = run_main(
            capsys, "chat", "--prompt", prompt, "--max-new-tokens", "4", "--json", "--config", config
        )
        assert code == 0, err
        answers.append({side: json.loads(out)[side] for side in ("added", "unsteered", "subtracted")})
    assert answers[0] == answers[1]
