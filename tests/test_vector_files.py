"""Vector files: the project's safetensors, the paper's .pt layout, GGUF control vectors; validation."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from steering.errors import SteeringError
from steering.io.caa_pt import save_caa_layout
from steering.io.gguf_vectors import save_gguf
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet, cosine_by_layer
from steering.io.vector_store import load_vectors


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


# ---------------------------------------------------------------- issue 10 (vector files)


def _tiny_engine(tmp_path, name="org/Tiny-Model"):
    """An Engine around the tiny random Llama (hidden 64, 4 layers), vectors under tmp_path/vectors."""
    from fixtures import make_tiny_engine, make_tiny_tokenizer

    from steering.config import ModelSettings, load_config, override

    config = load_config()
    config = override(config, vectors_dir=str(tmp_path / "vectors"))
    settings = ModelSettings(name=name, compile=False, cuda_graphs=False)
    return make_tiny_engine(make_tiny_tokenizer(), config, settings, name=name)


def _pt(folder, name, value):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(value, folder / name)
    return folder / name


def test_paper_folder_matches_model_names_normalized(tmp_path):
    """Item 5: vec_layer_<L>_<hub id basename>.pt, as the paper's code writes them, whatever the case."""
    folder = tmp_path / "refusal"
    vectors = {9: torch.randn(16), 10: torch.randn(16)}
    for layer, vec in vectors.items():
        _pt(folder, f"vec_layer_{layer}_SmolLM2-135M-Instruct.pt", vec)
    for model in ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2_135m_instruct"):
        loaded = load_vectors(folder, model)
        assert loaded.layers == [9, 10] and torch.equal(loaded.vectors[9], vectors[9])
    assert load_vectors(folder).layers == [9, 10]  # one model's files: no model name needed


def test_paper_folder_with_several_models_picks_the_loaded_one_or_refuses(tmp_path):
    """Item 5: a folder with two models' files never loads whichever sorts last."""
    folder = tmp_path / "sycophancy"
    mine, other = torch.randn(16), torch.randn(16)
    _pt(folder, "vec_layer_13_Llama-2-7b-chat-hf.pt", mine)
    _pt(folder, "vec_layer_13_Llama-2-13b-chat-hf.pt", other)
    loaded = load_vectors(folder, "meta-llama/Llama-2-7b-chat-hf")
    assert torch.equal(loaded.vectors[13], mine) and loaded.metadata["model"] == "Llama-2-7b-chat-hf"
    assert torch.equal(load_vectors(folder, "llama-2-13b-chat-hf").vectors[13], other)
    with pytest.raises(
        SteeringError,
        match=r"holds vector files for 2 models \(Llama-2-13b-chat-hf, "
        r"Llama-2-7b-chat-hf\); none matches the loaded model mistral-7b",
    ):
        load_vectors(folder, "mistral-7b")
    with pytest.raises(SteeringError, match="holds vector files for 2 models"):
        load_vectors(folder)


def test_paper_folder_with_two_files_for_one_layer_is_refused(tmp_path):
    folder = tmp_path / "x"
    _pt(folder, "vec_layer_3_Tiny.pt", torch.ones(4))
    _pt(folder, "vec_layer_3_tiny.pt", torch.zeros(4))
    with pytest.raises(SteeringError, match="two files for layer 3 of model"):
        load_vectors(folder, "tiny")


def test_engine_loads_its_own_files_from_a_paper_folder(tmp_path):
    engine = _tiny_engine(tmp_path, name="org/Tiny-Model")
    folder = tmp_path / "paper"
    mine = torch.randn(64) * 0.01
    _pt(folder, "vec_layer_2_Tiny-Model.pt", mine)
    _pt(folder, "vec_layer_2_Other-Model.pt", torch.randn(64) * 0.01)
    assert torch.equal(engine.load_vector_file(folder).vector(2), mine)


