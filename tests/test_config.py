"""steering.config: the typed, frozen config tree (defaults in one place, file checks, one override function)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest
import yaml

from steering.config import (
    HOME_ENV,
    PROJECT_ROOT,
    AppSettings,
    Config,
    GenerationSettings,
    ModelSettings,
    load_config,
    model_defaults,
    override,
)
from steering.core.limits import Limits
from steering.errors import SteeringError


def _file(tmp_path: Path, data) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


@pytest.fixture
def home_here(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    return tmp_path


def test_builtin_defaults_are_the_dataclass_defaults(home_here):
    config = load_config()  # no config.yaml in the home folder: the built-in defaults
    assert config == Config()
    assert config.model == ModelSettings() and config.model.name == "smollm2-135m-instruct"
    assert config.generation == GenerationSettings(max_new_tokens=64, temperature=0.0, top_p=1.0, seed=0)
    assert config.limits == Limits() and config.app.concurrency_per_model == 4 and config.app.port == 7860
    assert config.extraction.batch_size == 16 and config.behavior == "refusal"
    assert config.default_model_settings.layer_fraction == 0.33 and dict(config.models) == {}
    assert config.vectors_dir == home_here / "vectors" and config.results_dir == home_here / "results"


def test_the_shipped_config_yaml_says_what_the_defaults_say_except_its_models():
    """config.yaml documents the defaults; apart from its per-model entries it must not drift from them."""
    shipped = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    defaults = Config().to_dict()
    for section, values in shipped.items():
        if section in ("models", "vectors_dir", "datasets_dir", "results_dir"):
            continue
        if isinstance(values, dict):
            for key, value in values.items():
                assert defaults[section][key] == value, f"config.yaml {section}.{key}"
        else:
            assert defaults[section] == values, f"config.yaml {section}"


def test_a_partial_file_keeps_the_other_defaults(tmp_path):
    config = load_config(_file(tmp_path, {"generation": {"max_new_tokens": 8}, "app": {"port": 9000}}))
    assert config.generation == GenerationSettings(max_new_tokens=8)
    assert config.app == AppSettings(port=9000)
    assert config.limits == Limits() and config.model == ModelSettings()


def test_an_empty_file_is_the_defaults(tmp_path, home_here):
    assert load_config(_file(tmp_path, "")) == Config()


def test_the_tree_is_frozen_and_typed():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.behavior = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.app.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.models["x"] = None  # type: ignore[index]  (a read-only mapping)
    loaded = load_config(PROJECT_ROOT / "config.yaml")
    assert pickle.loads(pickle.dumps(loaded)) == loaded == copy.deepcopy(loaded)  # e.g. a worker process, gr.State
    assert hash(loaded) == hash(copy.deepcopy(loaded))
    assert isinstance(load_config(PROJECT_ROOT / "config.yaml").generation.temperature, float)


def _assert_refused_in_one_line(tmp_path, data, message):
    """load_config of a file holding `data` fails with one line that names the file and contains `message`."""
    path = _file(tmp_path, data)
    with pytest.raises(SteeringError) as exc:
        load_config(path)
    text = str(exc.value)
    assert text.startswith(f"config file {path}: ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    "data, message",
    [
        ({"app": {"prot": 1}}, "unknown key 'app.prot' (expected one of: host, port, share,"),
        ({"colour": "red"}, "unknown key 'colour' (expected one of: model, behavior,"),
        ({"models": {"m": {"layers": 3}}}, "unknown key 'models.m.layers' (expected one of: read_mode, layer,"),
        ({"limits": {"max_tokens": 3}}, "unknown key 'limits.max_tokens'"),
    ],
)
def test_an_unknown_key_is_one_line_naming_the_file_and_the_key_path(tmp_path, data, message):
    _assert_refused_in_one_line(tmp_path, data, message)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"app": {"port": "80"}}, "'app.port' must be a whole number, found '80'"),
        ({"app": {"share": "yes"}}, "'app.share' must be true or false, found 'yes'"),
        ({"generation": {"temperature": "hot"}}, "'generation.temperature' must be a number, found 'hot'"),
        ({"generation": {"max_new_tokens": 1.5}}, "'generation.max_new_tokens' must be a whole number, found 1.5"),
        ({"generation": {"seed": True}}, "'generation.seed' must be a whole number or null, found True"),
        ({"generation": []}, "'generation' must be a mapping, found []"),
        ({"models": {"m": {"read_mode": "last"}}}, "'models.m.read_mode' must be 'letter' or 'answer-mean' or null"),
        ({"models": {"m": {"layer": "9"}}}, "'models.m.layer' must be a whole number or null, found '9'"),
        ({"evaluation": {"refusal_phrases": [1]}}, "'evaluation.refusal_phrases' must be a list of strings or null"),
        ({"behavior": 3}, "'behavior' must be str, found 3"),
        ({"vectors_dir": ""}, "'vectors_dir' must be a folder path, found ''"),
        ({"limits": {"max_new_tokens": 0}}, "limits.max_new_tokens must be a whole number >= 1, got 0"),
    ],
)
def test_a_wrong_type_is_one_line_naming_the_file_key_and_expected_type(tmp_path, data, message):
    _assert_refused_in_one_line(tmp_path, data, message)


def test_numbers_and_lists_are_normalised(tmp_path):
    config = load_config(
        _file(tmp_path, {"app": {"max_upload_mb": 8}, "evaluation": {"refusal_phrases": "nope"}, "limits": {}})
    )
    assert config.app.max_upload_mb == 8.0 and isinstance(config.app.max_upload_mb, float)
    assert config.evaluation.refusal_phrases == ("nope",)  # one string: a one-phrase list


def test_data_folder_rules(tmp_path, home_here):
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "c.yaml"
    path.write_text(f"vectors_dir: vecs\nresults_dir: {tmp_path / 'abs'}\n", encoding="utf-8")
    config = load_config(path)
    assert config.vectors_dir == folder / "vecs"  # relative in a file: to the file's folder
    assert config.results_dir == tmp_path / "abs"  # absolute: as it is
    assert config.datasets_dir == home_here / "datasets"  # not in the file: the home folder's
    assert override(config, datasets_dir="d").datasets_dir == home_here / "d"  # in code: the home folder's
    assert Config(vectors_dir=Path("~/v")).vectors_dir == Path("~/v").expanduser()


def test_override_by_dotted_keys_sections_and_keywords():
    base = Config()
    changed = override(base, {"app.port": 9000, "generation.seed": 7}, model={"name": "m"}, behavior="honesty")
    assert (changed.app.port, changed.generation.seed, changed.model.name, changed.behavior) == (
        9000,
        7,
        "m",
        "honesty",
    )
    assert changed.app.host == base.app.host and changed.generation.max_new_tokens == 64  # the rest kept
    assert base.app.port == 7860 and base.model.name == "smollm2-135m-instruct"  # the original is untouched
    assert override(base, model={"name": None, "dtype": "float32"}).model.name == base.model.name  # None: not given
    merged = override(base, models={"tiny": {"layer": 1}})
    assert merged.models["tiny"].layer == 1
    assert override(merged, {"models.tiny.multiplier": 3}).models["tiny"].layer == 1  # entries merge key by key


def test_override_checks_like_a_file():
    with pytest.raises(SteeringError, match=r"^command line: 'app.port' must be a whole number, found 'x'$"):
        override(Config(), {"app.port": "x"}, source="command line")
    with pytest.raises(SteeringError, match=r"^override: unknown key 'model.nme'"):
        override(Config(), model={"nme": "m"})


def test_cli_flags_override_the_config_through_override(tmp_path):
    """The CLI's model flags reach the loaded model settings through steering.config.override."""
    from steering.cli.loading import model_overrides
    from steering.cli.parser import build_parser

    args = build_parser().parse_args(["chat", "--prompt", "hi", "--model", "m", "--dtype", "float32"])
    config = override(load_config(_file(tmp_path, {"model": {"device": "cpu"}})), model=model_overrides(args))
    assert (config.model.name, config.model.dtype, config.model.device) == ("m", "float32", "cpu")


