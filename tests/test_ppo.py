"""PPO engine: GAE and the KL controller against hand computations, a bandit with a known
optimum, and bit-identical resume after an interrupt."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rlhf_lens.rewards.utility_table import UtilityTableReward
from rlhf_lens.rl.advantages import KLController, gae, masked_mean, masked_whiten
from rlhf_lens.rl.config import PRESETS, PPOConfig, ppo_config
from rlhf_lens.rl.rollout import pad_batch, response_logprobs
from rlhf_lens.rl.train import RLRun, batch_indices
from rlhf_lens.rl.trainer import RLTrainer
from tiny_models import tiny_llama


pytestmark = pytest.mark.usefixtures("one_thread")


def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    r = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 7.0]])
    v = torch.tensor([[0.5, 1.0, 1.5], [0.2, 0.3, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # row 2 ends after 2 tokens
    adv, ret = gae(r, v, mask, gamma, lam)
    # row 1: deltas d2 = 2 - 1.5 = 0.5; d1 = 0 + .9*1.5 - 1 = 0.35; d0 = 1 + .9*1 - .5 = 1.4
    a2 = 0.5
    a1 = 0.35 + gamma * lam * a2
    a0 = 1.4 + gamma * lam * a1
    # row 2: the episode ends at t=1 (V after it is 0): d1 = -1 - .3 = -1.3; d0 = .5 + .9*.3 - .2 = .57
    b1 = -1.3
    b0 = 0.57 + gamma * lam * b1
    want = torch.tensor([[a0, a1, a2], [b0, b1, 0.0]])
    assert torch.allclose(adv, want, atol=1e-6)
    assert torch.allclose(ret, (want + v) * mask, atol=1e-6)


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value():
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    v = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    adv, ret = gae(r, v, torch.ones(1, 4), 1.0, 1.0)
    assert torch.allclose(ret, torch.tensor([[10.0, 9.0, 7.0, 4.0]]))
    assert torch.allclose(adv, ret - v)


def test_masked_statistics_ignore_padding():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    assert masked_mean(x, m).item() == 2.0
    w = masked_whiten(x, m)
    assert w[0, 2].item() == 0.0
    assert w[0, 0].item() == pytest.approx(-1 / 2 ** 0.5, rel=1e-4)  # unbiased std of (1, 3) is sqrt(2)


def test_adaptive_kl_controller_update_rule():
    kl = KLController(0.5, target=6.0, horizon=10000)
    kl.update(9.0, 64)  # error = 9/6 - 1 = 0.5 -> clipped to 0.2
    assert kl.value == pytest.approx(0.5 * (1 + 0.2 * 64 / 10000))
    kl.update(5.4, 64)  # error = -0.1
    assert kl.value == pytest.approx(0.5 * (1 + 0.2 * 64 / 10000) * (1 - 0.1 * 64 / 10000))
    kl.update(0.0, 10000)  # error -1 -> clipped to -0.2, full horizon
    assert kl.value == pytest.approx(0.5 * (1 + 0.2 * 64 / 10000) * (1 - 0.1 * 64 / 10000) * 0.8)
    fixed = KLController(0.3)
    assert fixed.update(100.0, 64) == 0.3


def test_paper_preset_has_trl07_defaults():
    p = PRESETS["paper"]
    assert (p.batch_size, p.mini_batch_size, p.learning_rate, p.init_kl_coef, p.target_kl, p.kl_horizon,
            p.ppo_epochs, p.gamma, p.lam, p.cliprange, p.vf_coef, p.max_grad_norm) == \
        (64, 16, 1e-6, 0.5, 6.0, 10000, 4, 1.0, 0.95, 0.2, 0.1, 1.0)
    assert (p.query_min_tokens, p.query_max_tokens, p.response_min_tokens, p.response_max_tokens) == (2, 9, 8, 19)
    assert ppo_config("paper", {"steps": 3}).steps == 3
    with pytest.raises(KeyError, match="nope"):
        ppo_config("cpu_default", {"nope": 1})
    assert "mini_batch_size" in PPOConfig(batch_size=10, mini_batch_size=4).problems()[0]


def test_batch_indices_cover_each_epoch_once():
    idx = [batch_indices(s, 4, 10, seed=3) for s in range(5)]  # 20 draws = two epochs of 10
    flat = torch.tensor([int(i) for b in idx for i in b])
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:].tolist()) == list(range(10))


def test_logprobs_equal_the_full_forward():
    model = tiny_llama(50, layers=1, hidden=16)
    batch = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], [torch.tensor([9, 10]), torch.tensor([11])], 0)
    logp, _, ent = response_logprobs(model, None, batch, with_entropy=True)
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([[5, 6, 7, 9, 10]])).logits[0], -1)
    assert logp[0].tolist() == pytest.approx([full[2, 9].item(), full[3, 10].item()], abs=1e-5)
    with torch.no_grad():
        solo = torch.log_softmax(model(torch.tensor([[8, 11]])).logits[0], -1)
    assert logp[1, 0].item() == pytest.approx(solo[0, 11].item(), abs=1e-5)  # left padding does not change it
    assert (ent[0] > 0).all()


def test_bandit_learns_to_emit_the_rewarded_token():
    """A tiny model gets +1 for every emitted token 7 (dense per-token reward): it must learn to emit it."""
    torch.manual_seed(0)
    V, target = 16, 7
    policy, ref = tiny_llama(V, layers=1, hidden=16, seed=1), tiny_llama(V, layers=1, hidden=16, seed=1)
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=None)
    cfg = PPOConfig(batch_size=16, mini_batch_size=8, ppo_epochs=2, learning_rate=1e-2, init_kl_coef=0.0,
                    adaptive_kl=False, response_min_tokens=4, response_max_tokens=4, stop_at_eos=False)
    trainer = RLTrainer(policy, ref, tok, cfg)
    queries = [torch.tensor([3, 4])] * 16
    first = None
    for _ in range(25):
        responses = trainer.generate(queries, 4)
        hits = torch.stack(responses) == target
        first = hits.float().mean().item() if first is None else first
        trainer.step(queries, responses, hits.float())
    final = (torch.stack(trainer.generate(queries, 4)) == target).float().mean().item()
    assert first < 0.3 and final > 0.9, (first, final)


def _run(tokenizer, ckpt, steps=4, seed=0):
    cfg = PPOConfig(steps=steps, batch_size=4, mini_batch_size=2, ppo_epochs=2, learning_rate=1e-3,
                    response_min_tokens=3, response_max_tokens=5, query_min_tokens=2, query_max_tokens=6,
                    checkpoint_every=2)
    policy, ref = tiny_llama(len(tokenizer), hidden=16), tiny_llama(len(tokenizer), hidden=16)
    reward = UtilityTableReward({"the": 1.0, "a": -1.0, "and": 2.0})
    prompts = ["This movie was", "The plot is", "I watched it and", "Acting: a mess", "Why"]
    return RLRun(policy, ref, tokenizer, reward, prompts, cfg, seed=seed, checkpoint_dir=ckpt)


def test_resume_after_interrupt_is_bit_identical(tokenizer, tmp_path):
    full = _run(tokenizer, tmp_path / "a")
    full.train()
    interrupted = _run(tokenizer, tmp_path / "b")
    interrupted.train(until=3)  # "killed" after step 3; the last checkpoint is at step 2
    resumed = _run(tokenizer, tmp_path / "b")
    resumed.resume()
    assert resumed.step == 2
    resumed.train()
    for (name, p), q in zip(full.trainer.policy.named_parameters(), resumed.trainer.policy.parameters()):
        assert torch.equal(p, q), name
    assert torch.equal(full.trainer.value_head.linear.weight, resumed.trainer.value_head.linear.weight)
    assert full.trainer.kl.value == resumed.trainer.kl.value
    a, b = full.metrics().drop(columns=["seconds", "generation_seconds"]), \
        resumed.metrics().drop(columns=["seconds", "generation_seconds"])
    assert a.equals(b)
    # a run with other settings does not resume that checkpoint
    other = _run(tokenizer, tmp_path / "b", seed=1)
    other.resume()
    assert other.step == 0


def test_schema_lists_every_ppo_setting_and_preset(repo_root):
    import yaml

    from rlhf_lens.rl.config import field_names

    rl = yaml.safe_load((repo_root / "schemas/config.schema.yaml").read_text())["properties"]["rl"]["properties"]
    assert list(rl["ppo"]["properties"]) == field_names()
    assert rl["preset"]["enum"] == list(PRESETS)


def test_context_too_short_fails_before_training(tokenizer):
    from rlhf_lens.rl.text import RLInputError

    cfg = PPOConfig(query_max_tokens=500, response_max_tokens=100)  # tiny_llama has 512 positions
    with pytest.raises(RLInputError, match="rl.ppo.query_max_tokens.*exceed the model's context of 512"):
        RLRun(tiny_llama(len(tokenizer), hidden=16), tiny_llama(len(tokenizer), hidden=16), tokenizer,
              UtilityTableReward({}), ["a prompt"], cfg)


def _rollout(score, kl, values, mask, kl_coef, logp=None):
    """A hand-made one-row-or-more Rollout over T response tokens (the batch's ids are irrelevant here)."""
    from rlhf_lens.rl.algorithm import Rollout

    B, T = score.shape
    batch = pad_batch([torch.tensor([1])] * B, [torch.ones(T, dtype=torch.long)] * B, 0)
    batch.mask = mask.clone()
    logp = torch.zeros(B, T) if logp is None else logp
    return Rollout(batch=batch, score=score, logp=logp, ref_logp=logp - kl, kl=kl, kl_coef=kl_coef, values=values)


def test_ppo_rewards_carry_the_kl_penalty_per_token_and_gae_sees_it():
    """r_t = score_t - beta * kl_t on every token; with gamma = lambda = 1 the advantage is the
    reward-to-go minus the value: numbers worked out by hand."""
    from rlhf_lens.rl.ppo import PPO

    ro = _rollout(score=torch.tensor([[0.0, 0.0, 1.0]]), kl=torch.tensor([[0.5, -0.2, 0.1]]),
                  values=torch.tensor([[0.1, 0.2, 0.3]]), mask=torch.ones(1, 3), kl_coef=0.2)
    out = PPO().advantages(ro, PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False))
    torch.testing.assert_close(out.rewards, torch.tensor([[-0.1, 0.04, 0.98]]))
    torch.testing.assert_close(out.returns, torch.tensor([[0.92, 1.02, 0.98]]))
    torch.testing.assert_close(out.advantages, torch.tensor([[0.82, 0.82, 0.68]]))


