"""Shaped PPO: the shaped reward inside the rollout step, its cost in the metrics, and its config section."""

from __future__ import annotations

import pytest
import torch

from rlhf_lens.config import ConfigError, shaping_config, validate_config
from rlhf_lens.rewards.utility_table import UtilityTableReward
from rlhf_lens.rl.config import PPOConfig
from rlhf_lens.rl.train import RLRun
from rlhf_lens.shaping import ShapingConfig
from rlhf_lens.shaping.shaped_reward import ShapedReward
from tiny_models import tiny_llama, vocabulary_table

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE = {"the": 1.0, "a": -1.0, "and": 2.0, "good": 1.5}
PROMPTS = ["This movie was", "The plot is", "I watched it and", "Acting: a mess", "Why"]


def _run(tokenizer, reward, placement="per_token", steps=2, seed=0):
    cfg = PPOConfig(steps=steps, batch_size=4, mini_batch_size=2, ppo_epochs=1, learning_rate=1e-3,
                    response_min_tokens=4, response_max_tokens=6, query_min_tokens=2, query_max_tokens=6,
                    checkpoint_every=0, reward_placement=placement)
    policy, ref = tiny_llama(len(tokenizer), hidden=16), tiny_llama(len(tokenizer), hidden=16)
    return RLRun(policy, ref, tokenizer, reward, PROMPTS, cfg, seed=seed)


def test_all_weight_on_the_last_token_trains_as_the_sparse_reward(tokenizer):
    """Bit for bit on every CPU: both runs take the same float path (a last_token-only ShapedReward reads nothing from
    the policy, so its rollout keeps generation's log-probs as the sparse run does). Checked at commit 201ec3d on an
    AMD EPYC Zen 4 with AVX512-BF16 under the default (avx512) kernels, ATEN_CPU_CAPABILITY=avx2 (also with MKL and
    oneDNN held to AVX2) and ATEN_CPU_CAPABILITY=default (no SIMD). Two faults hid behind an older form of this
    test, which passed only where the kernels rounded alike: both runs, built before either trained, drew from
    torch's one global RNG (the second took the first's leftover stream; each run now owns its generators), and with
    a four-word table the rewards were 0, so nothing trained; with rewards, last_token turned every negative reward
    into a uniform spread."""
    table = vocabulary_table(tokenizer)  # with TABLE's four words rewards are ~always 0: nothing would train
    sparse = _run(tokenizer, UtilityTableReward(table), placement="last_token")
    shaped = _run(tokenizer, ShapedReward(UtilityTableReward(table), ShapingConfig(weights={"last_token": 1.0})))
    start = [p.detach().clone() for p in sparse.trainer.policy.parameters()]
    m_sparse, m_shaped = sparse.train(), shaped.train()
    assert (m_sparse["reward_std"] > 0).all() and (m_sparse["grad_norm"] > 0.01).all()  # it does train
    assert not all(torch.equal(p, q) for p, q in zip(start, sparse.trainer.policy.parameters()))
    assert m_sparse.drop(columns=["seconds", "generation_seconds"]).equals(
        m_shaped.drop(columns=["seconds", "generation_seconds"]))
    for p, q in zip(sparse.trainer.policy.parameters(), shaped.trainer.policy.parameters()):
        assert torch.equal(p, q)


def test_shaped_ppo_logs_the_attribution_cost_per_step(tokenizer):
    shaped = ShapedReward(UtilityTableReward(TABLE), ShapingConfig(weights={"last_token": 0.4, "lime": 0.6},
                                                                   lime_num_samples=20))
    metrics = _run(tokenizer, shaped).train()
    assert len(metrics) == 2
    assert (metrics["shaping_lime_reward_texts"] > 0).all() and (metrics["shaping_lime_seconds"] > 0).all()
    assert metrics["shaping_lime_reward_calls"].max() <= 2  # the 4 responses' samples go to the reward together
    assert "shaping_last_token_seconds" not in metrics.columns  # free components cost nothing


def test_shaping_config_is_off_by_default_and_validated():
    cfg = validate_config({})
    assert shaping_config(cfg) == ShapingConfig()
    assert not cfg["rl"]["shaping"]["enabled"]
    bad = {"rl": {"shaping": {"weights": {"last_token": 0.5, "shapp": 0.2}}}}
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    text = str(err.value)
    assert "rl.shaping.weights.shapp" in text and "summing to 1" in text
    with pytest.raises(ConfigError, match="integrated gradients.*reward 'utility'.*utility_table"):
        validate_config({"rewards": {"utility": {"type": "utility_table"}},
                         "rl": {"shaping": {"enabled": True, "weights": {"ig": 1.0}}}})
