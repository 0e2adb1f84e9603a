"""Time per PPO step: rlhf-lens's PPO vs TRL 0.29.1's ``trl.experimental.ppo.PPOTrainer``.

Same model (policy and reference), same reward model (a sequence-classification head on the same
backbone, as TRL's PPO requires one), same batch, mini-batch, PPO epochs and response length
(fixed: no stop token on either side). TRL's PPO keeps a separate value *model*; ours puts a
value head on the policy: that design difference is part of what is measured.

TRL 0.29.1 is installed into its own virtual environment, ``benchmarks/.venvs/trl029``, on first
use (the project's own environment has TRL 1.x, which no longer ships PPO). Usage:

    .venv/bin/python benchmarks/ppo_vs_trl.py [--model resources/models/smollm2-135m-instruct] [--steps 4]

Prints both times per step (median over the steps after the first, which warms up) and the ratio.
With ``--repeats R`` the two sides run alternately R times each (ours, TRL, ours, TRL, ...), so a
load change on a shared machine hits both; the ratio is of the medians over all runs' steps.
With ``--record NAME`` the result is also written as ``docs/results/records/NAME.json`` (command, commit, date,
machine, versions; ``rlhf-lens results`` renders it); the published record is ``--record ppo_vs_trl``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venvs" / "trl029"
TRL_PINS = ["torch==2.13.0", "trl==0.29.1"]


def ensure_trl_venv() -> Path:
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import trl.experimental.ppo, trl; assert trl.__version__ == '0.29.1'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing {' '.join(TRL_PINS)} into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TRL_PINS], check=True)
    subprocess.run(check, check=True)
    return python


def make_reward_model(model_dir: str, out: Path) -> Path:
    """The backbone with a 1-logit classification head (seeded), saved once for both sides."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def prompts(tok, n: int) -> list[list[int]]:
    # Read the file directly: the TRL environment does not have rlhf-lens's dependencies.
    lines = (REPO / "src/rlhf_lens/data/builtin_reviews.txt").read_text(encoding="utf-8").splitlines()
    texts = [l.strip() for l in lines if l.strip()]
    return [tok(t).input_ids[:8] for t in texts[:n]]


def run_ours(a) -> list[float]:
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from rlhf_lens.models import load_prepared
    from rlhf_lens.rewards.classifier import ClassifierReward
    from rlhf_lens.rl.config import PPOConfig
    from rlhf_lens.rl.trainer import PPOTrainer
    from rlhf_lens.rl.text import decode_with_spans

    torch.manual_seed(0)
    policy, tok = load_prepared(a.model)
    ref, _ = load_prepared(a.model)
    reward = ClassifierReward(a.reward_model, "LABEL_0", name="bench")
    cfg = PPOConfig(batch_size=a.batch, mini_batch_size=a.mini_batch, ppo_epochs=a.epochs, learning_rate=3e-6,
                    init_kl_coef=0.05, response_min_tokens=a.length, response_max_tokens=a.length,
                    stop_at_eos=False)
    trainer = PPOTrainer(policy, ref, tok, cfg)
    data = [torch.tensor(p) for p in prompts(tok, a.batch * a.steps)]
    times = []
    for s in range(a.steps):
        t0 = time.perf_counter()
        queries = data[s * a.batch:(s + 1) * a.batch]
        responses = trainer.generate(queries, a.length)
        texts = [decode_with_spans(tok, r) for r in responses]
        scores = reward.token_rewards([tok.decode(q) for q in queries], [t for t, _ in texts],
                                      [sp for _, sp in texts])
        trainer.step(queries, responses, scores)
        times.append(time.perf_counter() - t0)
        print(f"ours step {s}: {times[-1]:.2f} s", flush=True)
    return times