def test_ppo_value_loss_is_clipped_around_the_old_values():
    """Old value 0, return 1, clip 0.2: a new value of 0.5 is clipped to 0.2 and the larger error
    (0.64) counts; a new value of 0.1 lies inside the clip (0.81 both ways). vf = 0.5 * mean."""
    from rlhf_lens.rl.ppo import PPO

    ro = _rollout(score=torch.zeros(1, 2), kl=torch.zeros(1, 2), values=torch.zeros(1, 2), mask=torch.ones(1, 2),
                  kl_coef=0.0)
    ro.advantages, ro.returns = torch.zeros(1, 2), torch.ones(1, 2)
    cfg = PPOConfig(cliprange_value=0.2, vf_coef=0.1)
    loss, stats = PPO().loss(torch.zeros(1, 2), torch.tensor([[0.5, 0.1]]), ro, cfg)
    assert stats["value_loss"].item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert stats["value_clip_frac"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(0.1 * 0.5 * (0.64 + 0.81) / 2)  # ratio 1, advantage 0: no policy loss


def test_tokens_past_the_response_carry_no_loss():
    """Padding after an early end of sequence is masked: a huge advantage there changes nothing."""
    from rlhf_lens.rl.ppo import PPO

    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    ro = _rollout(score=torch.zeros(1, 4), kl=torch.zeros(1, 4), values=torch.zeros(1, 4), mask=mask, kl_coef=0.0)
    ro.returns = torch.zeros(1, 4)
    logp = torch.tensor([[0.1, -0.1, 0.3, -0.3]])
    ro.advantages = torch.tensor([[1.0, -1.0, 0.0, 0.0]])
    clean, _ = PPO().loss(logp, torch.zeros(1, 4), ro, PPOConfig())
    ro.advantages = torch.tensor([[1.0, -1.0, 1e6, -1e6]])
    dirty, _ = PPO().loss(logp, torch.zeros(1, 4), ro, PPOConfig())
    assert dirty.item() == pytest.approx(clean.item())


def test_sampling_stops_at_the_first_eos_and_masks_what_follows():
    """A model that emits token 5 or EOS with equal odds: each response ends at its first EOS, nothing
    follows it, and the response mask covers exactly the kept tokens; without stop_at_eos no EOS is sampled."""
    from rlhf_lens.rl.rollout import sample_responses

    V, eos = 16, 2
    model = tiny_llama(V, layers=1, hidden=16, seed=0)
    head = torch.nn.Linear(16, V, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-1e4)
        head.bias[[5, eos]] = 0.0
    model.lm_head = head
    torch.manual_seed(0)
    queries = [torch.tensor([3, 4])] * 32
    responses = sample_responses(model, queries, 6, pad_id=0, eos_id=eos, stop_at_eos=True)
    lengths = [len(r) for r in responses]
    assert min(lengths) < 6 and max(lengths) <= 6
    for r in responses:
        eos_at = (r == eos).nonzero().flatten().tolist()
        assert eos_at in ([], [len(r) - 1])  # at most one EOS, and it ends the response
        assert set(r.tolist()) <= {5, eos}
    batch = pad_batch(queries, responses, pad_id=0)
    assert batch.mask.sum(1).tolist() == lengths
    full = sample_responses(model, queries, 6, pad_id=0, eos_id=eos, stop_at_eos=False)
    assert all(len(r) == 6 and eos not in r.tolist() for r in full)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_inverse_cdf_sampler_draws_from_the_softmax(temperature):
    """20,000 draws of the sampler's one possible token follow softmax(scores / T) within 5 standard
    errors per token; tokens of probability 0 are never drawn, and the scores passed in are left as they were."""
    from rlhf_lens.rl.rollout import InverseCDFSampler

    p = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0, 0.0])
    scores = torch.log(p).expand(20_000, -1).clone()
    kept = scores.clone()
    torch.manual_seed(0)
    drawn = InverseCDFSampler(temperature)(None, scores).argmax(-1)
    assert torch.equal(scores, kept)
    want = p ** (1 / temperature) / (p ** (1 / temperature)).sum()
    freq = torch.bincount(drawn, minlength=6).float() / len(drawn)
    se = (want * (1 - want) / len(drawn)).sqrt()
    assert ((freq - want).abs() <= 5 * se + 1e-9).all(), (freq, want)
    assert freq[4:].sum() == 0 and (freq[:4] > 0).all()