def test_layer_fraction_is_honoured(tmp_path):
    config = load_config(
        _file(
            tmp_path,
            {
                "default_model_settings": {"layer_fraction": 0.5, "multiplier": 3.0, "read_mode": "letter"},
                "models": {"known": {"layer": 2}, "partial": {"multiplier": 1.5}},
            },
        )
    )
    unknown = model_defaults(config, "other", 10)
    assert (unknown.layer, unknown.multiplier, unknown.read_mode) == (5, 3.0, "letter")
    partial = model_defaults(config, "org/partial", 10)  # an entry without a layer: the configured fraction
    assert (partial.layer, partial.multiplier, partial.read_mode) == (5, 1.5, "letter")
    assert model_defaults(config, "known", 10).layer == 2
    assert model_defaults(override(config, {"default_model_settings.layer_fraction": 1.0}), "x", 10).layer == 9


def test_to_dict_is_a_plain_view():
    view = Config().to_dict()
    assert view["app"]["port"] == 7860 and isinstance(view["vectors_dir"], str) and view["models"] == {}
    assert yaml.safe_load(yaml.safe_dump(view)) == view  # plain types only
    assert override(Config(), view) == Config()  # round trip


def test_cli_sampling_flags_override_the_generation_section(tmp_path):
    from steering.cli.parser import build_parser
    from steering.cli.steer import sampling_settings

    config = load_config(
        _file(tmp_path, {"generation": {"max_new_tokens": 5, "seed": 3}, "limits": {"max_new_tokens": 6}})
    )
    args = build_parser().parse_args(["chat", "--prompt", "hi", "--temperature", "0.5"])
    settings = sampling_settings(args, config)
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.seed) == (5, 0.5, 1.0, 3)
    with pytest.raises(SteeringError, match="^override: generation.max_new_tokens 7 is out of range: expected 1 to 6"):
        override(config, {"generation.max_new_tokens": 7})  # refused by the config itself, naming the key
    args = build_parser().parse_args(["chat", "--prompt", "hi", "--max-new-tokens", "9"])
    with pytest.raises(SteeringError, match="--max-new-tokens"):
        sampling_settings(args, config)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"app": {"port": 70000}}, "app.port must be from 1 to 65535, got 70000"),
        ({"app": {"port": 0}}, "app.port must be from 1 to 65535, got 0"),
        ({"app": {"concurrency_per_model": 0}}, "app.concurrency_per_model must be at least 1, got 0"),
        ({"app": {"max_queue": -1}}, "app.max_queue must be at least 0, got -1"),
        ({"app": {"max_prompt_chars": 0}}, "app.max_prompt_chars must be at least 1, got 0"),
        ({"app": {"max_upload_mb": 0}}, "app.max_upload_mb must be more than 0, got 0"),
        ({"generation": {"temperature": -5}}, "generation.temperature must be 0 (greedy) or more, got -5"),
        ({"generation": {"temperature": float("nan")}}, "generation.temperature must be a finite number"),
        ({"generation": {"top_p": 0}}, "generation.top_p must be in (0, 1], got 0"),
        ({"generation": {"top_p": 1.5}}, "generation.top_p must be in (0, 1], got 1.5"),
        ({"generation": {"seed": -1}}, "generation.seed -1 is out of range: expected 0 to"),
        ({"generation": {"max_new_tokens": 0}}, "generation.max_new_tokens must be at least 1, got 0"),
        ({"generation": {"max_new_tokens": 2000}}, "generation.max_new_tokens 2000 is out of range: expected 1 to"),
        ({"extraction": {"batch_size": 0}}, "extraction.batch_size must be at least 1, got 0"),
        ({"model": {"threads": 0}}, "model.threads must be at least 1, got 0"),
        (
            {"default_model_settings": {"layer_fraction": 1.5}},
            "default_model_settings.layer_fraction must be from 0 to 1",
        ),
        ({"default_model_settings": {"multiplier": 1e6}}, "default_model_settings.multiplier 1e+06 is out of range"),
        ({"models": {"m": {"layer": -1}}}, "models.m.layer must be at least 0, got -1"),
        ({"models": {"m": {"multiplier": 500}}}, "models.m.multiplier 500 is out of range"),
    ],
)
def test_a_value_out_of_range_is_one_line_naming_the_file_and_key(tmp_path, data, message):
    """Issue 11 review: values were type-checked only (port 70000, concurrency 0 ended in tracebacks)."""
    _assert_refused_in_one_line(tmp_path, data, message)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"app.port": 70000}, "app.port must be from 1 to 65535, got 70000"),
        ({"generation.temperature": -5}, "generation.temperature must be 0 (greedy) or more, got -5"),
        ({"app.concurrency_per_model": 0}, "app.concurrency_per_model must be at least 1, got 0"),
        ({"default_model_settings.layer_fraction": -0.1}, "default_model_settings.layer_fraction must be from 0 to 1"),
    ],
)
def test_override_checks_ranges_like_a_file(changes, message):
    with pytest.raises(SteeringError) as exc:
        override(Config(), changes, source="command line")
    assert str(exc.value).startswith("command line: " + message)


