"""app.py's command line and launch options (no model, no server)."""

from __future__ import annotations

import socket

import app_harness
import pytest

import app
from steering.config import Config, override

APP = {"host": "127.0.0.1", "port": 7860, "share": False, "password_env": "MY_PASSWORD", "max_upload_mb": 64}
CONFIG = override(Config(), app=APP)


def test_defaults_come_from_config_and_sharing_is_off():
    options = app.launch_options(app.parse_args([]), CONFIG, {})
    assert (options["server_name"], options["server_port"], options["share"], options["auth"]) == (
        "127.0.0.1",
        7860,
        False,
        None,
    )
    assert options["max_file_size"] == "64mb"


def test_flags_override_config():
    args = app.parse_args(
        [
            "--share",
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            "--model",
            "m",
            "--load-in-4bit",
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ]
    )
    options = app.launch_options(args, CONFIG, {})
    assert (options["server_name"], options["server_port"], options["share"]) == ("0.0.0.0", 9000, True)
    assert (args.name, args.load_in_4bit, args.device, args.dtype) == ("m", True, "cpu", "float32")
    assert app.launch_options(app.parse_args([]), override(CONFIG, {"app.share": True}), {})["share"] is True


def test_space_binds_all_interfaces_and_password_comes_from_env():
    options = app.launch_options(
        app.parse_args(["--host", "127.0.0.1"]), CONFIG, {"SPACE_ID": "user/space", "MY_PASSWORD": "s3cret"}
    )
    assert options["server_name"] == "0.0.0.0"
    assert options["auth"] == ("steering", "s3cret")


@pytest.fixture
def no_model(monkeypatch):
    """main() must refuse before it loads a model: loading one here ends the run with a marker error."""
    from steering.errors import SteeringError

    loads = []

    def load(config, **overrides):
        loads.append(override(config, model=overrides).model)
        raise SteeringError("(test) the model would load now")

    monkeypatch.setattr(app.Engine, "from_config", load)
    return loads


def run_main(argv, capsys) -> tuple[int, str]:
    try:
        code = app.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err  # one line
    return code, err.strip()


def test_bad_port_or_device_is_one_line_and_exit_2_before_the_model_loads(no_model, capsys):
    """A port in use, --port 99999 and --device cuda without CUDA gave tracebacks (issue 10, item 10)."""
    import torch

    assert run_main(["--port", "99999"], capsys) == (
        2,
        "error: app.py: argument --port: expected a port from 1 to 65535, got 99999",
    )
    assert run_main(["--port", "http"], capsys)[0] == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run_main(["--host", "127.0.0.1", "--port", str(port)], capsys)
    assert code == 2 and err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "--port" in err
    if not torch.cuda.is_available():
        code, err = run_main(["--port", str(app_harness.free_port()), "--device", "cuda"], capsys)
        assert (code, err) == (
            2,
            "error: device 'cuda': CUDA is not available on this machine (use --device cpu or auto)",
        )
    assert not no_model


def test_threads_are_set_before_the_model_loads(no_model, capsys, monkeypatch):
    import torch

    set_to: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: set_to.append(n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # as on a 2-core machine without OMP_NUM_THREADS
    port = str(app_harness.free_port())
    assert run_main(["--port", port, "--threads", "0"], capsys)[0] == 2 and not no_model
    code, err = run_main(["--port", port, "--threads", "1"], capsys)
    assert (code, err) == (2, "error: (test) the model would load now")
    assert set_to == [1] and no_model[0].threads == 1  # set before the model loads, and passed on


def test_a_folder_without_a_model_is_one_line_and_exit_2(tmp_path, capsys):
    """`app.py --model /tmp` (a folder with no model in it) ended in a transformers traceback."""
    port = str(app_harness.free_port())
    code, err = run_main(["--port", port, "--model", str(tmp_path)], capsys)
    assert code == 2 and err == (
        f"error: model folder '{tmp_path}' has no config.json: it does not hold a "
        "transformers model (pass the folder that has config.json and the weights, or a "
        "Hugging Face hub id)"
    )
    (tmp_path / "config.json").write_text("{not json")  # a folder transformers cannot read: still one line
    code, err = run_main(["--port", port, "--model", str(tmp_path)], capsys)
    assert code == 2 and err.startswith(f"error: cannot load model from folder '{tmp_path}': ")


def test_steering_chat_refuses_a_folder_without_a_model(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "steering", "chat", "--model", str(tmp_path), "--prompt", "hi"],
        capture_output=True,
        text=True,
        cwd=app_harness.ROOT,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "has no config.json" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


def test_only_a_port_in_use_suggests_another_port(no_model, capsys):
    """`--host 256.1.1.1` said "(another program may use the port; ...)": that hint is for EADDRINUSE only."""
    code, err = run_main(["--host", "256.1.1.1", "--port", str(app_harness.free_port())], capsys)
    assert code == 2 and err.startswith("error: cannot listen on 256.1.1.1:") and "another program" not in err
    code, err = run_main(["--host", "192.0.2.1", "--port", str(app_harness.free_port())], capsys)  # not ours
    assert code == 2 and "another program" not in err and "--host" in err, err
    assert not no_model


def test_building_the_app_leaves_no_empty_upload_folder(monkeypatch, tmp_path):
    """Each start left an empty /tmp/llama-steering-uploads-XXXX: the folder is made on the first upload;
    Gradio's cache cleanup (delete_cache) is on."""
    import tempfile

    from fixtures import make_tiny_engine
    from transformers import PreTrainedTokenizerFast

    from steering.config import load_config

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="[UNK]")
    config = load_config()
    demo = app.build_app(make_tiny_engine(tokenizer, config, layers=2), config)
    assert not list(tmp_path.glob("llama-steering-uploads-*"))
    # Gradio's own cache cleanup is on (issue 10, uploads): files older than an hour go, checked every 10 minutes
    assert demo.delete_cache == (600, 3600)


@pytest.mark.parametrize("argv", [["--help"], ["--port", "0"]])
def test_help_and_bad_flags_answer_before_torch_and_gradio_load(argv):
    """`python app.py --help` (or a bad flag) parses before importing the model and UI stack: torch,
    transformers and gradio are not imported by then (they took ~4 s before the flags were read)."""
    import subprocess
    import sys

    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['app.py', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_path('app.py', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules)\n"
        "print('exit', code, 'heavy', ','.join(heavy) or '-', file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=app_harness.ROOT, timeout=120
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"exit {0 if argv == ['--help'] else 2} heavy -", proc.stderr
    if argv == ["--help"]:
        assert proc.stdout.startswith("usage: app.py") and "--port" in proc.stdout


def test_app_still_exports_its_names():
    """The names app.py re-exports (imported on first use) are the real ones."""
    from steering.engine import Engine
    from steering.ui.build import build_app
    from steering.ui.chat import Outbox, conversations

    assert (app.Engine, app.build_app, app.Outbox, app.conversations) == (Engine, build_app, Outbox, conversations)
    with pytest.raises(AttributeError):
        app.no_such_name  # noqa: B018