def run_trl(a) -> list[float]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(a.model)
    tok.padding_side = "left"
    policy = AutoModelForCausalLM.from_pretrained(a.model)
    ref = AutoModelForCausalLM.from_pretrained(a.model)
    value = AutoModelForSequenceClassification.from_pretrained(a.reward_model, num_labels=1)
    rm = AutoModelForSequenceClassification.from_pretrained(a.reward_model, num_labels=1)
    ds = Dataset.from_dict({"input_ids": prompts(tok, a.batch * a.steps)})
    times, marks = [], [time.perf_counter()]

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())
            times.append(marks[-1] - marks[-2])
            print(f"trl step {len(times) - 1}: {times[-1]:.2f} s", flush=True)

    with tempfile.TemporaryDirectory() as out:
        args = PPOConfig(output_dir=out, per_device_train_batch_size=a.mini_batch,
                         gradient_accumulation_steps=a.batch // a.mini_batch, num_mini_batches=a.batch // a.mini_batch,
                         num_ppo_epochs=a.epochs, total_episodes=a.batch * a.steps, response_length=a.length,
                         temperature=1.0, learning_rate=3e-6, kl_coef=0.05, num_sample_generations=0,
                         local_rollout_forward_batch_size=a.batch, report_to=[], save_strategy="no",
                         use_cpu=True, seed=0, stop_token=None, logging_steps=10 ** 6, bf16=False)
        trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=ref, reward_model=rm,
                             train_dataset=ds, eval_dataset=ds, value_model=value, callbacks=[Timer()])
        marks[0] = time.perf_counter()
        trainer.train()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(REPO / "resources/models/smollm2-135m-instruct"))
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--mini-batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--side", choices=["both", "ours", "trl"], default="both")
    p.add_argument("--reward-model", default=None)
    p.add_argument("--repeats", type=int, default=1, help="alternating runs of each side")
    p.add_argument("--record", metavar="NAME", default=None,
                   help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    a = p.parse_args()
    if a.side == "ours":
        print("RESULT " + json.dumps(run_ours(a)))
        return
    if a.side == "trl":
        print("RESULT " + json.dumps(run_trl(a)))
        return
    python = ensure_trl_venv()
    with tempfile.TemporaryDirectory() as tmp:
        rm = make_reward_model(a.model, Path(tmp) / "rm")
        common = ["--model", a.model, "--steps", str(a.steps), "--batch", str(a.batch), "--mini-batch",
                  str(a.mini_batch), "--epochs", str(a.epochs), "--length", str(a.length), "--reward-model", str(rm)]
        results = {"ours": [], "trl": []}  # per run: its step times
        for _ in range(a.repeats):
            for side, exe in (("ours", sys.executable), ("trl", str(python))):
                proc = subprocess.run([exe, __file__, "--side", side, *common], capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{side} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
                line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
                results[side].append(json.loads(line[7:]))
    # each run's first step warms up; the rest of all runs are pooled
    med = {k: statistics.median([t for run in runs for t in (run[1:] or run)]) for k, runs in results.items()}
    print(f"setting: batch {a.batch}, mini-batch {a.mini_batch}, {a.epochs} PPO epochs, {a.length}-token responses, "
          f"{a.steps} steps (first dropped) x {a.repeats} alternating run(s), model {a.model}")
    for name, key in (("ours", "ours"), ("TRL 0.29.1", "trl")):
        runs = " | ".join(", ".join(f"{t:.2f}" for t in run) for run in results[key])
        print(f"per-step times {name} (runs separated by |): {runs} s")
    print(f"median s/step   ours {med['ours']:.2f}   TRL 0.29.1 {med['trl']:.2f}   ratio ours/TRL {med['ours'] / med['trl']:.2f}x")
    if a.record:
        from rlhf_lens.environment import environment
        from rlhf_lens.records import write_record

        env = environment(REPO)
        env["versions"]["trl (TRL side)"] = TRL_PINS[1].split("==")[1]
        spread = {k: f"{min(t for run in runs for t in run[1:] or run):.2f}-"
                     f"{max(t for run in runs for t in run[1:] or run):.2f} s" for k, runs in results.items()}
        values = [
            {"name": "time per PPO step, ours / TRL 0.29.1", "value": round(med["ours"] / med["trl"], 2), "unit": "x",
             "decimals": 2, "reading": f"medians of {a.repeats} alternating run(s) per side, after the first step"},
            {"name": "ours, s per step (median)", "value": round(med["ours"], 2), "reading": spread["ours"]},
            {"name": "TRL 0.29.1, s per step (median)", "value": round(med["trl"], 2), "reading": spread["trl"]},
        ]
        path = write_record(
            a.record, "PPO step time vs TRL 0.29.1",
            f"Time per PPO step, {Path(a.model).name}, batch {a.batch}, mini-batch {a.mini_batch}, {a.epochs} PPO "
            f"epochs, {a.length}-token responses, against TRL 0.29.1's trl.experimental.ppo.PPOTrainer (same model "
            f"and reward model), {a.repeats} alternating run(s), medians of the steps after warm-up.",
            "benchmarks/ppo_vs_trl.py " + " ".join(sys.argv[1:]), values, root=REPO, env=env)
        print(f"record written: {path}")


if __name__ == "__main__":
    main()
