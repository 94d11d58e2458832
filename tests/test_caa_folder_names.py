"""The paper's folders (vec_layer_<L>_<model>.pt, several models side by side): model names written with the
hub id's "/" as "_" or "--" match the loaded model, different models never do, and the several-models
message gives advice that can be followed (issue 10 review, item 2)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from steering.errors import SteeringError
from steering.io.caa_pt import model_name_matches
from steering.io.vector_store import load_vectors

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _folder(tmp_path, names: dict[str, float]):
    folder = tmp_path / "vectors"
    folder.mkdir()
    for model, value in names.items():
        for layer in (8, 9):
            torch.save(torch.full((16,), value + layer), folder / f"vec_layer_{layer}_{model}.pt")
    return folder


@pytest.mark.parametrize("loaded", [SMOL, "SmolLM2-135M-Instruct", "smollm2-135m-instruct"])
@pytest.mark.parametrize("written", ["HuggingFaceTB_SmolLM2-135M-Instruct", "HuggingFaceTB--SmolLM2-135M-Instruct"])
def test_org_prefixed_names_match_the_loaded_model(tmp_path, loaded, written):
    folder = _folder(tmp_path, {written: 1.0, "Llama-2-7b-chat-hf": 100.0, "Mistral-7B": 200.0})
    vset = load_vectors(folder, loaded)
    assert vset.layers == [8, 9] and float(vset.vectors[9][0]) == 10.0
    assert vset.metadata["model"] == written


def test_hub_cache_style_name_matches():
    assert model_name_matches("models--HuggingFaceTB--SmolLM2-135M-Instruct", SMOL)


@pytest.mark.parametrize(
    ("found", "loaded"),
    [
        ("HuggingFaceTB_SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M"),  # another model, same org
        ("HuggingFaceTB_SmolLM2-135M", "SmolLM2-135M-Instruct"),
        ("OtherOrg_SmolLM2-135M-Instruct", SMOL),  # same basename, another organisation's model
        ("meta-llama_Llama-2-7b-chat-hf", "mistralai/Mistral-7B-Instruct-v0.2"),
        ("SmolLM2-135M-Instruct_extra", "SmolLM2-135M-Instruct"),
    ],
)
def test_different_models_never_match(found, loaded):
    assert not model_name_matches(found, loaded)


def test_two_organisations_for_one_bare_name_are_refused(tmp_path):
    folder = _folder(tmp_path, {"OrgA_SmolLM2-135M-Instruct": 1.0, "OrgB_SmolLM2-135M-Instruct": 2.0})
    with pytest.raises(SteeringError, match=r"files for 2 models \(OrgA_.*OrgB_.*\) all match"):
        load_vectors(folder, "smollm2-135m-instruct")


def test_several_models_without_a_model_give_followable_advice(tmp_path):
    folder = _folder(tmp_path, {"HuggingFaceTB_SmolLM2-135M-Instruct": 1.0, "Llama-2-7b-chat-hf": 100.0})
    with pytest.raises(SteeringError) as info:
        load_vectors(folder)
    message = str(info.value)
    assert "single file" not in message and "--model NAME" in message and "folder of their own" in message
    from steering.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["compare-vectors", str(folder), str(folder), "--model", SMOL, "--json"])
    assert rc == 0, err.getvalue()
    assert '"9": 1.0' in out.getvalue() and '"8": 1.0' in out.getvalue()
