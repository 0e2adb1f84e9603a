"""The keys of reward type ``r2m`` (torch-free: config validation reads them).

``path`` must name a trained reward-model folder with a single-output sequence-classification head (a
plain RM built by this run, results/{run}/reward_models/plain, or any such local folder): R2M needs the
RM's last-token embedding and its score head, which a SARM folder or a classifier with several labels
does not expose in that form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..rewards.base import RewardConfig, RewardError
from ..rewards.reward_model import BUILT_PATH, classifier_labels, folder_kind

HIDDEN_SOURCES = ("policy", "noise")
"""What the attention reads: the policy's hidden states, or Gaussian noise of their scale (ablation)."""


@dataclass(frozen=True, kw_only=True)
class R2MConfig(RewardConfig):
    """``rewards.<name>`` of type r2m."""

    path: str = field(metadata={"hint": "a trained reward-model folder, e.g. results/{run}/reward_models/plain"})
    """The trained reward model R2M starts from: results/{run}/reward_models/plain built by this run, or a local
    single-output Hugging Face sequence-classification folder."""
    scope: str = "prompt_and_response"
    """What the RM reads: prompt + response (what it was trained on) or the response alone."""
    batch_size: int = 32
    """Texts per RM forward pass."""
    max_length: int = 512
    """Tokens per scored text; longer texts keep their last max_length tokens."""
    append_eos: bool = True
    """Append the tokenizer's EOS token to each text, as TRL's RewardTrainer does to its training pairs."""
    width: int = 64
    """Width d of the cross-attention's query, key and value (the paper uses 2048 on 8B models)."""
    omega_min: float = 0.6
    """Omega, the floor of omega(t) = max(cos(pi t / T) / 2 + 1/2, Omega): the weight kept on the RM's own
    embedding (1 = the plain RM); in [0, 1]."""
    alpha: float = 0.3
    """GREBT = (1 - alpha) BT + alpha GRE: 0 drops the group-entropy term, 1 the Bradley-Terry term; in [0, 1]."""
    learning_rate: float = 1e-4
    """AdamW learning rate of the attention and score head (one step after every policy step)."""
    update: bool = True
    """Update attention and head after every policy step; false keeps them fixed (ablation: R2M never trained)."""
    hidden: str = "policy"
    """policy (the policy's last-layer hidden states of the response) or noise (Gaussian noise of the same
    shape and standard deviation: the ablation)."""
    seed: int = 0
    """Seed of the attention's initial weights and of the noise ablation's draws."""

    def problems(self, prefix: str) -> list[str]:
        out = []
        for key in ("omega_min", "alpha"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                out.append(f"key '{prefix}.{key}' has value {value!r}: expected a number in [0, 1]")
        if self.hidden not in HIDDEN_SOURCES:
            out.append(f"key '{prefix}.hidden' has value {self.hidden!r}: expected one of {', '.join(HIDDEN_SOURCES)}")
        if self.width < 1:
            out.append(f"key '{prefix}.width' has value {self.width!r}: expected an integer >= 1")
        return out + self.folder_problems(prefix)

    def folder_problems(self, prefix: str) -> list[str]:
        """``path`` must be a trained single-output reward model (or the plain RM this run builds)."""
        expected = ("expected a trained reward-model folder (results/{run}/reward_models/plain, or a local "
                    "single-output *ForSequenceClassification folder)")
        m = BUILT_PATH.match(self.path)
        if m and not Path(self.path).exists():
            if m["rm"] != "plain":
                return [f"key '{prefix}.path' has value {self.path!r}: R2M reads a plain reward model's embedding "
                        f"and score head, not the {m['rm']!r} folder: {expected}"]
            return []  # built by this run: config validation checks that the run builds it
        try:
            kind = folder_kind(self.path)
        except RewardError as exc:
            return [f"key '{prefix}.path' has value {self.path!r}: {re.sub(r': expected .*$', '', str(exc))}: {expected}"]
        if kind != "hf":
            return [f"key '{prefix}.path' has value {self.path!r}: a {kind} folder: {expected}"]
        labels = classifier_labels(self.path)
        if len(labels) != 1:
            return [f"key '{prefix}.path' has value {self.path!r}: a classifier with {len(labels)} outputs: {expected}"]
        return []
