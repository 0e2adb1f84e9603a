"""The model plumbing every stage shares: one padding id, chosen the same way everywhere."""

from __future__ import annotations

from types import SimpleNamespace

from rlhf_lens.model_parts import pad_token_id


def test_pad_token_id_prefers_pad_then_eos_then_zero():
    assert pad_token_id(SimpleNamespace(pad_token_id=7, eos_token_id=2)) == 7
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=2)) == 2
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0
    # Id 0 is a real pad id, not "missing".
    assert pad_token_id(SimpleNamespace(pad_token_id=0, eos_token_id=2)) == 0


def test_prepared_tiny_model_pads_with_its_pad_token(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.pad_token_id is not None
    assert pad_token_id(tok) == tok.pad_token_id
