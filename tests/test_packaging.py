"""Packaging: pyproject.toml and requirements.txt agree, the `steering` command, and where config.yaml and the
data folders are found from any working folder (steering/config's rule)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from steering.config import HOME_ENV, PROJECT_ROOT, Config, home, load_config, override
from steering.errors import SteeringError

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SPACE_EXTRAS = ("app", "quant")  # what the Hugging Face Space installs from requirements.txt, beside the core


def _requirements(lines: list[str]) -> dict[str, str]:
    """{canonical name: specifier} of requirement lines; a name listed twice is an error."""
    found: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in found, f"{name} listed twice"
        found[name] = str(req.specifier)
    return found


def test_requirements_txt_is_the_core_and_space_extras_of_pyproject():
    project = PYPROJECT["project"]
    expected = _requirements(project["dependencies"])
    for extra in SPACE_EXTRAS:
        for name, spec in _requirements(project["optional-dependencies"][extra]).items():
            assert expected.setdefault(name, spec) == spec, f"{name}: different ranges in the core and [{extra}]"
    space = _requirements((PROJECT_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())
    assert space == expected


def test_extras_and_console_script_are_declared():
    project = PYPROJECT["project"]
    assert {"app", "eval", "bench", "dev"} <= set(project["optional-dependencies"])
    assert project["scripts"] == {"steering": "steering.cli:main"}
    # the same ranges wherever a package appears (core and every extra)
    ranges: dict[str, str] = {}
    for group in [project["dependencies"], *project["optional-dependencies"].values()]:
        for name, spec in _requirements(group).items():
            assert ranges.setdefault(name, spec) == spec, f"{name}: two different ranges in pyproject.toml"


def _installed_script() -> Path | None:
    """This environment's `steering` script when the package is installed in it (pip install -e .), else None."""
    script = Path(sys.executable).parent / "steering"
    if not script.is_file():
        return None
    dist = importlib.metadata.distribution("llama-steering")
    scripts = [ep for ep in dist.entry_points if ep.group == "console_scripts"]
    assert [(ep.name, ep.value) for ep in scripts] == [("steering", "steering.cli:main")]
    return script


