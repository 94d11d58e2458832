"""app.py's command line and launch options (no model, no server)."""

from __future__ import annotations

import app_harness  # noqa: F401  (puts the project root on sys.path)
import app

APP = {"host": "127.0.0.1", "port": 7860, "share": False, "password_env": "MY_PASSWORD", "max_upload_mb": 64}


def test_defaults_come_from_config_and_sharing_is_off():
    options = app.launch_options(app.parse_args([]), APP, {})
    assert (options["server_name"], options["server_port"], options["share"], options["auth"]) == \
        ("127.0.0.1", 7860, False, None)
    assert options["max_file_size"] == "64mb"


def test_flags_override_config():
    args = app.parse_args(["--share", "--host", "0.0.0.0", "--port", "9000", "--model", "m", "--load-in-4bit",
                           "--device", "cpu", "--dtype", "float32"])
    options = app.launch_options(args, APP, {})
    assert (options["server_name"], options["server_port"], options["share"]) == ("0.0.0.0", 9000, True)
    assert (args.name, args.load_in_4bit, args.device, args.dtype) == ("m", True, "cpu", "float32")
    assert app.launch_options(app.parse_args([]), {**APP, "share": True}, {})["share"] is True


def test_space_binds_all_interfaces_and_password_comes_from_env():
    options = app.launch_options(app.parse_args(["--host", "127.0.0.1"]), APP,
                                 {"SPACE_ID": "user/space", "MY_PASSWORD": "s3cret"})
    assert options["server_name"] == "0.0.0.0"
    assert options["auth"] == ("steering", "s3cret")