def test_in_range_edges_are_accepted():
    config = override(
        Config(),
        {
            "app.port": 65535,
            "app.max_queue": 0,
            "generation.top_p": 1,
            "generation.temperature": 0,
            "default_model_settings.layer_fraction": 1,
            "generation.max_new_tokens": 1024,
            "generation.seed": None,
        },
    )
    assert (config.app.port, config.app.max_queue, config.generation.top_p) == (65535, 0, 1.0)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("app", "concurrency_per_model", 0, "app.concurrency_per_model must be at least 1, got 0"),
        ("app", "max_queue", -1, "app.max_queue must be at least 0, got -1"),
        ("app", "port", 70000, "app.port must be from 1 to 65535, got 70000"),
    ],
)
def test_cli_refuses_an_out_of_range_config_value_in_one_line_exit_2(tmp_path, capsys, section, key, value, message):
    """`steering chat --config a.yaml` with such a file: one line naming the file and key, exit 2, no model load."""
    from steering.cli import main

    path = _file(tmp_path, {section: {key: value}})
    assert main(["chat", "--config", str(path), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"config file {path}: {message}" in err


def test_a_models_layer_beyond_the_model_is_refused_when_the_model_loads(tmp_path, tiny_tokenizer):
    """Issue 11 review: `models: {m: {layer: 99}}` was never checked against the model's layer count."""
    from fixtures import make_tiny_engine

    config = load_config(_file(tmp_path, {"models": {"org/Tiny-Model": {"layer": 99}}}))
    with pytest.raises(SteeringError) as exc:
        model_defaults(config, "tiny-model", 4)  # matched by slug: the message names the entry's key
    assert str(exc.value) == "config models.org/Tiny-Model.layer 99 is out of range: the model has layers 0..3"
    with pytest.raises(SteeringError, match=r"^config models.org/Tiny-Model.layer 99 is out of range"):
        make_tiny_engine(tiny_tokenizer, config=config, name="org/Tiny-Model", layers=4)
    assert model_defaults(override(config, {"models": {"org/Tiny-Model": {"layer": 3}}}), "tiny-model", 4).layer == 3
