"""The exact numbers of three PPO steps on the tiny model, recorded on the engine before it was split
into a shared trainer and a registered PPO algorithm: any change to the default run's numerics
(the order of RNG draws or of floating-point operations) shows here.

The values are float.hex of the metrics (CPU, one thread), recorded bit for bit on an Intel CPU. On
another CPU (an AMD EPYC here) float kernels round differently: the same code then agrees to ~7e-6
relative, so the metrics are compared at 1e-4 relative, with the sampled response lengths exact. That
still catches what this test is for: a reordered RNG draw or a changed formula moves the values at
order 1. The final weights are pinned through the norm of the policy's change from its initial
weights and the value head's norm (same tolerance, recorded on the AMD CPU with this code, whose
metrics match the Intel record). If a torch or transformers upgrade changes them, re-record them
only after checking that the code before your change gives the new numbers too.
"""

from __future__ import annotations

import pytest

from rlhf_lens.models import load_prepared
from rlhf_lens.rewards.utility_table import UtilityTableReward, words_with_spans
from rlhf_lens.rl.config import PPOConfig
from rlhf_lens.rl.train import RLRun

PINNED = [
    {"reward_mean": "0x1.3333340000000p-4", "reward_std": "0x1.c61d4e0000000p-3", "kl_mean": "0x0.0p+0",
     "kl_coef": "0x1.999999999999ap-3", "entropy": "0x1.597b2e0000000p+3", "policy_loss": "-0x1.cf2fec0000000p-5",
     "value_loss": "0x1.17ff95e800000p-7", "clip_frac": "0x1.5555560000000p-4", "value_clip_frac": "0x0.0p+0",
     "approx_kl": "0x1.ad6dea1900000p-8", "grad_norm": "0x1.52272c4000000p+1",
     "total_reward_mean": "0x1.3333340000000p-4", "value_mean": "0x0.0p+0",
     "advantage_abs_mean": "0x1.83f7d00000000p-1", "response_tokens": "0x1.8000000000000p+1"},
    {"reward_mean": "0x1.9999a00000000p-6", "reward_std": "0x1.5255600000000p-2", "kl_mean": "0x1.1ace000000000p-6",
     "kl_coef": "0x1.978d4fdf3b646p-3", "entropy": "0x1.597a9a0000000p+3", "policy_loss": "-0x1.1601520000000p-5",
     "value_loss": "0x1.71ae8b8000000p-6", "clip_frac": "0x0.0p+0", "value_clip_frac": "0x0.0p+0",
     "approx_kl": "0x1.a271b0e800000p-10", "grad_norm": "0x1.3cf72ec000000p+1",
     "total_reward_mean": "0x1.6152700000000p-6", "value_mean": "-0x1.e2296a0000000p-8",
     "advantage_abs_mean": "0x1.9de1660000000p-1", "response_tokens": "0x1.4000000000000p+2"},
    {"reward_mean": "0x1.3333340000000p-3", "reward_std": "0x1.0eecc80000000p-2", "kl_mean": "-0x1.ec3e800000000p-5",
     "kl_coef": "0x1.9583a53b8e4b9p-3", "entropy": "0x1.597aa00000000p+3", "policy_loss": "-0x1.4f11300000000p-6",
     "value_loss": "0x1.7fbec70000000p-6", "clip_frac": "0x0.0p+0", "value_clip_frac": "0x0.0p+0",
     "approx_kl": "0x1.4f7a2f7000000p-10", "grad_norm": "0x1.86a3f88000000p+1",
     "total_reward_mean": "0x1.4b91140000000p-3", "value_mean": "0x1.58780a0000000p-7",
     "advantage_abs_mean": "0x1.8bdc8a0000000p-1", "response_tokens": "0x1.0000000000000p+2"},
]
RESPONSE_LENGTHS = [3, 5, 4]
POLICY_CHANGE_NORM = 10.165327385714734  # ||theta_final - theta_initial||_2 over all policy tensors
VALUE_HEAD_NORM = 0.028465208006762034
FINAL_KL_COEF = "0x1.937c965393fbdp-3"
REL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")  # the pinned values hold for one CPU thread


def vocabulary_table(tokenizer) -> dict[str, float]:
    """A utility for every word a single token decodes to, so random tiny-model text earns rewards."""
    table: dict[str, float] = {}
    for i in range(len(tokenizer)):
        for word, _ in words_with_spans(tokenizer.decode([i])):
            table.setdefault(word, (len(word) % 5 - 2) / 2)
    return table


def test_three_ppo_steps_reproduce_the_recorded_numbers(tiny_model_dir):
    policy, tokenizer = load_prepared(tiny_model_dir)
    ref, _ = load_prepared(tiny_model_dir)
    cfg = PPOConfig(steps=3, batch_size=4, mini_batch_size=2, ppo_epochs=2, learning_rate=1e-3,
                    response_min_tokens=3, response_max_tokens=5, query_min_tokens=2, query_max_tokens=6,
                    checkpoint_every=0)
    prompts = ["This movie was", "The plot is", "I watched it and", "Acting: a mess", "Why"]
    run = RLRun(policy, ref, tokenizer, UtilityTableReward(vocabulary_table(tokenizer)), prompts, cfg, seed=0)
    metrics = run.train()
    assert metrics["response_length"].tolist() == RESPONSE_LENGTHS
    for step, (row, want) in enumerate(zip(metrics.to_dict("records"), PINNED)):
        for key, value in want.items():
            assert float(row[key]) == pytest.approx(float.fromhex(value), rel=REL, abs=1e-9), (step, key)
    initial, _ = load_prepared(tiny_model_dir)
    start = initial.state_dict()
    change = sum(float(((t.detach().double() - start[n].double()) ** 2).sum()) for n, t in policy.state_dict().items())
    assert change ** 0.5 == pytest.approx(POLICY_CHANGE_NORM, rel=REL)
    head = sum(float((t.double() ** 2).sum()) for t in run.trainer.value_head.state_dict().values())
    assert head ** 0.5 == pytest.approx(VALUE_HEAD_NORM, rel=REL)
    assert float(run.trainer.kl.value) == pytest.approx(float.fromhex(FINAL_KL_COEF), rel=REL)
