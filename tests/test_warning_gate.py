"""pytest.ini turns transformers' deprecation warnings into errors (issue 11 item 8), also when a model is called
as `model(...)`: transformers' deprecated-keyword warning (stacklevel 2) is then reported at torch's
Module.__call__, which a filter on the module name "transformers" alone does not match."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent(
    """
    import torch
    from transformers import DynamicCache

    from fixtures import make_tiny_model


    def test_{name}():
        model = make_tiny_model(32)
        ids = torch.tensor([[1, 2, 3]])
        {call}(input_ids=ids, past_key_values=DynamicCache(config=model.config))
    """
)


def run_probe(tmp_path: Path, name: str, call: str) -> subprocess.CompletedProcess:
    probe = tmp_path / f"test_probe_{name}.py"
    probe.write_text(PROBE.format(name=name, call=call))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pytest.ini"),
            "--rootdir",
            str(ROOT),
            str(probe),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_deprecated_transformers_keyword_fails_the_run_when_the_model_is_called(tmp_path: Path) -> None:
    for name, call in (("called", "model"), ("forward", "model.forward")):
        result = run_probe(tmp_path, name, call)
        assert result.returncode == 1, (name, result.stdout[-2000:])
        assert "FutureWarning" in result.stdout and "past_key_values" in result.stdout, (name, result.stdout[-2000:])