def test_generation_logprobs_equal_a_forward_pass_and_leave_sampling_unchanged():
    """The log-probs read off generation's logits (what rl_eval's KL uses instead of a second pass) equal
    response_logprobs on the padded batch, for left-padded queries of unequal length and responses cut
    at EOS; asking for them draws the same tokens."""
    from rlhf_lens.rl.rollout import sample_responses

    model = tiny_llama(40, layers=2, hidden=16, seed=3)
    queries = [torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10])] * 4
    torch.manual_seed(1)
    plain = sample_responses(model, queries, 7, pad_id=0, eos_id=2)
    torch.manual_seed(1)
    responses, logps = sample_responses(model, queries, 7, pad_id=0, eos_id=2, with_logprobs=True)
    assert [r.tolist() for r in responses] == [r.tolist() for r in plain]
    assert [len(lp) for lp in logps] == [len(r) for r in responses]
    batch = pad_batch(queries, responses, 0)
    with torch.no_grad():
        forward, _, _ = response_logprobs(model, None, batch)
    for i, lp in enumerate(logps):
        assert lp.tolist() == pytest.approx(forward[i, :len(lp)].tolist(), abs=1e-4)


@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])
def test_generation_states_equal_the_rollout_forward_pass(architecture):
    """What ``sample_with_states`` reads off generation (log-probs, entropies, the last-layer states a value
    head reads) equals the rollout's forward pass of the policy at every real response token, for left-padded
    queries of unequal length and responses cut at EOS; it draws the same tokens as ``sample_responses``;
    and a PPO rollout built from it equals one built with the forward pass."""
    from tiny_models import tiny_neox

    from rlhf_lens.rl.rollout import ValueHead, sample_responses, sample_with_states

    V, eos = 40, 2
    model = (tiny_llama if architecture == "llama" else tiny_neox)(V, layers=2, hidden=16, seed=3)
    out = torch.nn.Linear(16, V, bias=True)  # EOS made likely, so that responses of several lengths share a batch
    with torch.no_grad():
        out.weight.copy_(model.get_output_embeddings().weight)
        out.bias.zero_()
        out.bias[eos] = 2.5
    model.set_output_embeddings(out)
    queries = [torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10])] * 4
    torch.manual_seed(1)
    plain = sample_responses(model, queries, 7, pad_id=0, eos_id=eos)
    torch.manual_seed(1)
    got = sample_with_states(model, queries, 7, pad_id=0, eos_id=eos)
    assert [r.tolist() for r in got.responses] == [r.tolist() for r in plain]
    assert min(len(r) for r in got.responses) < 7  # some responses end early: padding is exercised
    head = ValueHead(16)
    torch.nn.init.normal_(head.linear.weight)
    batch = pad_batch(queries, got.responses, 0)
    with torch.no_grad():
        logp, values, entropy = response_logprobs(model, head, batch, with_entropy=True)
        from_states = head(got.hidden)
    m = batch.mask.bool()
    for mine, forward in ((got.logp, logp), (got.entropy, entropy), (from_states, values)):
        assert mine.shape == forward.shape
        assert torch.allclose(mine[m], forward[m], atol=1e-4)
    assert (got.logp[~m] == 0).all()

    cfg = PPOConfig(batch_size=12, mini_batch_size=6)
    trainer = RLTrainer(model, model, SimpleNamespace(pad_token_id=0, eos_token_id=eos), cfg)
    scores = torch.randn(12, 7)
    a = trainer.rollout(queries, got.responses, scores)  # the policy's forward pass
    trainer.sample_generator.manual_seed(1)  # the trainer samples from its own generator, not the global RNG
    sampled = trainer.sample(queries, 7)
    assert [r.tolist() for r in sampled.responses] == [r.tolist() for r in got.responses]
    b = trainer.rollout(queries, sampled.responses, scores, sampled=sampled)
    for name in ("logp", "entropy", "values", "advantages", "returns"):
        assert torch.allclose(getattr(a, name) * a.mask, getattr(b, name) * b.mask, atol=1e-4), name
