"""The public API: steering.__all__ resolves, `import steering` stays light, and the README's Python example runs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

import steering
from steering.config import PROJECT_ROOT


def readme_python_block() -> str:
    """The python code block of the README's "## Python API" section."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Python API\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README has no '## Python API' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), flags=re.S | re.M)
    assert len(blocks) == 1, f"expected one python block in the Python API section, found {len(blocks)}"
    return blocks[0]


def test_every_public_name_resolves_with_a_docstring():
    assert len(set(steering.__all__)) == len(steering.__all__)
    for name in steering.__all__:
        value = getattr(steering, name)
        doc = (value.__doc__ or "").strip()
        assert doc and not doc.startswith(f"{name}("), f"steering.{name} has no docstring of its own"
    assert set(steering.__all__) <= set(dir(steering))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        steering.no_such_name  # noqa: B018


def test_public_names_are_the_defining_modules_objects():
    from steering.core.hooks import steering as steering_context
    from steering.decode.generation import generate
    from steering.engine import Engine

    assert steering.Engine is Engine and steering.generate is generate and steering.steering is steering_context
    from steering import cli  # a submodule is still importable through the package

    assert callable(cli.main)


def test_import_steering_does_not_import_torch():
    code = "import sys, steering; print('torch' in sys.modules, steering.__version__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", steering.__version__]


@pytest.mark.integration
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example must not depend on the working folder
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_python_block(), "README.md (Python API)", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert [line[:2] for line in printed] == ["+2", " 0", "-2"]
    result, vector = namespace["result"], namespace["vector"]
    assert len(result.texts) == 3 and all(1 <= n <= 12 for n in result.new_tokens)
    assert vector.shape == (namespace["lm"].hidden_size,)
    assert namespace["steered_logits"].shape[:2] == namespace["ids"].shape
    assert all(isinstance(namespace[k], str) for k in ("added", "unsteered", "subtracted"))
    # the hook changed the forward pass and is gone after the block
    lm = namespace["lm"]
    plain = lm.model(namespace["ids"]).logits
    assert not (plain - namespace["steered_logits"]).abs().max() < 1e-4
    from steering.core.layers import decoder_layers

    assert all(not block._forward_hooks for block in decoder_layers(lm.model))


@pytest.mark.integration
def test_package_docstring_example_runs_from_another_folder(tmp_path, monkeypatch):
    block = re.search(r"::\n\n(.*?)\n\n(?=\S)", steering.__doc__ or "", flags=re.S)
    assert block, "steering's docstring has no example block"
    monkeypatch.chdir(tmp_path)  # data paths come from the config, not the working folder
    namespace: dict = {}
    exec(compile(textwrap.dedent(block.group(1)), "steering.__doc__", "exec"), namespace)
    assert len(namespace["result"].texts) == 2
