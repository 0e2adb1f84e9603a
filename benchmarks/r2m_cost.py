"""What R2M costs per RL step: RLOO against the frozen plain reward model vs against R2M, same model, settings and
rollouts, on the default model (SmolLM2-135M-Instruct from its packaged GGUF) with configs/r2m.yaml's RL settings.

R2M adds, per step, the cross-attention over the response's hidden states (taken from the step's own policy
forward: no extra policy pass) and one optimiser step of attention + head on GREBT; the RM's own forward is the
same on both sides. There is no published R2M code to compare with, so the anchor is the frozen-RM step itself.
The RM folder is the base model with a fresh one-output head (build_reward_model): its weights do not change the
time. Prints per-step wall and process-CPU seconds (on a loaded machine wall time mostly measures waiting for a
core), the medians after the first step, the ratio, and the CPU time configs/r2m.yaml's 24 runs' RL steps would
take at that rate (add preferences, the plain RM and the held-out samples).

    nice -n 15 .venv/bin/python benchmarks/r2m_cost.py [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from rlhf_lens.models import ModelConfig, load_prepared, prepare_model
from rlhf_lens.r2m.config import R2MConfig
from rlhf_lens.r2m.reward import R2MReward
from rlhf_lens.reward_models.plain import build_reward_model
from rlhf_lens.rewards.reward_model import RewardModelReward
from rlhf_lens.rl.config import PPOConfig
from rlhf_lens.rl.train import RLRun

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["The film opens with", "I expected more from", "Halfway through the movie", "The acting was",
           "What surprised me most", "This director always", "The ending left me", "My friends and I"]


def timed_run(kind: str, model_dir: Path, rm_dir: Path, cfg: PPOConfig, r2m_cfg: dict) -> tuple[list[float], list[float]]:
    policy, tok = load_prepared(model_dir)
    ref, _ = load_prepared(model_dir)
    reward = (R2MReward(str(rm_dir), config=R2MConfig(path=str(rm_dir), **r2m_cfg)) if kind == "r2m"
              else RewardModelReward(str(rm_dir)))
    run = RLRun(policy, ref, tok, reward, PROMPTS * 4, cfg, seed=0)
    wall, cpu = [], []
    for step in range(cfg.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        run.train(until=step + 1)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        print(f"{kind:>8} step {step}: wall {wall[-1]:.1f} s, cpu {cpu[-1]:.1f} s", flush=True)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", metavar="NAME", default=None,
                    help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shipped = yaml.safe_load((REPO / "configs/r2m.yaml").read_text())
    ppo = shipped["rl"]["ppo"]
    cfg = dataclasses.replace(PPOConfig(), algorithm="rloo", **{**ppo, "steps": args.steps})
    r2m_cfg = {k: v for k, v in shipped["rewards"]["r2m"].items() if k not in ("type", "path")}
    spec = yaml.safe_load((REPO / "config.yaml").read_text())["model"]["spec"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = prepare_model(ModelConfig(name="smollm2", spec=spec), tmp / "model")
        model, tok = build_reward_model(model_dir, seed=0)
        model.save_pretrained(tmp / "rm", safe_serialization=True)
        tok.save_pretrained(tmp / "rm")
        results = {kind: timed_run(kind, model_dir, tmp / "rm", cfg, r2m_cfg) for kind in ("frozen", "r2m")}
    med = {k: (float(np.median(w[1:] or w)), float(np.median(c[1:] or c))) for k, (w, c) in results.items()}
    for k, (w, c) in med.items():
        print(f"{k:>8}: median wall {w:.1f} s, cpu {c:.1f} s per step")
    print(f"R2M / frozen RM per step: wall {med['r2m'][0] / med['frozen'][0]:.2f}x, "
          f"cpu {med['r2m'][1] / med['frozen'][1]:.2f}x")
    runs = {"frozen": 3 * len(shipped["r2m"]["algorithms"]),
            "r2m": 3 * (len(shipped["r2m"]["algorithms"]) * len(shipped["r2m"]["methods"])
                        + len(shipped["r2m"]["ablations"]))}
    total = sum(runs[k] * ppo["steps"] * med[k][1] for k in runs)
    print(f"configs/r2m.yaml RL steps ({runs['frozen']} frozen-RM + {runs['r2m']} R2M runs x {ppo['steps']} steps): "
          f"{total / 60:.1f} CPU-min, i.e. {total / 60 / args.threads:.1f} to {total / 60:.1f} min of wall time on "
          f"{args.threads} free cores (perfect to no thread scaling)")
    if args.record:
        from rlhf_lens.records import write_record

        path = write_record(
            args.record, "R2M's cost per RL step",
            f"RLOO against the frozen plain RM vs against R2M on SmolLM2-135M with configs/r2m.yaml's RL settings, "
            f"{args.steps} steps each, {args.threads} thread(s); medians after the first step.",
            "benchmarks/r2m_cost.py " + " ".join(sys.argv[1:]),
            [{"name": "CPU time per step, R2M / frozen RM", "value": round(med["r2m"][1] / med["frozen"][1], 2),
              "unit": "x", "decimals": 2,
              "reading": f"{med['r2m'][1]:.1f} vs {med['frozen'][1]:.1f} CPU s per step"},
             {"name": "configs/r2m.yaml's RL steps at that rate", "value": round(total / 60, 1), "unit": "CPU-min"}],
            root=REPO)
        print(f"record written: {path}")

if __name__ == "__main__":
    main()