def test_paper_layout_is_written_with_the_hub_id_basename(tmp_path, vset):
    files = save_caa_layout(vset, tmp_path, "meta-llama/Llama-2-7b-chat-hf")
    assert files[0].name == "vec_layer_1_Llama-2-7b-chat-hf.pt"  # the name the paper's code loads
    assert load_vectors(tmp_path, "llama-2-7b-chat-hf").layers == vset.layers


def test_gguf_skips_layer_zero_and_refuses_when_nothing_is_left(tmp_path):
    """Item 8: one check (gguf_layers) for every GGUF writer; no file the loader would reject."""
    path = save_gguf(VectorSet({0: torch.ones(4), 1: torch.ones(4), 2: torch.ones(4)}), tmp_path / "a.gguf")
    assert load_vectors(path).layers == [1, 2]
    with pytest.raises(SteeringError, match="cannot hold layer 0 and no other layer was chosen"):
        save_gguf(VectorSet({0: torch.ones(4)}), tmp_path / "zero.gguf")
    with pytest.raises(SteeringError, match="contains no vectors"):
        save_gguf(VectorSet({}), tmp_path / "none.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf"]  # nothing written for the refused ones
    from steering.io.gguf_vectors import gguf_layers

    assert gguf_layers([0, 1, 2]) == ([1, 2], "layer 0 skipped: llama.cpp control vectors have no layer 0")
    assert gguf_layers([3]) == ([3], "")


def test_writers_refuse_sets_the_loaders_would_reject(tmp_path):
    for bad, message in [
        (VectorSet({}), "contains no vectors"),
        (VectorSet({1: torch.tensor([1.0, float("inf")])}), "NaN or infinite"),
        (VectorSet({1: torch.ones(4), 2: torch.ones(5)}), "vectors of different sizes"),
    ]:
        for save in (
            lambda v: save_safetensors(v, tmp_path / "v.safetensors"),
            lambda v: save_gguf(v, tmp_path / "v.gguf"),
            lambda v: save_caa_layout(v, tmp_path, "m"),
        ):
            with pytest.raises(SteeringError, match=message):
                save(bad)
    assert list(tmp_path.iterdir()) == []


def _run_cli(*args):
    """`python -m steering ARGS` in this process (a subprocess costs seconds of imports): rc, stdout, stderr."""
    import contextlib
    import io
    from types import SimpleNamespace

    from steering.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        returncode = main(list(args))
    return SimpleNamespace(returncode=returncode, stdout=out.getvalue(), stderr=err.getvalue())


