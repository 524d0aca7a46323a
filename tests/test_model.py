"""Models are plain Hugging Face directories: they load in transformers, and ponder names bad files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ponder import model as models
from ponder.engine import Engine, SamplingParams
from ponder.errors import PonderError
from ponder.format import render_prompt


@pytest.fixture
def broken_dir(model_dir, tmp_path):
    """A private copy of the saved fresh model, free to damage."""
    return shutil.copytree(model_dir, tmp_path / "copy")


def test_saved_dir_loads_in_transformers_and_generates_like_the_engine(model_dir):
    hf_model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = render_prompt("What is 12+30?")
    ids = hf_tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = hf_model.generate(**ids, do_sample=False, max_new_tokens=16, pad_token_id=hf_tok.pad_token_id)
    hf_continuation = out[0, ids["input_ids"].shape[1] :].tolist()
    if hf_tok.eos_token_id in hf_continuation:
        hf_continuation = hf_continuation[: hf_continuation.index(hf_tok.eos_token_id) + 1]

    ponder_model, ponder_tok = models.load(model_dir)
    rollout = Engine(ponder_model, ponder_tok).generate([prompt], SamplingParams(temperature=0, max_tokens=16))
    assert rollout[0][0].token_ids == hf_continuation


def test_load_round_trips_the_weights(model, model_dir):
    loaded, tok = models.load(model_dir)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert tok.eos_token == "<|end|>" and tok.pad_token == "<|pad|>"


def test_load_missing_dir_names_it(tmp_path):
    with pytest.raises(PonderError, match="nosuch"):
        models.load(tmp_path / "nosuch")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_load_missing_file_names_it(broken_dir, name):
    (broken_dir / name).unlink()
    with pytest.raises(PonderError, match=name):
        models.load(broken_dir)


@pytest.mark.parametrize(
    ("name", "cut_json"),
    [("config.json", '{"model_type": "llama", '), ("tokenizer.json", '{"version": "1.0", "model": ')],
)
def test_load_corrupt_json_names_the_file(broken_dir, name, cut_json):
    (broken_dir / name).write_text(cut_json)
    with pytest.raises(PonderError, match=f"{name}.*corrupt"):
        models.load(broken_dir)


def test_load_truncated_weights_names_model_safetensors(broken_dir):
    weights = broken_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(PonderError, match="model.safetensors"):
        models.load(broken_dir)


def test_load_error_is_a_value_error_for_callers_that_catch_those(tmp_path):
    with pytest.raises(ValueError):
        models.load(tmp_path / "nosuch")


class FakeTokenizer:
    """What `new_model` reads from a tokenizer, for the 512-token vocabulary the presets assume."""

    bos_token_id, eos_token_id, pad_token_id = None, 2, 5

    def __len__(self):
        return 512


@pytest.mark.parametrize("preset, expected", [("1m", 1e6), ("5m", 5e6), ("25m", 25e6)])
def test_preset_parameter_counts(preset, expected):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        m = models.new_model(preset, FakeTokenizer())
    assert 0.7 * expected <= models.count_parameters(m) <= 1.3 * expected


def test_unknown_preset_lists_the_allowed_ones(tok):
    with pytest.raises(PonderError, match=r"one of \['1m', '25m', '500m', '5m'\], got '7b'"):
        models.new_model("7b", tok)


def test_save_that_fails_midway_leaves_no_model_and_no_temp_dir(model, tok, tmp_path, monkeypatch):
    def crash(path, **kwargs):
        (path / "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        models.save(model, tok, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_save_that_fails_midway_leaves_the_previous_model_untouched(model, tok, tmp_path, monkeypatch):
    target = models.save(model, tok, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def crash(path, **kwargs):
        (path / "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save_pretrained", crash)
    with pytest.raises(OSError):
        models.save(model, tok, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"
