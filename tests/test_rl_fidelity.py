"""PPO fidelity: the ratio starts at 1 even for models with dropout, tempered sampling is refused, and
the paper preset puts the whole reward on the last token as TRL 0.7 did."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rlhf_lens.config import ConfigError, validate_config
from rlhf_lens.rewards.utility_table import UtilityTableReward
from rlhf_lens.rl.config import PPOConfig, ppo_config
from rlhf_lens.rl.train import RLRun
from rlhf_lens.rl.trainer import RLTrainer
from tiny_models import tiny_neox

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_first_ratio_is_one_for_a_model_with_dropout():
    """Pythia and GPT-2 carry dropout; a policy put in train mode for the update drew new dropout masks,
    so the first minibatch's ratio was not 1 before any gradient step (and its clipping was noise)."""
    torch.manual_seed(0)
    V = 32
    policy = tiny_neox(V, layers=1, hidden=16, seed=1)
    policy.config.attention_dropout = policy.config.hidden_dropout = 0.5
    for module in policy.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in policy.modules())
    ref = tiny_neox(V, layers=1, hidden=16, seed=1)
    cfg = PPOConfig(batch_size=8, mini_batch_size=8, ppo_epochs=1, response_min_tokens=6, response_max_tokens=6,
                    stop_at_eos=False)
    trainer = RLTrainer(policy, ref, SimpleNamespace(pad_token_id=0, eos_token_id=None), cfg)
    queries = [torch.tensor([3, 4, 5])] * 8
    responses = trainer.generate(queries, 6)
    stats = trainer.optimise(trainer.rollout(queries, responses, torch.rand(8, 6)))
    # One minibatch, one gradient step: its statistics are measured before the step, at the rollout's policy.
    assert stats["approx_kl"][0] == pytest.approx(0.0, abs=1e-6)
    assert stats["clip_frac"][0] == 0.0


def test_tempered_sampling_is_refused_before_any_job():
    with pytest.raises(ConfigError, match=r"'rl.ppo.temperature' has value 0.7: expected 1.0"):
        validate_config({"rl": {"ppo": {"temperature": 0.7}}})


def test_the_paper_preset_puts_the_reward_on_the_last_token(tokenizer):
    from tiny_models import tiny_llama

    assert ppo_config("paper").reward_placement == "last_token"
    assert ppo_config("cpu_default").reward_placement == "per_token"
    from rlhf_lens.rewards.utility_table import words_with_spans

    # A utility for every word a single token decodes to, so random tiny-model text earns rewards.
    table = {w: (len(w) % 5 - 2) / 2 for i in range(len(tokenizer)) for w, _ in words_with_spans(tokenizer.decode([i]))}
    captured = {}
    for placement in ("per_token", "last_token"):
        cfg = PPOConfig(steps=1, batch_size=2, mini_batch_size=2, ppo_epochs=1, query_min_tokens=4,
                        query_max_tokens=4, response_min_tokens=5, response_max_tokens=5, stop_at_eos=False,
                        reward_placement=placement)
        policy, ref = tiny_llama(len(tokenizer), hidden=16), tiny_llama(len(tokenizer), hidden=16)
        run = RLRun(policy, ref, tokenizer, UtilityTableReward(table), ["a great film", "the film"], cfg, seed=0)

        def capture(queries, responses, scores, groups=None, sampled=None, *, placement=placement,
                    trainer=run.trainer):
            captured[placement] = scores.clone()
            return RLTrainer.step(trainer, queries, responses, scores, groups, sampled)

        run.trainer.step = capture
        run.train()
    per, last = captured["per_token"], captured["last_token"]
    assert torch.allclose(per.sum(1), last.sum(1))  # the same sequence rewards
    assert (last[:, :-1] == 0).all() and (last[:, -1] != 0).any()  # all of it on the last of 5 tokens
    assert ((per != 0).sum(1) > 1).any()  # per token: spread over the words that earned it
