"""The plain reward model: a Bradley-Terry head on the base model, trained with TRL's ``RewardTrainer``.

``AutoModelForSequenceClassification`` (num_labels 1: a linear ``score`` head on the last non-pad
token's final hidden state, randomly initialised, seeded) is built from the prepared base model folder
(resources/models/{name}) and trained on the train pairs with TRL 1.16's ``RewardTrainer``: loss
``-log sigmoid(r_chosen - r_rejected)`` (plus ``center_rewards_coefficient`` * mean(r^2) if set). TRL
wants a ``datasets.Dataset`` with ``prompt``, ``chosen`` and ``rejected`` text columns (it joins
prompt + response and appends the EOS token, then tokenises); the reward type ``reward_model`` scores
the same text (prompt + response + EOS) at RL time.

Settings we fix, and why: bf16/fp16 off (bf16 is TRL's default and fails on CPU); no hub, no
``report_to`` integrations (offline, nothing leaves the machine); gradient checkpointing off (TRL's
default is on: it only saves memory, and small models on CPU run slower with it); dropout off
(TRL's default). Checkpoints every ``checkpoint_every`` optimiser steps to a folder outside the
output, and a killed run resumes from the newest one (HF Trainer's ``resume_from_checkpoint``)
unless the settings changed (a fingerprint file beside them). The final model is written atomically.

What ``RewardTrainer`` cannot do that we would want, and what we do instead:

- it drops (does not truncate) pairs longer than ``max_length`` tokens: we count them and log how
  many were dropped, and refuse to train when none are left;
- it takes hard labels only (no soft Bradley-Terry targets from ``p_chosen``): the labels are the
  noisy draws, which is what a human-labelled dataset gives too;
- it knows nothing of prompt groups and saves non-atomically: held-out accuracy with CIs over prompts
  (``accuracy``) and the atomic save are ours.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_dir, write_json, write_parquet
from ..preferences.table import read_pairs
from .accuracy import accuracy_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlainRMConfig:
    """The plain Bradley-Terry reward model (``plain_rm:`` in config.yaml), trained by TRL's RewardTrainer."""

    epochs: float = 2.0
    """Passes over the train pairs."""
    learning_rate: float = 1e-4
    """AdamW learning rate (TRL's RewardConfig default), linear decay to 0."""
    batch_size: int = 8
    """Pairs per device per optimiser step (before gradient accumulation)."""
    gradient_accumulation_steps: int = 1
    """Batches accumulated per optimiser step."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Optimiser steps of linear learning-rate warm-up."""
    max_length: int = 256
    """Longest pair (prompt + response + EOS, in tokens) trained on; TRL drops longer pairs (the count is logged)."""
    center_rewards_coefficient: float | None = None
    """Weight of mean(r^2) added to the loss to keep rewards near 0 (Eisenstein et al. 2023 use 0.01); null: none."""
    checkpoint_every: int = 50
    """Write a resumable checkpoint every N optimiser steps (0: never)."""
    score_batch_size: int = 32
    """Texts per forward pass when scoring the held-out responses."""
    bootstrap: int = 2000
    """Bootstrap resamples over held-out prompts for the accuracy and Spearman CIs."""
    ci_level: float = 0.95
    """Confidence level of those intervals."""


# Keys that change how training runs but not the model it writes (not rule params, not in the fingerprint).
RUN_TIME_KEYS = ("checkpoint_every", "score_batch_size")


class RewardModelError(ValueError):
    """A reward model that cannot be trained as configured; the message names the file or key."""


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resumable(checkpoint_dir: Path, fp: str) -> str | None:
    """The newest checkpoint in ``checkpoint_dir`` written with the same settings, else None (a stale
    folder from other settings is removed so it cannot be resumed)."""
    from transformers.trainer_utils import get_last_checkpoint

    stamp = checkpoint_dir / "fingerprint.json"
    if checkpoint_dir.is_dir():
        if not stamp.is_file() or json.loads(stamp.read_text()).get("fingerprint") != fp:
            shutil.rmtree(checkpoint_dir)
        else:
            return get_last_checkpoint(str(checkpoint_dir))
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": fp}))
    return None


