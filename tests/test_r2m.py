"""R2M: the omega schedule, GREBT and its pseudo-pairs against hand computations, an untrained R2M scoring as
its reward model, one update raising the pseudo-pair's margin and touching only attention + head, the
hidden states coming from the RL step's own policy forward, bit-identical resume, and bad settings refused
before any job."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlhf_lens.config import ConfigError, validate_config
from rlhf_lens.r2m.attention import omega
from rlhf_lens.r2m.config import R2MConfig
from rlhf_lens.r2m.grebt import grebt, group_entropy, pseudo_pairs
from rlhf_lens.r2m.reward import R2MReward
from rlhf_lens.rewards import Reward, build_reward
from rlhf_lens.rewards.reward_model import RewardModelReward
from rlhf_lens.rl.config import PPOConfig
from rlhf_lens.rl.groups import EPS
from rlhf_lens.rl.rollout import pad_batch
from rlhf_lens.rl.train import RLRun
from rlhf_lens.rl.trainer import RLTrainer
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["This movie was", "The plot is", "I watched it and", "Acting: a mess"]
RESPONSES = [" great fun", " dull", " and then", " a mess"]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tiny_model_dir):
    """A plain reward-model folder (the tiny Llama with a one-output score head, as rule plain_rm builds it)."""
    from rlhf_lens.reward_models.plain import build_reward_model

    model, tok = build_reward_model(tiny_model_dir, seed=0)
    out = tmp_path_factory.mktemp("rm") / "plain"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def _r2m(rm_dir, **kw):
    return R2MReward(str(rm_dir), config=R2MConfig(path=str(rm_dir), **kw))


def _hidden(B=8, T=5, D=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T)
    mask[1, 3:] = 0
    return torch.randn(B, T, D, generator=gen), mask


# ---------------------------------------------------------------- known answers


def test_omega_schedule_values():
    assert omega(0, 10, 0.6) == 1.0
    assert omega(2, 10, 0.0) == pytest.approx(0.5 * math.cos(math.pi * 0.2) + 0.5)  # 0.9045
    assert omega(2, 10, 0.6) == pytest.approx(0.9045084972)
    assert omega(5, 10, 0.6) == 0.6 and omega(5, 10, 0.4) == pytest.approx(0.5)
    assert omega(10, 10, 0.0) == pytest.approx(0.0, abs=1e-12) and omega(10, 10, 1.0) == 1.0


def test_grebt_of_a_hand_made_group_equals_the_formula():
    r = torch.tensor([1.0, 2.0, 6.0, -1.0, 0.0, 4.0, 3.0, 3.0, 3.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    expected_bt = np.mean([math.log1p(math.exp(-5.0))] * 2 + [math.log(2.0)])  # -log sigmoid(margin)
    entropies = []
    for x in (np.array([1.0, 2.0, 6.0]), np.array([-1.0, 0.0, 4.0]), np.array([3.0, 3.0, 3.0])):
        z = (x - x.mean()) / (x.std(ddof=1) + EPS)
        p = np.exp(z) / np.exp(z).sum()
        entropies.append(-(p * np.log(p)).sum())
    assert entropies[2] == pytest.approx(math.log(3))  # all equal: the largest entropy
    loss, stats = grebt(r, g, alpha=0.3)
    assert stats["r2m_bt"] == pytest.approx(expected_bt, rel=1e-6)
    assert stats["r2m_gre"] == pytest.approx(np.mean(entropies), rel=1e-6)
    assert float(loss) == pytest.approx(0.7 * expected_bt + 0.3 * np.mean(entropies), rel=1e-6)
    assert float(grebt(r, g, alpha=0.0)[0]) == pytest.approx(expected_bt, rel=1e-6)
    assert float(grebt(r, g, alpha=1.0)[0]) == pytest.approx(np.mean(entropies), rel=1e-6)


def test_bt_pairs_the_best_and_worst_of_each_group_by_the_current_scores():
    r = torch.tensor([0.3, -2.0, 5.0, 1.0, 2.0, 2.5, -1.0, 0.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    best, worst = pseudo_pairs(r, g)
    assert best.tolist() == [2, 5] and worst.tolist() == [1, 6]
    best, worst = pseudo_pairs(-r, g)  # other scores, other pair
    assert best.tolist() == [1, 6] and worst.tolist() == [2, 5]
    # the gradient of GRE spreads the group: it lowers the lowest-but-one gap's entropy
    x = torch.tensor([0.0, 0.1, 0.2], requires_grad=True)
    group_entropy(x, torch.zeros(3, dtype=torch.long)).backward()
    assert torch.isfinite(x.grad).all()


def test_an_untrained_r2m_scores_as_its_reward_model(rm_dir):
    """W_o starts at zero, so H_attn = 0: before any update R2M's reward is omega(t) times the RM's own logit
    (its head is linear without bias), the RM's logit itself at t = 0 (pooling included)."""
    plain = RewardModelReward(str(rm_dir))
    expected = plain.score(PROMPTS, RESPONSES)
    r2m = _r2m(rm_dir, omega_min=0.0)
    hidden, mask = _hidden(B=4)
    got = r2m.score_with_hidden(PROMPTS, RESPONSES, hidden, mask, step=0, steps=10)
    assert torch.allclose(got, expected, atol=1e-6) and expected.std() > 0
    got = r2m.score_with_hidden(PROMPTS, RESPONSES, hidden, mask, step=7, steps=10)
    assert torch.allclose(got, omega(7, 10, 0.0) * expected, atol=1e-6)
    assert torch.allclose(r2m.score(PROMPTS, RESPONSES), expected, atol=1e-5)


