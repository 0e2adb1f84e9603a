"""A learned reward model as the reward: a plain Bradley-Terry RM, a SARM folder, or any HF classifier.

``path`` names a folder, and what is in it decides how it is loaded (``folder_kind``):

- ``cfg.json`` with ``"architecture": "sarm"``: SARM (``rlhf_lens.reward_models.sarm.load_sarm``),
  whose ``.score(texts)`` returns (N,) rewards;
- ``config.json`` of a ``*ForSequenceClassification`` model: a plain reward model trained here
  (``rlhf_lens.reward_models.plain``, TRL's RewardTrainer) or any Hugging Face sequence classifier.
  The reward is its single logit, or the logit of ``label`` for a classifier with several.

The text scored is ``prompt + response`` (what the RL code decodes; ``scope: response`` scores the
response alone), followed by the tokenizer's EOS token as TRL's RewardTrainer appends it in training
(``append_eos``). Sequences are right-padded; the model reads its last non-pad token.

The reward-model loaders are named by string (``FOLDER_LOADERS``) and imported on first use, as
``sae.registry`` does: ``reward_models`` (which trains SARM and imports ``sae``) sits above ``rewards``
in the import layers, so a static import from here would invert them. No per-token attribution: the
per-token form is the sequence reward on the last token.

Config: ``type: reward_model`` with the keys of ``RewardModelConfig``. ``problems`` (config validation,
torch-free) reads the folder's JSON files only.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .base import Reward, RewardConfig, RewardError
from .hf_classifier import label_logits, load_sequence_classifier

log = logging.getLogger(__name__)

FOLDER_LOADERS = {"sarm": "rlhf_lens.reward_models.sarm:load_sarm"}
"""cfg.json ``architecture`` -> "module:function" returning an object with ``.score(texts) -> (N,)``."""

BUILT_PATH = re.compile(r"^results/(?P<run>[^/]+)/reward_models/(?P<rm>[^/]+)/?$")
"""A reward-model folder the workflow builds (results/{run}/reward_models/{rm}); it need not exist yet."""


def folder_kind(path: str | Path) -> str:
    """``sarm`` / another ``FOLDER_LOADERS`` name (cfg.json), or ``hf`` (a sequence classifier's config.json).

    RewardError naming the folder and what it should hold otherwise (torch-free: reads JSON only).
    """
    path = Path(path).expanduser()
    expected = ("expected a reward-model folder: config.json of a *ForSequenceClassification model (a plain "
                "reward model or any Hugging Face sequence classifier) or cfg.json with \"architecture\": \"sarm\"")
    if not path.is_dir():
        raise RewardError(f"reward-model folder {str(path)!r} does not exist: {expected}")
    cfg_json = path / "cfg.json"
    if cfg_json.is_file():
        arch = json.loads(cfg_json.read_text()).get("architecture")
        if arch in FOLDER_LOADERS:
            return arch
        if not (path / "config.json").is_file():
            raise RewardError(f"reward-model folder {str(path)!r}: cfg.json has architecture {arch!r}: {expected}")
    config_json = path / "config.json"
    if not config_json.is_file():
        raise RewardError(f"reward-model folder {str(path)!r} has neither config.json nor cfg.json: {expected}")
    archs = json.loads(config_json.read_text()).get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise RewardError(f"reward-model folder {str(path)!r}: config.json says architectures "
                          f"{', '.join(map(str, archs)) or 'none'}: {expected}")
    return "hf"


def classifier_labels(path: str | Path) -> list[str]:
    """Label names of an HF sequence classifier folder, in logit order (from config.json)."""
    cfg = json.loads((Path(path).expanduser() / "config.json").read_text())
    id2label = cfg.get("id2label")
    if id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    return [f"LABEL_{i}" for i in range(int(cfg.get("num_labels", 2)))]


@dataclass(frozen=True, kw_only=True)
class RewardModelConfig(RewardConfig):
    """``rewards.<name>`` of type reward_model."""

    path: str = field(metadata={"hint": "a reward-model folder, e.g. results/{run}/reward_models/plain"})
    """A reward-model folder: results/{run}/reward_models/{rm} built by this run (plain or sarm), or any local
    Hugging Face sequence-classification folder."""
    label: str | None = None
    """For a classifier with several outputs: the label whose logit is the reward; null for a single-output model."""
    scope: str = "prompt_and_response"
    """Score prompt + response (prompt_and_response, what the reward model was trained on) or the response alone."""
    batch_size: int = 32
    """Texts per forward pass."""
    max_length: int = 512
    """Tokens per scored text; longer texts keep their last max_length tokens (the reward reads the end)."""
    append_eos: bool = True
    """Append the tokenizer's EOS token to each text, as TRL's RewardTrainer does to its training pairs."""

    def problems(self, prefix: str) -> list[str]:
        if BUILT_PATH.match(self.path) and not Path(self.path).exists():
            return []  # built by this run: config validation checks that the run builds it
        try:
            kind = folder_kind(self.path)
        except RewardError as exc:
            return [f"key '{prefix}.path' has value {self.path!r}: {exc}"]
        if kind == "hf":
            labels = classifier_labels(self.path)
            if self.label is None and len(labels) != 1:
                return [f"key '{prefix}.label' is not set: the classifier {self.path!r} has {len(labels)} outputs "
                        f"({', '.join(labels)}): expected one of them, or a single-output reward model"]
            if self.label is not None and self.label not in labels:
                return [f"key '{prefix}.label' has value {self.label!r}: the classifier {self.path!r} has labels "
                        f"{', '.join(labels)}"]
        return []


class RewardModelReward(Reward):
    """reward = a learned reward model's score of prompt + response (+ EOS); (B,) float32."""

    per_token = False

    def __init__(self, path: str, *, name: str = "reward_model", device: str = "cpu", label: str | None = None,
                 scope: str = "prompt_and_response", batch_size: int = 32, max_length: int = 512,
                 append_eos: bool = True, trust_remote_code: bool = False):
        self.name, self.path, self.device, self.scope = name, str(path), device, scope
        self.batch_size, self.max_length, self.append_eos = batch_size, max_length, append_eos
        self.kind = folder_kind(path)
        if self.kind != "hf":
            module, func = FOLDER_LOADERS[self.kind].split(":")
            self.model = getattr(importlib.import_module(module), func)(path)
            if hasattr(self.model, "to"):
                self.model.to(device)
            return
        self.tokenizer, self.model = load_sequence_classifier(str(path), key=f"rewards.{name}.path", device=device,
                                                              trust_remote_code=trust_remote_code)
        labels = classifier_labels(path)
        self.label_index = labels.index(label) if label is not None else 0
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "left"

    @classmethod
    def from_config(cls, config: RewardModelConfig, *, name: str, device: str = "cpu",
                    trust_remote_code: bool = False) -> "RewardModelReward":
        return cls(config.path, name=name, device=device, label=config.label, scope=config.scope,
                   batch_size=config.batch_size, max_length=config.max_length, append_eos=config.append_eos,
                   trust_remote_code=trust_remote_code)

    def to(self, device: str) -> "RewardModelReward":
        self.device = device
        if hasattr(self.model, "to"):
            self.model.to(device)
        return self

    def texts(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """What the model reads: prompt + response (or the response), + EOS for an HF model if append_eos."""
        texts = [f"{p}{r}" if self.scope == "prompt_and_response" else r for p, r in zip(prompts, responses)]
        eos = getattr(getattr(self, "tokenizer", None), "eos_token", None)
        if self.kind == "hf" and self.append_eos and eos:
            texts = [t if t.endswith(eos) else t + eos for t in texts]
        return texts

    def score_texts(self, texts: Sequence[str]):
        """Rewards (N,) float32 of full texts (already joined)."""
        import torch

        texts = list(texts)
        if self.kind != "hf":
            return torch.as_tensor(self.model.score(texts), dtype=torch.float32).cpu()
        return label_logits(self.tokenizer, self.model, texts, self.label_index, batch_size=self.batch_size,
                            max_length=self.max_length, device=self.device)

    def score(self, prompts: Sequence[str], responses: Sequence[str]):
        return self.score_texts(self.texts(prompts, responses))