def build_reward_model(base_dir: str | os.PathLike, seed: int, device: str = "cpu"):
    """(AutoModelForSequenceClassification with one output, tokenizer with a pad token) from a causal-LM folder.

    The ``score`` head (hidden -> 1, no bias) is new and initialised from torch's RNG, seeded here;
    fails naming the folder if it holds no model transformers can put a classification head on.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise RewardModelError(f"model folder {str(base_dir)!r}: cannot build a sequence-classification reward "
                               f"model from it ({exc})") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label, model.config.label2id = {0: "REWARD"}, {"REWARD": 0}
    return model.to(device), tokenizer


def _LogToJobLog():
    """A TrainerCallback writing each of the Trainer's log records (loss, accuracy, margin...) to this module's
    logger, with the step out of the total: the rule's log shows the training's progress."""
    from transformers import TrainerCallback

    class LogToJobLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            shown = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in (logs or {}).items()}
            log.info("step %d/%d: %s", state.global_step, state.max_steps, shown)

    return LogToJobLog()


def train_plain_rm(base_dir: str | os.PathLike, train_path: str | os.PathLike, cfg: PlainRMConfig, *,
                   out_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike, heldout_path=None, seed: int = 0,
                   device: str = "cpu", settings: dict | None = None, callbacks: list | None = None) -> dict:
    """Train on ``train_path``'s pairs; write the HF folder ``out_dir`` (+ ``accuracy.json`` and
    ``pair_scores.parquet`` on ``heldout_path``'s pairs, + ``training.json``); return the accuracy summary.

    ``settings`` (what else changes the model: the preference set, the base model) joins the
    checkpoint fingerprint, so a rerun with other settings starts fresh instead of resuming.
    ``callbacks``: transformers ``TrainerCallback`` objects passed to the trainer.
    """
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    pairs = read_pairs(train_path)
    model, tokenizer = build_reward_model(base_dir, seed, device)
    ds = Dataset.from_dict({"prompt": list(pairs.prompt), "chosen": list(pairs.chosen),
                            "rejected": list(pairs.rejected)})
    result_settings = {k: v for k, v in asdict(cfg).items() if k not in RUN_TIME_KEYS}
    fp = _fingerprint({"plain_rm": result_settings, "seed": seed, "n_pairs": len(pairs), **(settings or {})})
    checkpoint_dir = Path(checkpoint_dir)
    resume = _resumable(checkpoint_dir, fp)
    every = cfg.checkpoint_every
    args = RewardConfig(
        output_dir=str(checkpoint_dir), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps, max_length=cfg.max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient, seed=seed, data_seed=seed,
        bf16=False, fp16=False, use_cpu=str(device) == "cpu", gradient_checkpointing=False, report_to="none",
        save_strategy="steps" if every else "no", save_steps=every or 500, save_total_limit=2,
        logging_steps=max(1, every // 5) if every else 10, disable_tqdm=True, dataloader_num_workers=0,
        push_to_hub=False,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                            callbacks=[*(callbacks or []), _LogToJobLog()])
    # without tqdm the Trainer prints each log line to stdout (the scheduler's terminal, not the rule's log)
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)
    dropped = len(ds) - len(trainer.train_dataset)
    if dropped:
        log.warning("%d of %d train pairs are longer than plain_rm.max_length (%d tokens) and were dropped by "
                    "RewardTrainer", dropped, len(ds), cfg.max_length)
    if len(trainer.train_dataset) == 0:
        raise RewardModelError(f"key 'plain_rm.max_length' has value {cfg.max_length}: every train pair of "
                               f"{str(train_path)!r} is longer; expected a larger value")
    if resume:
        log.info("resuming from checkpoint %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    history = [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]
    summary = None
    with atomic_dir(out_dir) as tmp:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json({"settings": asdict(cfg), "seed": seed, "train_pairs": len(ds), "dropped_pairs": dropped,
                    "steps": trainer.state.global_step, "log": history}, tmp / "training.json")
        if heldout_path is not None:
            summary = measure_accuracy(tmp, heldout_path, cfg, seed=seed, device=device, out_dir=tmp)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info("reward model written to %s after %d steps", out_dir, trainer.state.global_step)
    return summary or {}


def measure_accuracy(rm_dir: str | os.PathLike, heldout_path: str | os.PathLike, cfg: PlainRMConfig, *,
                     seed: int = 0, device: str = "cpu", out_dir: str | os.PathLike | None = None) -> dict:
    """Accuracy of the reward model in ``rm_dir`` on the held-out pairs (``accuracy.accuracy_report``);
    writes ``accuracy.json`` and ``pair_scores.parquet`` into ``out_dir`` (default ``rm_dir``)."""
    from ..rewards.reward_model import RewardModelReward

    rm = RewardModelReward(str(rm_dir), name="plain", device=device, batch_size=cfg.score_batch_size,
                           max_length=cfg.max_length)
    summary, table = accuracy_report(lambda p, r: rm.score(p, r).numpy(), read_pairs(heldout_path),
                                     n_boot=cfg.bootstrap, level=cfg.ci_level, seed=seed)
    summary["heldout"] = str(heldout_path)
    out = Path(out_dir or rm_dir)
    write_json(summary, out / "accuracy.json")
    write_parquet(table, out / "pair_scores.parquet")
    acc, rho = summary["pair_accuracy"], summary["spearman"]
    log.info("held-out pair accuracy %.3f [%.3f, %.3f] on %d pairs; Spearman %.3f [%.3f, %.3f]", acc["mean"],
             *acc["ci95"], acc["n_pairs"], rho["mean"], *rho["ci95"])
    return summary