def test_console_script_from_another_folder_has_the_module_commands(tmp_path):
    script = _installed_script()
    if script is None:
        pytest.skip("llama-steering is not installed in this environment (make install does: pip install -e .)")
    env = {k: v for k, v in os.environ.items() if k not in (HOME_ENV, "PYTHONPATH")}
    as_script = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    as_module = subprocess.run(
        [sys.executable, "-m", "steering", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert as_script.returncode == 0, as_script.stderr
    assert as_script.stdout.startswith("usage: steering ") and as_module.stdout.startswith("usage: python -m steering ")
    commands = as_module.stdout.split("{", 1)[1].split("}", 1)[0]
    assert "chat" in commands and "extract" in commands
    assert "{" + commands + "}" in as_script.stdout


# ---------------------------------------------------------------------------- the folder rule
@pytest.fixture
def no_home(monkeypatch):
    monkeypatch.delenv(HOME_ENV, raising=False)


def test_default_is_the_checkout_from_any_folder(no_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert home() == PROJECT_ROOT
    config = load_config()
    assert config.vectors_dir == PROJECT_ROOT / "vectors"
    assert config.datasets_dir == PROJECT_ROOT / "datasets"
    assert config.results_dir == PROJECT_ROOT / "results"
    assert (config.datasets_dir / "refusal" / "generate.json").is_file()
    # the checkout's config.yaml was read (its models: entries are not among the built-in defaults)
    assert "meta-llama/Llama-2-7b-chat-hf" in config.models


def test_home_env_holds_config_and_data(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("behavior: honesty\nvectors_dir: my_vectors\n", encoding="utf-8")
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    monkeypatch.chdir(PROJECT_ROOT)  # the working folder plays no part
    config = load_config()
    assert config.behavior == "honesty"
    assert config.vectors_dir == tmp_path / "my_vectors"
    assert config.datasets_dir == tmp_path / "datasets"
    assert config.results_dir == tmp_path / "results"


def test_home_env_without_config_gives_the_defaults_there(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    config = load_config()
    assert dict(config.models) == {}
    assert config.vectors_dir == tmp_path / "vectors"


def test_config_file_paths_are_relative_to_its_folder(no_home, tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    elsewhere = tmp_path / "abs_datasets"
    (folder / "settings.yaml").write_text(f"vectors_dir: vecs\ndatasets_dir: {elsewhere}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/settings.yaml")  # a relative --config is relative to the working folder
    assert config.vectors_dir == folder / "vecs"
    assert config.datasets_dir == elsewhere
    assert config.results_dir == PROJECT_ROOT / "results"  # not in the file: the home folder's


def test_data_dir_of_a_config_built_in_code(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    assert Config(vectors_dir=Path("v")).vectors_dir == tmp_path / "v"
    assert Config().datasets_dir == tmp_path / "datasets"
    assert Config(results_dir=Path("/abs/r")).results_dir == Path("/abs/r")
    assert override(Config(), vectors_dir="w").vectors_dir == tmp_path / "w"  # an override's relative path too


def test_bad_home_and_bad_folder_values_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "missing"))
    with pytest.raises(SteeringError, match=f"{HOME_ENV}=.*missing: not a folder"):
        load_config()
    monkeypatch.delenv(HOME_ENV)
    bad = tmp_path / "bad.yaml"
    bad.write_text("vectors_dir: [a, b]\n", encoding="utf-8")
    with pytest.raises(SteeringError, match=r"bad.yaml: 'vectors_dir' must be a folder path, found \['a', 'b'\]"):
        load_config(bad)


def _cli_elsewhere(cwd: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    """python -m steering run from `cwd`, with the package importable but not installed (PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k != HOME_ENV}
    env.update(PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "steering", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


def test_cli_bad_home_is_one_line(tmp_path):
    result = _cli_elsewhere(tmp_path, "chat", "--prompt", "hi", **{HOME_ENV: str(tmp_path / "nope")})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {HOME_ENV}={tmp_path / 'nope'}: not a folder (it should hold config.yaml and the data folders)"
    ]


@pytest.mark.integration
def test_cli_chat_from_another_folder_finds_config_and_vectors(tmp_path):
    result = _cli_elsewhere(tmp_path, "chat", "--prompt", "hi", "--max-new-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"added", "unsteered", "subtracted", "settings"}
    # the checkout's config.yaml (models: smollm2 layer 9 / tuned defaults) and vectors/refusal were used
    assert payload["settings"]["behavior"] == "refusal"
    assert payload["settings"]["max_new_tokens"] == 4
    assert list(tmp_path.iterdir()) == []  # nothing written in the working folder


def test_evaluate_writes_into_the_configs_results_folder(tmp_path):
    """evaluate's default --out is <results_dir>/eval/<behavior>, not results/eval of the working folder: a
    results_dir that is a file is refused by name before the model loads."""
    (tmp_path / "blocker").write_text("not a folder", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets_dir: {PROJECT_ROOT / 'datasets'}\nresults_dir: blocker\n", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    result = _cli_elsewhere(work, "evaluate", "--config", str(config), "--limit-ab", "1", "--limit-open", "1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --out {tmp_path / 'blocker' / 'eval' / 'refusal'}: "), lines
    assert list(work.iterdir()) == []


def test_build_outputs_are_ignored_by_git_and_by_ruff(tmp_path):
    """`pip wheel .` leaves build/lib/steering/...; git and `make lint` (ruff) must not see build/ or dist/."""
    ignored = subprocess.run(
        ["git", "check-ignore", "build/lib/steering/x.py", "dist/steering-0.1-py3-none-any.whl"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == ["build/lib/steering/x.py", "dist/steering-0.1-py3-none-any.whl"]
    excluded = PYPROJECT["tool"]["ruff"]["extend-exclude"]
    assert "build" in excluded and "dist" in excluded
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff not installed in this environment")
    (tmp_path / "pyproject.toml").write_text((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for folder in ("build/lib/steering", "dist"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "bad.py").write_text("import os\n")  # F401 if ruff scanned it
    result = subprocess.run([str(ruff), "check", "."], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_data_messages_point_at_the_home_setting_without_a_checkout(no_home, tmp_path, monkeypatch):
    """Issue 11 review: a non-editable install run elsewhere said "no 'refusal' vectors ... make them with:
    python -m steering extract", advice that fails too (no datasets there); now it says how to point at them."""
    from fixtures import make_tiny_engine, make_tiny_tokenizer

    from steering.config import home_hint
    from steering.core.datasets import load_ab_dataset

    assert home_hint() == ""  # a checkout: the data is where the README says
    monkeypatch.setattr("steering.config.tree.PROJECT_ROOT", tmp_path / "site-packages")  # no pyproject.toml
    monkeypatch.chdir(tmp_path)
    assert home() == tmp_path and HOME_ENV in home_hint() and "--config" in home_hint()
    config = load_config()
    with pytest.raises(SteeringError) as missing_dataset:
        load_ab_dataset(config.datasets_dir / "refusal" / "generate.json")
    assert HOME_ENV in str(missing_dataset.value) and "\n" not in str(missing_dataset.value)
    engine = make_tiny_engine(make_tiny_tokenizer(), config=config)
    with pytest.raises(SteeringError) as missing_vectors:
        engine.vectors_for("refusal")
    assert "make them with" in missing_vectors.value.detail and HOME_ENV in missing_vectors.value.detail
    monkeypatch.setenv(HOME_ENV, str(tmp_path))  # set: the home is chosen, no hint
    assert home_hint() == ""