def test_an_update_raises_the_margin_on_the_pseudo_pair_and_moves_only_attention_and_head(rm_dir):
    r2m = _r2m(rm_dir, learning_rate=1e-2, omega_min=0.6)
    prompts, responses = PROMPTS * 2, RESPONSES + RESPONSES[::-1]
    hidden, mask = _hidden(B=8)
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    before = r2m.score_with_hidden(prompts, responses, hidden, mask, step=5, steps=10)
    best, worst = pseudo_pairs(before, groups)
    backbone = {n: p.detach().clone() for n, p in r2m.rm.model.named_parameters() if not n.startswith("score")}
    trainable = {id(p) for p in r2m.trainable_parameters()}
    assert {n for n, p in r2m.rm.model.named_parameters() if p.requires_grad} == {"score.weight"}
    assert trainable == {id(p) for p in [*r2m.attention.parameters(), r2m.head.weight]}
    old = {id(p): p.detach().clone() for p in r2m.trainable_parameters()}
    for _ in range(3):  # three policy steps' worth of updates on the same batch
        stats = r2m.after_policy_step(groups, step=5, steps=10)
        r2m.score_with_hidden(prompts, responses, hidden, mask, step=5, steps=10)
    after = r2m.score_with_hidden(prompts, responses, hidden, mask, step=5, steps=10)
    assert set(stats) >= {"r2m_bt", "r2m_gre", "r2m_loss", "r2m_margin", "r2m_omega"}
    assert ((after[best] - after[worst]) > (before[best] - before[worst])).all()
    for n, p in r2m.rm.model.named_parameters():
        if not n.startswith("score"):
            assert torch.equal(p, backbone[n]), n
    assert all(not torch.equal(p, old[id(p)]) for p in r2m.trainable_parameters())


def test_a_frozen_r2m_never_changes(rm_dir):
    r2m = _r2m(rm_dir, update=False, learning_rate=1e-2)
    hidden, mask = _hidden(B=4)
    first = r2m.score_with_hidden(PROMPTS, RESPONSES, hidden, mask, step=3, steps=10)
    assert r2m.after_policy_step(torch.tensor([0, 0, 1, 1]), step=3, steps=10) == {"r2m_omega": omega(3, 10, 0.6)}
    assert torch.equal(first, r2m.score_with_hidden(PROMPTS, RESPONSES, hidden, mask, step=3, steps=10))


# ---------------------------------------------------------------- inside the RL step


class Recorder(Reward):
    """A policy-reading reward that keeps what it was given: reward = mean hidden state of the response."""

    reads_policy_hidden = True

    def __init__(self):
        self.seen = []

    def score(self, prompts, responses):
        return torch.zeros(len(prompts))

    def score_with_hidden(self, prompts, responses, hidden, mask, *, step, steps):
        self.seen.append((hidden.clone(), mask.clone()))
        return (hidden.mean(-1) * mask).sum(1)


