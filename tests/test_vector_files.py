"""Vector files: the project's safetensors, the paper's .pt layout, GGUF control vectors; validation."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from steering.errors import SteeringError
from steering.vector_files import (VectorSet, cosine_by_layer, load_vectors, save_caa_layout, save_gguf,
                                   save_safetensors)


@pytest.fixture
def vset():
    torch.manual_seed(0)
    return VectorSet({layer: torch.randn(16) for layer in range(1, 5)}, {"model": "tiny", "read_mode": "letter"})


def test_safetensors_round_trip_keeps_vectors_and_metadata(tmp_path, vset):
    path = save_safetensors(vset, tmp_path / "refusal" / "tiny.safetensors")
    loaded = load_vectors(path)
    assert loaded.layers == vset.layers
    assert all(torch.equal(loaded.vectors[k], vset.vectors[k]) for k in vset.layers)
    assert loaded.metadata["model"] == "tiny" and loaded.metadata["read_mode"] == "letter"
    assert "created" in loaded.metadata
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"]  # no temporary left behind


def test_caa_layout_round_trip(tmp_path, vset):
    files = save_caa_layout(vset, tmp_path, "tiny-model")
    assert files[0].name == "vec_layer_1_tiny-model.pt"
    assert torch.load(files[0], weights_only=True).shape == (16,)
    loaded = load_vectors(tmp_path, "tiny-model")
    assert loaded.layers == vset.layers
    single = load_vectors(files[2])
    assert single.layers == [3] and torch.equal(single.vectors[3], vset.vectors[3])


def test_gguf_control_vector_round_trip(tmp_path, vset):
    import gguf

    path = save_gguf(vset, tmp_path / "refusal.gguf", model_hint="llama")
    reader = gguf.GGUFReader(str(path))
    assert sorted(t.name for t in reader.tensors) == [f"direction.{k}" for k in range(1, 5)]
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "controlvector"
    loaded = load_vectors(path)
    assert loaded.layers == vset.layers and loaded.metadata["model_hint"] == "llama"
    assert all(torch.allclose(loaded.vectors[k], vset.vectors[k]) for k in vset.layers)


def test_gguf_cannot_hold_layer_zero(tmp_path):
    with pytest.raises(SteeringError, match="layer 0"):
        save_gguf(VectorSet({0: torch.ones(4)}), tmp_path / "x.gguf")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/llama_steering_pwned",))


def test_pt_file_cannot_run_code(tmp_path):
    path = tmp_path / "vec_layer_3_evil.pt"
    with open(path, "wb") as handle:
        pickle.dump(_Exploit(), handle)
    if os.path.exists("/tmp/llama_steering_pwned"):
        os.unlink("/tmp/llama_steering_pwned")
    with pytest.raises(SteeringError, match="vec_layer_3_evil.pt: not a plain tensor file"):
        load_vectors(path)
    assert not os.path.exists("/tmp/llama_steering_pwned")


def test_validation_names_both_sizes(vset):
    with pytest.raises(SteeringError, match="vector size 16 does not match the model's hidden size 576"):
        vset.validate(hidden_size=576, num_layers=30)


def test_validation_rejects_nan_and_out_of_range_layers():
    with pytest.raises(SteeringError, match="layer 2: vector contains NaN"):
        VectorSet({2: torch.tensor([1.0, float("nan")])}).validate(2, 4)
    with pytest.raises(SteeringError, match="layer 7 is out of range: the model has layers 0..3"):
        VectorSet({7: torch.ones(2)}).validate(2, 4)


def test_unreadable_and_unknown_files(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(SteeringError, match="broken.safetensors: not a readable safetensors file"):
        load_vectors(bad)
    other = tmp_path / "vectors.npy"
    other.write_bytes(b"x")
    with pytest.raises(SteeringError, match="unknown vector format '.npy'"):
        load_vectors(other)
    with pytest.raises(SteeringError, match="file not found"):
        load_vectors(tmp_path / "missing.safetensors")


def test_cosine_by_layer(vset):
    negated = VectorSet({k: -v * 3 for k, v in vset.vectors.items()})
    assert all(abs(c + 1) < 1e-6 for c in cosine_by_layer(vset, negated).values())
    assert all(abs(c - 1) < 1e-6 for c in cosine_by_layer(vset, vset).values())
