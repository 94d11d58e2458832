"""Atomic file writing: permissions like a plain open(), no temporary left behind, old file kept on failure."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from steering.io.files import atomic_write, write_json, write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_new_file_gets_0666_minus_umask(tmp_path, umask_022):
    path = tmp_path / "new.json"
    write_json(path, {"a": 1})
    assert _mode(path) == 0o644  # mkstemp's 0600 would hide it from an app running as another user
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "group.md", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "group.md") == 0o640


def test_replaced_file_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "shared.txt"
    path.write_text("old")
    os.chmod(path, 0o664)
    write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o664
    os.chmod(path, 0o600)  # a private file stays private
    write_text(path, "newer")
    assert _mode(path) == 0o600


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def fail(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_temporary_keeps_the_suffix_for_writers_that_choose_a_format_by_name(tmp_path):
    seen = []
    atomic_write(tmp_path / "fig.png", lambda tmp: (seen.append(tmp), open(tmp, "wb").close()))
    assert seen[0].endswith(".png") and os.path.basename(seen[0]).startswith(".fig.png.")


def test_vector_writers_use_the_same_modes(tmp_path, umask_022):
    from steering.io.caa_pt import save_caa_layout
    from steering.io.gguf_vectors import save_gguf
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet

    vset = VectorSet({1: torch.ones(4), 2: torch.ones(4)})
    written = [
        save_safetensors(vset, tmp_path / "v.safetensors"),
        save_gguf(vset, tmp_path / "v.gguf"),
        *save_caa_layout(vset, tmp_path, "m"),
    ]
    assert {_mode(p) for p in written} == {0o644}
    os.chmod(written[0], 0o664)
    save_safetensors(vset, written[0])
    assert _mode(written[0]) == 0o664


def test_figures_are_written_atomically_with_the_same_modes(tmp_path, umask_022):
    from matplotlib.figure import Figure

    from steering.evaluation import save_figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    path = tmp_path / "plots" / "curve.png"
    save_figure(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _mode(path) == 0o644
    os.chmod(path, 0o664)
    save_figure(fig, path)
    assert _mode(path) == 0o664 and [p.name for p in path.parent.iterdir()] == ["curve.png"]