def test_hidden_states_come_from_the_steps_own_policy_forward(tokenizer):
    """The callable scores read the last-layer states at the response tokens, and the step runs no extra forward."""
    policy, ref = tiny_llama(len(tokenizer), hidden=16, seed=1), tiny_llama(len(tokenizer), hidden=16, seed=1)
    trainer = RLTrainer(policy, ref, tokenizer, PPOConfig(algorithm="rloo", batch_size=4, mini_batch_size=4,
                                                          ppo_epochs=1, group_size=2))
    queries = [torch.tensor([3, 4, 5])] * 2 + [torch.tensor([6, 7])] * 2
    responses = [torch.tensor([9, 10, 11]), torch.tensor([12, 13]), torch.tensor([14, 15, 16]), torch.tensor([17])]
    batch = pad_batch(queries, responses, trainer.pad_id)
    with torch.no_grad():
        expected = policy.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                     position_ids=batch.position_ids).last_hidden_state[:, batch.query_len:]
    calls = []
    policy.base_model.register_forward_hook(lambda *a: calls.append(1))
    rec = Recorder()
    trainer.step(queries, responses, lambda h, m: rec.score_with_hidden(None, None, h, m, step=0, steps=1)[:, None],
                 torch.tensor([0, 0, 1, 1]))
    with_hidden = len(calls)
    calls.clear()
    trainer.step(queries, responses, torch.zeros(4, 3), torch.tensor([0, 0, 1, 1]))
    assert with_hidden == len(calls)
    hidden, mask = rec.seen[0]
    assert torch.allclose(hidden * mask[..., None], expected * batch.mask[..., None], atol=1e-6)


def _run(tokenizer, rm_dir, ckpt, hidden="policy"):
    cfg = PPOConfig(algorithm="rloo", steps=4, batch_size=4, mini_batch_size=2, ppo_epochs=1, learning_rate=1e-3,
                    group_size=2, response_min_tokens=3, response_max_tokens=5, query_min_tokens=2,
                    query_max_tokens=6, checkpoint_every=2)
    policy, ref = tiny_llama(len(tokenizer), hidden=16), tiny_llama(len(tokenizer), hidden=16)
    reward = _r2m(rm_dir, learning_rate=1e-2, hidden=hidden)
    return RLRun(policy, ref, tokenizer, reward, PROMPTS + ["Why"], cfg, seed=0, checkpoint_dir=ckpt)


