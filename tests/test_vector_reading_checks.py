"""Every reader of a vector file applies the same finite / norm checks; cosines are never silently wrong
(issue 10 review, item 1: compare-vectors printed +0.0000 for vectors scaled by 1e18 through float32 overflow)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from safetensors.torch import save_file

from steering.errors import SteeringError
from steering.io.caa_pt import save_caa_layout
from steering.io.gguf_vectors import load_gguf
from steering.io.vector_files import load_safetensors, save_safetensors
from steering.io.vector_set import VectorSet, cosine_by_layer
from steering.io.vector_store import load_vectors

META = {"model": "tiny", "read_mode": "letter"}


def _run(*args: str) -> tuple[int, str, str]:
    from steering.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def _vectors() -> dict[int, torch.Tensor]:
    torch.manual_seed(0)
    return {layer: torch.randn(64) for layer in range(1, 6)}


def _scaled_file(path, factor: float):
    save_file({f"layer.{k}": (v * factor).contiguous() for k, v in _vectors().items()}, str(path), metadata=META)
    return path


@pytest.mark.parametrize("factor", [1e18, 1e30])
def test_compare_vectors_refuses_absurdly_scaled_files(tmp_path, factor):
    good = _scaled_file(tmp_path / "good.safetensors", 1.0)
    bad = _scaled_file(tmp_path / "bad.safetensors", factor)
    rc, out, err = _run("compare-vectors", str(good), str(bad))
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and "mean" not in out, (rc, out, err)
    assert len(lines) == 1 and "is too large" in lines[0] and "bad.safetensors" in lines[0], err


@pytest.mark.parametrize("factor", [1e18, 1e30])
def test_every_reader_refuses_absurd_norms(tmp_path, factor):
    big = VectorSet({k: v * factor for k, v in _vectors().items()}, dict(META))
    path = _scaled_file(tmp_path / "bad.safetensors", factor)
    with pytest.raises(SteeringError, match="is too large"):
        load_safetensors(path)
    # the paper's .pt layout and GGUF: written by hand (the project's writers refuse such sets)
    folder = tmp_path / "caa"
    folder.mkdir()
    for layer, vec in big.vectors.items():
        torch.save(vec, folder / f"vec_layer_{layer}_tiny.pt")
    with pytest.raises(SteeringError, match="is too large"):
        load_vectors(folder, "tiny")
    with pytest.raises(SteeringError, match="is too large"):
        load_vectors(folder / "vec_layer_2_tiny.pt")
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "bad.gguf"), "controlvector")
    for layer, vec in big.vectors.items():
        writer.add_tensor(f"direction.{layer}", vec.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(SteeringError, match="is too large"):
        load_gguf(tmp_path / "bad.gguf")


def test_non_finite_files_are_refused_by_compare_vectors(tmp_path):
    good = _scaled_file(tmp_path / "good.safetensors", 1.0)
    vectors = _vectors()
    vectors[3][5] = float("nan")
    save_file({f"layer.{k}": v for k, v in vectors.items()}, str(tmp_path / "nan.safetensors"), metadata=META)
    rc, out, err = _run("compare-vectors", str(good), str(tmp_path / "nan.safetensors"))
    assert rc == 2 and "NaN or infinite" in err and "mean" not in out, (rc, out, err)


def test_cosine_of_large_allowed_vectors_is_exact():
    # sets built in code are not checked: float32 norms of these would overflow (sqrt(float32 max) ~1.8e19)
    base = _vectors()
    a = VectorSet({k: v / v.norm() * 1e20 for k, v in base.items()})
    b = VectorSet({k: v / v.norm() * 1e16 for k, v in base.items()})
    cosines = cosine_by_layer(a, b)
    assert cosines and all(value == pytest.approx(1.0, abs=1e-6) for value in cosines.values()), cosines
    neg = VectorSet({k: -v for k, v in b.vectors.items()})
    assert all(value == pytest.approx(-1.0, abs=1e-6) for value in cosine_by_layer(a, neg).values())


def test_compare_vectors_still_reports_true_cosines(tmp_path):
    good = save_safetensors(VectorSet(_vectors(), dict(META)), tmp_path / "a.safetensors")
    scaled = save_caa_layout(VectorSet({k: v * 1e6 for k, v in _vectors().items()}), tmp_path / "caa", "tiny")
    rc, out, err = _run("compare-vectors", str(good), str(scaled[0].parent))
    assert rc == 0, err
    assert "mean       +1.0000" in out, out
