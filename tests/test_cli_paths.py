"""Every model-running CLI command on the eager path and on the fast path, same results (issue 10 item 3).

The commands run in this process (steering.cli.main) with the model loader returning one loaded model per
path, so each path loads (and compiles) once: "eager" is the embedded model as configured; "fast" is the
same model loaded with `compile: true, compile_backend: eager` -- the persistent hooks, the static cache
and a torch.compile-captured decoding step, as on a GPU, without inductor's minute of compiling. Before the
fix, `test --compile --batch-size 2` crashed in the fast path's hook ("The size of tensor a (6) must match
the size of tensor b (4)"), and so did `evaluate`; test_the_issues_command runs that exact command.
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.integration

PATHS = ("eager", "fast")
_results: dict[tuple[str, str], object] = {}  # (command, path) -> parsed output, compared across paths


@pytest.fixture(scope="module")
def loaded(embedded_engine):
    from steering.config import ModelSettings
    from steering.models import load_model

    fast = load_model(ModelSettings(compile=True, compile_backend="eager"))
    eager = embedded_engine.lm if not embedded_engine.lm.settings.compile else load_model(ModelSettings())
    return {"eager": eager, "fast": fast}


@pytest.fixture()
def cli(loaded, monkeypatch, capsys):
    """cli(path, *argv) -> (exit code, stdout, stderr), with the path's model."""
    import steering.engine
    from steering.cli import main

    def run(path: str, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(steering.engine, "load_model", lambda settings: loaded[path])
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _same_as_eager(command: str, path: str, value: object) -> None:
    _results[(command, path)] = value
    other = _results.get((command, "eager" if path == "fast" else "fast"))
    if other is not None:
        assert value == other, f"{command}: the eager and the fast path differ"


def test_the_issues_command(tmp_path):
    done = run_cli(
        "test",
        "--compile",
        "--multipliers",
        "1",
        "--limit",
        "2",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "8",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads((tmp_path / "test_results_x1.json").read_text())["results"]) == 2


@pytest.mark.parametrize("path", PATHS)
def test_chat(path, cli):
    code, out, err = cli(path, "chat", "--prompt", "What's your favorite planet?", "--max-new-tokens", "8", "--json")
    assert code == 0, err
    greedy = json.loads(out)
    # sampled at alpha 0: nothing is steered, so the three panes are one text (issue 10 item 4)
    code, out, err = cli(
        path,
        "chat",
        "--prompt",
        "Tell me about your weekend.",
        "--max-new-tokens",
        "12",
        "--json",
        "--temperature",
        "0.8",
        "--top-p",
        "0.9",
        "--seed",
        "0",
        "--multiplier",
        "0",
    )
    assert code == 0, err
    panes = json.loads(out)
    assert panes["added"] == panes["unsteered"] == panes["subtracted"] != ""
    _same_as_eager("chat", path, ([greedy[k] for k in ("added", "unsteered", "subtracted")], panes["unsteered"]))


@pytest.mark.parametrize("path", PATHS)
def test_test_command(path, cli, tmp_path):
    results = []
    for batch in ("1", "2"):  # 3 rows (the fast path's compiled batch) and 6 rows (more than it holds)
        out = tmp_path / batch
        code, _, err = cli(
            path,
            "test",
            "--multipliers",
            "1",
            "--limit",
            "2",
            "--batch-size",
            batch,
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
        )
        assert code == 0, err
        results.append(json.loads((out / "test_results_x1.json").read_text())["results"])
    assert results[0] == results[1], "a question's answers must not depend on the batch"
    _same_as_eager("test", path, results[0])


@pytest.mark.parametrize("path", PATHS)
def test_evaluate(path, cli, tmp_path):
    flags = "--layers 9 --multipliers -2 0 2 --limit-ab 3 --limit-open 1 --open-multipliers 2".split()
    flags += ["--max-new-tokens", "6"]
    code, _, err = cli(path, "evaluate", *flags, "--out", str(tmp_path))
    assert code == 0, err
    ab = json.loads((tmp_path / "ab_sweep.json").read_text())
    answers = json.loads((tmp_path / "open_ended.json").read_text())["answers"]
    p_match = [round(v, 4) for row in ab["p_match"] for v in row]
    assert len(p_match) == 3 and len(answers) >= 1
    _same_as_eager("evaluate", path, (p_match, [a["text"] for a in answers]))


@pytest.mark.parametrize("path", PATHS)
def test_extract(path, cli, tmp_path):
    from steering.io.vector_store import load_vectors

    out = tmp_path / "v.safetensors"
    code, _, err = cli(path, "extract", "--max-pairs", "2", "--layers", "9", "--out", str(out))
    assert code == 0, err
    vector = load_vectors(out).vector(9)
    _same_as_eager("extract", path, [round(float(x), 4) for x in vector[:16]])


@pytest.mark.parametrize("behavior", ["refusal", "enthusiasm"])
def test_chat_steers_with_the_chosen_behaviors_own_layer_and_multiplier(cli, embedded_engine, behavior):
    """`chat --behavior enthusiasm` steered at the default behavior's (refusal's) layer and α: the CLI took
    its defaults from the config's behavior, not from the chosen one's tuned recipe (review, issue 14)."""
    code, out, err = cli(
        "eager",
        "chat",
        "--prompt",
        "What's your favorite planet?",
        "--behavior",
        behavior,
        "--max-new-tokens",
        "2",
        "--json",
    )
    assert code == 0, err
    settings = json.loads(out)["settings"]
    recipe = embedded_engine.recipe(behavior)
    assert (settings["layer"], settings["multiplier"]) == (recipe.layer, recipe.strength)
