"""Loading and running a Hugging Face sequence classifier, shared by the reward types that read one
(``classifier``: a hub or local sentiment model; ``reward_model``: a trained plain RM or any local classifier).

``load_sequence_classifier`` -> (tokenizer, model in eval mode) with a pad token set (a decoder's EOS when
it has none, so batches can be padded); ``label_logits`` -> (N,) float32 logits of one output, batched,
without gradients. Padding and truncation sides stay the caller's choice (set on the tokenizer).
"""

from __future__ import annotations

from typing import Sequence

from .base import RewardError


def load_sequence_classifier(spec: str, *, key: str, device: str = "cpu", trust_remote_code: bool = False):
    """(tokenizer, model) of the sequence classifier ``spec`` (hub id or folder), the model on ``device``.

    RewardError naming the config ``key`` and value if it cannot be loaded.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            spec, use_safetensors=True, trust_remote_code=trust_remote_code).to(device).eval()
    except (OSError, ValueError) as exc:
        raise RewardError(f"key {key!r} has value {str(spec)!r}: cannot load a sequence-classification model from "
                          f"it ({exc})") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def label_logits(tokenizer, model, texts: Sequence[str], label_index: int, *, batch_size: int, max_length: int,
                 device: str):
    """Logit ``label_index`` of each text, (N,) float32 on the CPU; texts longer than ``max_length`` tokens are
    truncated on the tokenizer's truncation side."""
    import torch

    texts = list(texts)
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length, add_special_tokens=True).to(device)
            out.append(model(**enc).logits[:, label_index].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
