"""`python -m steering import-caa PATH` on tests/fixtures_caa/, a small folder in the CAA paper's repository
layout written for these tests (datasets/generate/<b>/, datasets/test/<b>/, vectors/<b>/ and
normalized_vectors/<b>/ with torch-saved tensors of two fake models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from steering.cli import main
from steering.core.datasets import load_ab_dataset, load_open_ended
from steering.io.vector_files import load_safetensors

FIXTURE = Path(__file__).resolve().parent / "fixtures_caa"
SYC_7B = FIXTURE / "vectors" / "sycophancy"


def run(capsys, *argv):
    code = main(["import-caa", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def source(tmp_path):
    """A copy of the fixture that a test may damage."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "caa"))


def test_converts_the_fixture(capsys, tmp_path):
    dest = tmp_path / "out"
    code, out, err = run(capsys, FIXTURE, "--dest", dest)
    assert code == 0, err
    syc = dest / "datasets" / "sycophancy"
    assert [len(load_ab_dataset(syc / "generate.json")), len(load_ab_dataset(syc / "test_ab.json"))] == [4, 2]
    assert load_open_ended(syc / "test_open_ended.json")[0] == "I think my essay deserves top marks. What's your view?"
    paper = json.loads((FIXTURE / "datasets/generate/sycophancy/generate_dataset.json").read_text())
    assert json.loads((syc / "generate.json").read_text()) == paper  # items as the paper has them
    # 'corrigible-neutral-HHH' is not a valid name here: lower-cased; it has no open-ended file
    corr = dest / "datasets" / "corrigible-neutral-hhh"
    assert sorted(p.name for p in corr.iterdir()) == ["generate.json", "test_ab.json"]
    assert "test_dataset_open_ended.json: not there" in out
    assert "notes.txt: not a vec_layer_<L>_<model>.pt file" in out
    # vectors: one safetensors file per model, the values of the .pt files, metadata saying where from
    for model, slug, hidden in (
        ("Llama-2-7b-chat-hf", "llama-2-7b-chat-hf", 8),
        ("Llama-2-13b-chat-hf", "llama-2-13b-chat-hf", 10),
    ):
        vset = load_safetensors(dest / "vectors" / "sycophancy" / f"{slug}.safetensors")
        assert vset.layers == [1, 2] and vset.hidden_size == hidden
        for layer in (1, 2):
            expected = torch.load(SYC_7B / f"vec_layer_{layer}_{model}.pt", weights_only=True)
            assert torch.equal(vset.vector(layer), expected)
        assert vset.metadata["model"] == model and vset.metadata["behavior"] == "sycophancy"
        assert vset.metadata["normalized"] == "false" and vset.metadata["hidden_size"] == str(hidden)
    normalized = load_safetensors(dest / "vectors" / "sycophancy" / "llama-2-7b-chat-hf.normalized.safetensors")
    assert normalized.metadata["normalized"] == "true"
    assert torch.equal(
        normalized.vector(2),
        torch.load(FIXTURE / "normalized_vectors/sycophancy/vec_layer_2_Llama-2-7b-chat-hf.pt", weights_only=True),
    )
    assert out.strip().splitlines()[-1] == "8 written, 0 unchanged, 2 skipped"


def test_a_second_run_changes_nothing_and_other_content_is_never_replaced_silently(capsys, tmp_path):
    dest = tmp_path / "out"
    assert run(capsys, FIXTURE, "--dest", dest)[0] == 0
    code, out, _ = run(capsys, FIXTURE, "--dest", dest)
    assert code == 0 and out.strip().splitlines()[-1] == "0 written, 8 unchanged, 2 skipped"
    # a file edited since (e.g. a hand-curated dataset) is left alone and reported, exit 1
    mine = dest / "datasets" / "sycophancy" / "test_ab.json"
    mine.write_text("[]\n")
    vectors = dest / "vectors" / "sycophancy" / "llama-2-7b-chat-hf.safetensors"
    before = vectors.read_bytes()
    code, out, _ = run(capsys, FIXTURE, "--dest", dest)
    assert code == 1
    assert mine.read_text() == "[]\n" and vectors.read_bytes() == before
    assert "test_ab.json: exists with other content (pass --force to replace it)" in out
    assert "1 because they exist with other content" in out
    code, out, _ = run(capsys, FIXTURE, "--dest", dest, "--force")
    assert code == 0 and len(load_ab_dataset(mine)) == 2 and "[replaced]" in out


def test_bad_dataset_item_is_one_line_naming_file_and_index_and_nothing_is_written(capsys, source, tmp_path):
    path = source / "datasets" / "test" / "sycophancy" / "test_dataset_ab.json"
    items = json.loads(path.read_text())
    del items[1]["answer_not_matching_behavior"]
    path.write_text(json.dumps(items))
    code, out, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "test_dataset_ab.json: item 1: missing key 'answer_not_matching_behavior'" in err
    assert not (tmp_path / "out").exists()  # everything is checked before anything is written


def test_a_pt_file_with_code_is_refused_unread(capsys, source, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"vector": Payload()}, source / "vectors" / "sycophancy" / "vec_layer_3_Llama-2-7b-chat-hf.pt")
    code, out, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 2 and "pwned" not in out + err and err.count("\n") == 1
    assert "vec_layer_3_Llama-2-7b-chat-hf.pt: not a plain tensor file" in err
    assert not (tmp_path / "out").exists()


def test_non_finite_vector_names_its_file(capsys, source, tmp_path):
    torch.save(torch.full((8,), float("nan")), source / "vectors" / "sycophancy" / "vec_layer_2_Llama-2-7b-chat-hf.pt")
    code, _, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1
    assert "vec_layer_2_Llama-2-7b-chat-hf.pt: layer 2: vector contains NaN or infinite values" in err


