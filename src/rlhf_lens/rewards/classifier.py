"""A sequence-classification model as the reward: the raw logit of one named label.

Any Hugging Face ``AutoModelForSequenceClassification`` (hub id or folder; for online users the
paper's ``lvwerra/distilbert-imdb`` with label POSITIVE). The classifier reads the response alone
(the paper's later code), or prompt + response with ``scope: prompt_and_response``. It gives no
per-token attribution, so its per-token form is the sequence reward on the last token.

Config: ``type: classifier`` with the keys of ``ClassifierConfig``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

from .base import Reward, RewardConfig, RewardError
from .hf_classifier import label_logits, load_sequence_classifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig(RewardConfig):
    """``rewards.<name>`` of type classifier."""

    model: str = field(metadata={"hint": "hub id or folder"})
    """Hub id or local folder of a sequence-classification model."""
    label: str = field(metadata={"hint": "e.g. POSITIVE"})
    """Name of the label whose logit is the reward."""
    scope: str = "response"
    """Score the response alone (response) or the prompt and response together (prompt_and_response)."""


class ClassifierReward(Reward):
    """reward = logit of ``label`` from a sequence classifier; (B,) float32."""

    per_token = False

    def __init__(self, model_spec: str, label: str, *, name: str = "classifier", device: str = "cpu",
                 batch_size: int = 32, trust_remote_code: bool = False, scope: str = "response"):
        self.name, self.device, self.batch_size, self.scope = name, device, batch_size, scope
        self.tokenizer, self.model = load_sequence_classifier(model_spec, key=f"rewards.{name}.model", device=device,
                                                              trust_remote_code=trust_remote_code)
        labels = {str(v): int(k) for k, v in self.model.config.id2label.items()}
        if label not in labels:
            raise RewardError(f"key 'rewards.{name}.label' has value {label!r}: the model {model_spec!r} has "
                              f"labels {', '.join(sorted(labels))}")
        self.label, self.label_index = label, labels[label]
        self.max_length = min(getattr(self.tokenizer, "model_max_length", 512) or 512, 4096)

    @classmethod
    def from_config(cls, config: ClassifierConfig, *, name: str, device: str = "cpu",
                    trust_remote_code: bool = False) -> "ClassifierReward":
        return cls(config.model, config.label, name=name, device=device, trust_remote_code=trust_remote_code,
                   scope=config.scope)

    def to(self, device: str) -> "ClassifierReward":
        self.device = device
        self.model.to(device)
        return self

    def score(self, prompts: Sequence[str], responses: Sequence[str]):
        texts = [f"{p}{r}" if self.scope == "prompt_and_response" else r for p, r in zip(prompts, responses)]
        return label_logits(self.tokenizer, self.model, texts, self.label_index, batch_size=self.batch_size,
                            max_length=self.max_length, device=self.device)