def _one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from fixtures import make_tiny_model, make_tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    tok = make_tiny_tokenizer()
    make_tiny_model(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _extract_gguf(out, model, *layers):
    """`extract --gguf --layers LAYERS` from 2 pairs into `out` with `model` (read mode letter), in a subprocess."""
    flags = ["--layers", *layers, "--gguf", "--max-pairs", "2", "--read-mode", "letter"]
    return _run_cli("extract", *flags, "--out", str(out), "--model", str(model))


def test_extract_gguf_with_only_layer_zero_is_refused_before_the_model_loads(tmp_path, tiny_model_dir):
    """Item 8, extract path: exit 2 and no 192-byte GGUF without vectors (was: exit 0)."""
    out = tmp_path / "v.safetensors"
    line = _one_line_error(_extract_gguf(out, tiny_model_dir, "0"))
    assert "cannot hold layer 0" in line
    assert not out.with_suffix(".gguf").exists() and not out.exists()
    # checked before the model loads: a model that cannot be loaded is never reached
    line = _one_line_error(_extract_gguf(out, tmp_path / "no-such-model", "0"))
    assert "cannot hold layer 0" in line


def test_extract_gguf_skips_layer_zero_and_says_so(tmp_path, tiny_model_dir):
    out = tmp_path / "v.safetensors"
    result = _extract_gguf(out, tiny_model_dir, "0", "1")
    assert result.returncode == 0, result.stderr
    assert "layer 0 skipped" in result.stdout
    assert load_vectors(out).layers == [0, 1] and load_vectors(out.with_suffix(".gguf")).layers == [1]


def test_export_gguf_uses_the_same_layer_check(tmp_path, vset):
    """Item 8, export-gguf path: same rule as extract --gguf (skip layer 0 and say so; refuse when none left)."""
    source = save_safetensors(VectorSet({0: torch.ones(16), **vset.vectors}), tmp_path / "v.safetensors")
    out = tmp_path / "out.gguf"
    line = _one_line_error(_run_cli("export-gguf", str(source), str(out), "--layers", "0"))
    assert "cannot hold layer 0" in line and not out.exists()
    result = _run_cli("export-gguf", str(source), str(out), "--layers", "0", "2")
    assert result.returncode == 0, result.stderr
    assert "layer 0 skipped" in result.stdout and load_vectors(out).layers == [2]
    result = _run_cli("export-gguf", str(source), str(out))
    assert result.returncode == 0 and "(4 layers; layer 0 skipped" in result.stdout
    assert load_vectors(out).layers == [1, 2, 3, 4]


@pytest.mark.parametrize("save", [pickle.dump, torch.save], ids=["pickle", "torch.save"])
def test_malicious_pickle_is_refused_without_advice_to_run_it(tmp_path, save):
    """A pickle that would create a file if run: refused, not run, and no 'weights_only=False' advice."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "vec_layer_3_evil.pt"
    if save is pickle.dump:
        with open(path, "wb") as handle:
            pickle.dump(Exploit(), handle)
    else:
        torch.save(Exploit(), path)
    with pytest.raises(SteeringError) as info:
        load_vectors(path)
    message = str(info.value)
    assert not marker.exists()
    assert "not a plain tensor file" in message and "refused" in message
    for advice in ("weights_only", "False", "succeed", "trusted source", "torch.load"):
        assert advice not in message, message
    assert "\n" not in message


def test_malicious_pickle_on_the_command_line_is_one_line(tmp_path, vset):
    marker = tmp_path / "pwned"
    path = tmp_path / "vec_layer_1_evil.pt"
    with open(path, "wb") as handle:
        pickle.dump(_Exploit(), handle)
    good = save_safetensors(vset, tmp_path / "good.safetensors")
    line = _one_line_error(_run_cli("compare-vectors", str(good), str(path)))
    assert "not a plain tensor file" in line and "weights_only" not in line and not marker.exists()


def test_damaged_pt_file_is_one_line(tmp_path):
    path = tmp_path / "vec_layer_1_x.pt"
    torch.save(torch.ones(4), path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(SteeringError, match="not a readable tensor file"):
        load_vectors(path)


def test_absurd_vector_norms_are_refused_without_a_model():
    """A finite vector scaled by 1e30 was 'Loaded' and steered to empty panes."""
    huge = VectorSet({1: torch.ones(16) * 1e30}, source="huge.safetensors")
    with pytest.raises(SteeringError, match=r"^huge.safetensors: layer 1: vector norm 4e\+30 is too large"):
        huge.validate(16, 4)
    VectorSet({1: torch.ones(16) * 1e3}).validate(16, 4)  # large but usable: accepted here


def test_engine_refuses_vectors_far_beyond_the_hidden_state_norm(tmp_path):
    engine = _tiny_engine(tmp_path)
    typical = {layer: engine.hidden_norm(layer) for layer in (1, 2)}
    direction = torch.randn(64)
    direction /= direction.norm()
    ok = save_safetensors(
        VectorSet({1: direction * typical[1] * 0.5, 2: direction * typical[2] * 2}), tmp_path / "ok.safetensors"
    )
    assert engine.load_vector_file(ok).layers == [1, 2]
    scaled = VectorSet({1: direction * typical[1] * 0.5, 2: direction * typical[2] * 300})
    bad = save_safetensors(scaled, tmp_path / "bad.safetensors")
    with pytest.raises(
        SteeringError,
        match=r"bad.safetensors: layer 2: vector norm .* is 300x the model's typical "
        r"hidden-state norm there .*; the limit is 100x",
    ):
        engine.load_vector_file(bad)
    path = tmp_path / "vectors" / "refusal" / "tiny-model.safetensors"
    save_safetensors(scaled, path)
    with pytest.raises(SteeringError, match="^the 'refusal' vector set: layer 2: vector norm") as info:
        engine.vectors_for("refusal")
    assert str(tmp_path) not in str(info.value) and str(path) in info.value.detail


@pytest.mark.parametrize("name", ["/etc", "../x", "", "a/b", "Refusal", "..", "x y"])
def test_behavior_names_are_not_paths(tmp_path, name):
    from steering.io.vector_store import vector_path

    with pytest.raises(SteeringError, match="behavior name .* is not valid"):
        vector_path(tmp_path, name, "tiny")
    engine = _tiny_engine(tmp_path)
    outside = tmp_path / "outside"
    save_safetensors(VectorSet({1: torch.ones(64) * 0.01}), outside / "tiny-model.safetensors")
    with pytest.raises(SteeringError, match="is not valid") as info:
        engine.vectors_for(str(outside) if name == "/etc" else name)
    assert "\n" not in str(info.value)


def test_missing_vectors_message_has_no_server_path_or_command(tmp_path):
    from steering.io.vector_store import available_behaviors

    engine = _tiny_engine(tmp_path)
    save_safetensors(VectorSet({1: torch.ones(64) * 0.01}), tmp_path / "vectors" / "refusal" / "tiny-model.safetensors")
    save_safetensors(
        VectorSet({1: torch.ones(64) * 0.01}), tmp_path / "vectors" / "Bad Name" / "tiny-model.safetensors"
    )
    assert available_behaviors(tmp_path / "vectors", "tiny-model") == ["refusal"]
    with pytest.raises(SteeringError) as info:
        engine.vectors_for("sycophancy")
    message = str(info.value)
    assert message == "no 'sycophancy' vectors for org/Tiny-Model; known behaviors: refusal"
    assert "python" not in message and str(tmp_path) not in message and "safetensors" not in message
    assert "sycophancy/tiny-model.safetensors is missing" in info.value.detail
    assert "python -m steering extract --behavior sycophancy" in info.value.detail


def test_describe_and_replacement_check(tmp_path):
    """Helper for extract --force: what a write would replace, refused when it would lose layers or pairs."""
    from steering.io.vector_store import describe_vector_file, replacement_check

    path = tmp_path / "refusal.safetensors"
    assert describe_vector_file(path) is None and replacement_check(path, [9], 4) is None
    save_safetensors(
        VectorSet(
            {layer: torch.ones(8) for layer in range(30)},
            {"pairs": "250", "read_mode": "letter", "created": "2026-01-01T00:00:00+00:00"},
        ),
        path,
    )
    info = describe_vector_file(path)
    assert info.layers == list(range(30)) and info.pairs == 250
    assert info.summary() == "30 layers (0..29), 250 pairs, read mode letter, made 2026-01-01T00:00:00+00:00"
    with pytest.raises(
        SteeringError,
        match=r"holds 30 layers \(0..29\), 250 pairs.*would have 1 layer from 4 pairs "
        r"and lose layers 0..8, 10..29 and 246 of its 250 pairs: pass --force",
    ):
        replacement_check(path, [9], 4)
    assert replacement_check(path, [9], 4, force=True).startswith(f"replaces {path}: 30 layers")
    assert replacement_check(path, range(30), 250).startswith("replaces")  # same or more: a plain note
    junk = tmp_path / "notes.safetensors"
    junk.write_text("my notes")
    with pytest.raises(SteeringError, match="exists but is not a readable safetensors file.*without --force"):
        replacement_check(junk, [1], 1)