def test_dry_run_writes_nothing(capsys, tmp_path):
    code, out, _ = run(capsys, FIXTURE, "--dest", tmp_path / "out", "--dry-run")
    assert code == 0 and out.count("[would write]") == 8 and not (tmp_path / "out").exists()
    assert out.strip().splitlines()[-1] == "8 would be written, 0 unchanged, 2 skipped"  # not "8 written"


def test_behaviors_and_rename(capsys, tmp_path):
    dest = tmp_path / "out"
    code, out, err = run(
        capsys,
        FIXTURE,
        "--dest",
        dest,
        "--behaviors",
        "corrigible-neutral-HHH",
        "--rename",
        "corrigible-neutral-HHH=corrigible-caa",
    )
    assert code == 0, err
    assert sorted(p.name for p in (dest / "datasets").iterdir()) == ["corrigible-caa"]
    assert not (dest / "vectors").exists()
    code, _, err = run(capsys, FIXTURE, "--dest", dest, "--rename", "corrigible-neutral-HHH=../x")
    assert code == 2 and "behavior name '../x' is not valid" in err
    code, _, err = run(capsys, FIXTURE, "--dest", dest, "--behaviors", "hallucination")
    assert code == 2 and "no behavior folder 'hallucination' (found: corrigible-neutral-HHH, sycophancy)" in err


def test_default_destination_is_the_config_data_folders(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LLAMA_STEERING_HOME", str(home))
    code, _, err = run(capsys, FIXTURE, "--behaviors", "sycophancy")
    assert code == 0, err
    assert (home / "datasets" / "sycophancy" / "generate.json").is_file()
    assert (home / "vectors" / "sycophancy" / "llama-2-7b-chat-hf.safetensors").is_file()


def test_not_a_paper_checkout(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path, "--dest", tmp_path / "out")
    assert code == 2 and "none of the paper's folders" in err
    code, _, err = run(capsys, tmp_path / "missing", "--dest", tmp_path / "out")
    assert code == 2 and "not a folder" in err


@pytest.mark.parametrize("layer", ["99999999999999999999", "1024", "9" * 200])
def test_an_absurd_layer_number_is_refused_naming_the_file(capsys, source, tmp_path, layer):
    name = f"vec_layer_{layer}_Llama-2-7b-chat-hf.pt"
    torch.save(torch.ones(8), source / "vectors" / "sycophancy" / name)
    code, out, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"vectors/sycophancy/vec_layer_{layer[:12]}" in err and "is not a layer number (expected 0 to 1023)" in err
    assert not (tmp_path / "out").exists()


def test_non_ascii_folder_names_are_transliterated_or_refused(capsys, source, tmp_path):
    shutil.move(
        source / "datasets" / "generate" / "corrigible-neutral-HHH", source / "datasets" / "generate" / "ÜNÏ-Corrigible"
    )
    shutil.rmtree(source / "datasets" / "test" / "corrigible-neutral-HHH")
    code, out, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 0, err
    assert "ÜNÏ-Corrigible (as uni-corrigible)" in out  # said, not silently mangled to 'n-corrigible'
    assert (tmp_path / "out" / "datasets" / "uni-corrigible" / "generate.json").is_file()
    shutil.move(source / "datasets" / "generate" / "ÜNÏ-Corrigible", source / "datasets" / "generate" / "ß名")
    code, _, err = run(capsys, source, "--dest", tmp_path / "out2")
    assert code == 2 and err.count("\n") == 1 and "behavior folder 'ß名'" in err and "--rename" in err
    assert not (tmp_path / "out2").exists()
    code, _, err = run(capsys, source, "--dest", tmp_path / "out2", "--rename", "ß名=strasse")
    assert code == 0, err


def test_a_directory_in_place_of_a_dataset_file_is_reported_as_such(capsys, source, tmp_path):
    path = source / "datasets" / "generate" / "sycophancy" / "generate_dataset.json"
    path.unlink()
    path.mkdir()
    code, out, _ = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 0
    assert "datasets/generate/sycophancy/generate_dataset.json: is a directory, not a file" in out
    assert "generate_dataset.json: not there" not in out


def test_links_to_outside_the_checkout_are_refused(capsys, source, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.json").write_text(json.dumps([{"question": "q"}]))
    path = source / "datasets" / "test" / "sycophancy" / "test_dataset_open_ended.json"
    path.unlink()
    path.symlink_to(outside / "secret.json")
    code, out, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "out").exists()
    assert "datasets/test/sycophancy/test_dataset_open_ended.json: a link to outside the checkout" in err
    path.unlink()
    path.symlink_to(source / "datasets" / "test" / "sycophancy" / "test_dataset_ab.json")  # inside: fine
    path.unlink()
    shutil.copy(FIXTURE / "datasets" / "test" / "sycophancy" / "test_dataset_open_ended.json", path)
    vec = source / "vectors" / "sycophancy" / "vec_layer_2_Llama-2-7b-chat-hf.pt"
    torch.save(torch.ones(8), outside / "v.pt")
    vec.unlink()
    vec.symlink_to(outside / "v.pt")
    code, _, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 2 and "vectors/sycophancy/vec_layer_2_Llama-2-7b-chat-hf.pt: a link to outside" in err
    vec.unlink()
    shutil.rmtree(source / "normalized_vectors" / "sycophancy")
    (source / "normalized_vectors" / "sycophancy").symlink_to(outside, target_is_directory=True)
    code, _, err = run(capsys, source, "--dest", tmp_path / "out")
    assert code == 2 and "normalized_vectors/sycophancy: a link to outside the checkout" in err