@pytest.mark.parametrize("hidden", ["noise"])  # noise: its draws must come from its own generator too
def test_r2m_resume_after_interrupt_is_bit_identical(tokenizer, rm_dir, tmp_path, hidden):
    full = _run(tokenizer, rm_dir, tmp_path / "a", hidden)
    full.train()
    interrupted = _run(tokenizer, rm_dir, tmp_path / "b", hidden)
    interrupted.train(until=3)  # "killed" after step 3; the last checkpoint is at step 2
    resumed = _run(tokenizer, rm_dir, tmp_path / "b", hidden)
    resumed.resume()
    assert resumed.step == 2
    resumed.train()
    for p, q in zip(full.trainer.policy.parameters(), resumed.trainer.policy.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(full.reward.trainable_parameters(), resumed.reward.trainable_parameters()):
        assert torch.equal(p, q)
    a, b = (r.metrics().drop(columns=["seconds", "generation_seconds"]) for r in (full, resumed))
    assert a.equals(b) and a["r2m_loss"].notna().all()
    assert a["r2m_omega"].tolist() == [omega(t, 4, 0.6) for t in range(4)]


# ---------------------------------------------------------------- bad input


def test_bad_r2m_settings_are_config_errors_naming_the_key(rm_dir, tiny_model_dir):
    def check(entry, match, rl=None):
        with pytest.raises(ConfigError, match=match):
            validate_config({"rewards": {"utility": {"type": "utility_table"}, "x": {"type": "r2m", **entry}},
                             **({"rl": rl} if rl else {})})

    check({"path": str(rm_dir), "omega_min": 1.2}, r"key 'rewards.x.omega_min' has value 1.2: expected a number in \[0, 1\]")
    check({"path": str(rm_dir), "omega_min": -0.1}, r"key 'rewards.x.omega_min' has value -0.1")
    check({"path": str(rm_dir), "alpha": 2}, r"key 'rewards.x.alpha' has value 2")
    check({"path": str(tiny_model_dir)}, r"key 'rewards.x.path' has value .*LlamaForCausalLM.*expected a trained "
                                         r"reward-model folder")
    check({}, r"key 'rewards.x.path' is missing")
    check({"path": "results/default/reward_models/sarm"}, r"key 'rewards.x.path' .*not the 'sarm' folder")
    check({"path": "results/default/reward_models/plain"}, r"key 'rewards.x.path' names .*preferences.overseer is not set")
    check({"path": str(rm_dir)}, r"key 'rl.ppo.group_size' has value 1", rl={"algorithm": "rloo", "ppo": {"group_size": 1}})
    check({"path": str(rm_dir)}, r"key 'rl.ppo.batch_size' has value 10: expected a multiple of group_size",
          rl={"algorithm": "grpo", "ppo": {"batch_size": 10, "mini_batch_size": 5}})
    ok = validate_config({"rewards": {"x": {"type": "r2m", "path": str(rm_dir)}}})
    assert ok["rewards"]["x"]["omega_min"] == 0.6 and ok["rewards"]["x"]["alpha"] == 0.3
    assert isinstance(build_reward("x", ok["rewards"]), R2MReward)


# ---------------------------------------------------------------- the comparison's numbers and verdict


def _samples(shift: float, n_prompts: int = 12, seeds=(0, 1, 2), seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for rew, delta in (("rm", 0.0), ("r2m", shift)):
        for s in seeds:
            for p in range(n_prompts):
                for k in range(2):
                    rows.append({"algorithm": "rloo", "reward": rew, "seed": s, "prompt_index": p, "sample": k,
                                 "proxy": rng.normal(), "gold": rng.normal(0, 0.1) + delta + 0.05 * p,
                                 "kl": 1.0, "hidden": rng.normal(size=64).tolist()})
    summaries = pd.DataFrame([{"algorithm": "rloo", "reward": r, "seed": s, "accuracy_before": 0.6,
                               "accuracy_after": 0.7} for r in ("rm", "r2m") for s in seeds])
    return pd.DataFrame(rows), summaries


def test_the_comparison_measures_the_gold_difference_and_words_the_verdict_by_the_rule():
    from rlhf_lens.r2m.compare import comparison_table
    from rlhf_lens.report.r2m import verdicts

    samples, summaries = _samples(shift=0.5)
    table = comparison_table(samples, summaries, "rm", n_boot=400)
    row = table[table.reward == "r2m"].iloc[0]
    by_hand = samples[samples.reward == "r2m"].gold.mean() - samples[samples.reward == "rm"].gold.mean()
    assert row.gold_difference == pytest.approx(by_hand)
    assert row.gold_difference_ci95[0] > 0 and row.gold_difference_p < 0.05
    assert "R2M (r2m) reduced over-optimisation" in verdicts(table, ["r2m"], "rm")[0]
    samples, summaries = _samples(shift=0.0)
    table = comparison_table(samples, summaries, "rm", n_boot=400)
    assert "did not measurably change" in verdicts(table, ["r2m"], "rm")[0]
    assert "no effect at this size" in verdicts(table, ["r2m"], "rm")[0]


def test_detection_auroc_finds_planted_similar_hidden_states_of_over_optimised_samples():
    from rlhf_lens.r2m.compare import auroc, detection_table, over_optimised

    assert auroc(np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([1, 1, 1, 1]), np.array([0, 0, 1, 1])) == 0.5
    samples, _ = _samples(shift=0.0)
    run = samples[(samples.reward == "rm") & (samples.seed == 0)].reset_index(drop=True)
    over = over_optimised(run)
    assert over.any() and not over.all()
    assert (run.proxy[over] >= run.proxy.quantile(0.75)).all() and (run.gold[over] < run.gold.median()).all()
    # plant: every over-optimised sample's hidden state points one way, so they are similar to one another
    planted = samples.copy()
    for (rew, s), part in planted.groupby(["reward", "seed"]):
        flags = over_optimised(part.reset_index(drop=True))
        for i, flag in zip(part.index, flags):
            if flag:
                planted.at[i, "hidden"] = [5.0] * 64
    det = detection_table(planted, n_boot=200)
    assert (det.auroc > 0.8).all() and all(lo > 0.5 for lo, _ in det.auroc_ci95)  # 0.88 and 0.97 with this seed
