"""The RL algorithm registry: rl.algorithm in the schema and config, and an algorithm without a value head
and with K samples per prompt running through the shared trainer (the shape GRPO and RLOO will have)."""

from __future__ import annotations

import pytest
import torch
import yaml

from rlhf_lens.config import rl_settings, validate_config
from rlhf_lens.rewards import Reward
from rlhf_lens.rl import algorithm_names, get_algorithm, register_algorithm
from rlhf_lens.rl.algorithm import Advantages, Algorithm, unregister_algorithm
from rlhf_lens.rl.ppo import PPO
from rlhf_lens.rl.trainer import RLTrainer
from tiny_models import tiny_llama


pytestmark = pytest.mark.usefixtures("one_thread")


def test_ppo_is_registered_and_the_default(repo_root):
    assert algorithm_names() == ["ppo", "grpo", "rloo"] and isinstance(get_algorithm("ppo"), PPO) and PPO.needs_value_head
    rl = yaml.safe_load((repo_root / "schemas/config.schema.yaml").read_text())["properties"]["rl"]["properties"]
    assert "enum" not in rl["algorithm"] and rl["algorithm"]["default"] == "ppo"  # the registry decides
    ppo, _ = rl_settings(validate_config({}))
    assert ppo.algorithm == "ppo"
    with pytest.raises(KeyError, match="unknown RL algorithm 'nope': expected one of ppo, grpo, rloo"):
        get_algorithm("nope")


def test_unknown_algorithm_in_config_names_the_key():
    from rlhf_lens.config import ConfigError

    with pytest.raises(ConfigError, match=r"'rl.algorithm' has value 'dpo': expected one of ppo, grpo, rloo \(the registered RL algorithms\)"):
        validate_config({"rl": {"algorithm": "dpo"}})


class MeanBaseline(Algorithm):
    """A GRPO-shaped toy: K samples per prompt, advantage = sequence score minus its group's mean, no value head."""

    name = "mean_baseline"
    needs_value_head = False
    seen_groups = None

    def samples_per_prompt(self, config):
        return 2

    def problems(self, config, prefix="rl.ppo"):
        return [] if config.batch_size % 2 == 0 else [f"key '{prefix}.batch_size': expected even"]

    def advantages(self, rollout, config):
        MeanBaseline.seen_groups = rollout.groups.tolist()
        seq = rollout.score.sum(1)
        means = torch.zeros(int(rollout.groups.max()) + 1).index_add_(0, rollout.groups, seq) / 2
        adv = (seq - means[rollout.groups])[:, None] * rollout.mask
        return Advantages(adv, rollout.score)

    def loss(self, logp, values, old, config):
        assert values is None and old.values is None and old.returns is None
        ratio = torch.exp(logp - old.logp)
        pg = -(old.advantages * ratio * old.mask).sum() / old.mask.sum()
        return pg, {"policy_loss": pg.detach()}


@pytest.fixture
def mean_baseline():
    register_algorithm("mean_baseline", MeanBaseline)
    yield
    unregister_algorithm("mean_baseline")


class TextLength(Reward):
    """Characters of the response / 10 (on the last token): differs between samples of one prompt."""

    def score(self, prompts, responses):
        return torch.tensor([len(r) / 10 for r in responses])


def test_an_algorithm_without_value_head_and_with_groups_runs_in_the_shared_trainer(mean_baseline, tokenizer):
    from rlhf_lens.rl.config import PPOConfig
    from rlhf_lens.rl.train import RLRun

    cfg = PPOConfig(algorithm="mean_baseline", steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=1,
                    learning_rate=1e-3, response_min_tokens=3, response_max_tokens=3, query_min_tokens=2,
                    query_max_tokens=4, checkpoint_every=0)
    policy, ref = tiny_llama(len(tokenizer), hidden=16), tiny_llama(len(tokenizer), hidden=16)
    run = RLRun(policy, ref, tokenizer, TextLength(), ["This movie was", "The plot is", "Why"],
                cfg, seed=0)
    assert run.trainer.value_head is None
    before = [p.clone() for p in policy.parameters()]
    metrics = run.train()
    assert len(metrics) == 2 and metrics["value_mean"].isna().all() and metrics["policy_loss"].notna().all()
    assert MeanBaseline.seen_groups == [0, 0, 1, 1]
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    state = run.trainer.state_dict()
    assert state["value_head"] is None
    RLTrainer(tiny_llama(len(tokenizer), hidden=16), ref, tokenizer, cfg).load_state_dict(state)
    assert MeanBaseline().problems(PPOConfig(batch_size=3, mini_batch_size=1)) == ["key 'rl.ppo.batch_size': expected even"]
