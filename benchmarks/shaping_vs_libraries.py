"""Token attributions of a rollout batch: rlhf-lens's batched SHAP and LIME vs calling shap and lime one response
at a time.

Both sides explain the same responses (sampled token ids decoded with their spans) of the same reward with
the same library objects and budgets: shap 0.51's Partition explainer with a Text masker over the
response's tokens (``max_evals``, ``batch_size``), lime 0.2.0.1's ``LimeTextExplainer`` (bow=False,
``num_samples``, the same seeded RandomState per text). The reference calls the explainer on each response
in turn with the reward as its model function, as the libraries' documentation does. Ours
(``rlhf_lens.shaping``) runs one explainer per response in threads and merges their model calls into
one reward call per round, with a cache by text (``BatchedScorer``). The values must agree (asserted,
1e-5 of the largest attribution: the reward's float32 forward may differ by padding width).

Reward: a tiny random sequence-classification reward model (``--hidden``, ``--layers``, SmolLM2's
tokenizer) scoring prompt + response, with ``batch_size`` ``--rm-batch`` texts per forward pass on both
sides (so the reference's small calls are not cut smaller, nor ours larger, than the reward allows), or
``--reward utility`` (the VADER utility table: nearly free to call, so the libraries' own bookkeeping
dominates and batching cannot help much).

    nice -n 15 .venv/bin/python benchmarks/shaping_vs_libraries.py [--responses 16] [--tokens 16]

Prints responses/s (wall and process CPU) of each side per explainer and the ratio ours / reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from rlhf_lens.rl.text import decode_with_spans  # noqa: E402
from rlhf_lens.shaping import ShapingConfig  # noqa: E402
from rlhf_lens.shaping.batching import BatchedScorer  # noqa: E402
from rlhf_lens.shaping.lime_tokens import Lime  # noqa: E402
from rlhf_lens.shaping.shap_tokens import Shap  # noqa: E402


def build_reward(args, tokenizer, folder: Path):
    if args.reward == "utility":
        from rlhf_lens.rewards.utility_table import UtilityTableReward, load_vader

        return UtilityTableReward(load_vader())
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rlhf_lens.rewards.reward_model import RewardModelReward

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(folder / "rm")
    tokenizer.save_pretrained(folder / "rm")
    return RewardModelReward(str(folder / "rm"), batch_size=args.rm_batch)


def sample_responses(tokenizer, n: int, tokens: int, seed: int):
    """Decoded random responses made of real words (token ids of a word list), with their spans."""
    words = ("the movie was great and the acting wonderful but the ending terrible sad I love this happy place "
             "food good nice boring bad film awful plot music fine").split()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text = " " + " ".join(rng.choice(words, size=tokens))
        ids = torch.tensor(tokenizer(text, add_special_tokens=False).input_ids[:tokens])
        out.append(decode_with_spans(tokenizer, ids))
    return [t for t, _ in out], [s for _, s in out]


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--max-evals", type=int, default=64)
    parser.add_argument("--shap-batch", type=int, default=16)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--reward", choices=["rm", "utility"], default="rm")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rm-batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", metavar="NAME", default=None,
                        help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    args = parser.parse_args()
    values = []
    torch.set_num_threads(args.threads)

    from tiny_models import smollm2_tokenizer

    tokenizer = smollm2_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        reward = build_reward(args, tokenizer, Path(tmp))
        texts, spans = sample_responses(tokenizer, args.responses, args.tokens, seed=0)
        prompts = ["Review:"] * len(texts)
        cfg = ShapingConfig(shap_max_evals=args.max_evals, shap_batch_size=args.shap_batch,
                            lime_num_samples=args.num_samples)
        print(f"{len(texts)} responses of {args.tokens} tokens; reward {args.reward}; shap max_evals {args.max_evals} "
              f"batch {args.shap_batch}; lime num_samples {args.num_samples}")

        def one_at_a_time(explainer):
            def score(prompt, batch):  # the reward as the library's model function: no cache, no merging
                return np.asarray(reward.score([prompt] * len(batch), list(batch)), dtype=np.float64)
            return [explainer.explain_one(score, p, t, s) for p, t, s in zip(prompts, texts, spans)]

        Shap(cfg, reward).explain_one(lambda p, b: np.zeros(len(b)), prompts[0], texts[0], spans[0])  # numba warm-up
        for name, cls in (("shap", Shap), ("lime", Lime)):
            explainer = cls(cfg, reward)
            ref, ref_wall, ref_cpu = timed(lambda: one_at_a_time(explainer))
            scorer = BatchedScorer(reward)
            ours, our_wall, our_cpu = timed(lambda: explainer.attribute(scorer, prompts, texts, spans))
            scale = max(np.abs(np.concatenate(ref)).max(), 1e-12)
            diff = max(np.abs(a - b).max() for a, b in zip(ours, ref)) / scale
            assert diff <= 1e-5, f"{name}: ours and the library's values differ by {diff:.2e} of the largest"
            n = len(texts)
            print(f"{name}: ours {n / our_wall:.2f} responses/s wall ({n / our_cpu:.2f} per CPU s), "
                  f"{scorer.stats.calls} reward calls, {scorer.stats.texts} texts | "
                  f"{name} one at a time {n / ref_wall:.2f} responses/s wall ({n / ref_cpu:.2f} per CPU s) | "
                  f"ratio {ref_wall / our_wall:.2f}x wall, {ref_cpu / our_cpu:.2f}x CPU | max |diff| {diff:.1e} "
                  "of the largest value")
            values.append({"name": f"{name.upper()}, responses per CPU second, ours / {name} one at a time",
                           "value": round(ref_cpu / our_cpu, 2), "unit": "x", "decimals": 2,
                           "reading": f"{n / our_cpu:.1f} vs {n / ref_cpu:.1f} per CPU s; "
                                      f"{ref_wall / our_wall:.2f}x wall; max difference {diff:.1e} of the largest"})
    if args.record:
        from rlhf_lens.records import write_record

        path = write_record(
            args.record, "Batched token attribution vs shap and lime",
            f"{args.responses} responses x {args.tokens} tokens, reward {args.reward}, SHAP max_evals {args.max_evals} "
            f"batch {args.shap_batch}, LIME {args.num_samples} samples, {args.threads} thread(s); same values as the "
            "libraries called one response at a time.",
            "benchmarks/shaping_vs_libraries.py " + " ".join(sys.argv[1:]), values,
            root=Path(__file__).resolve().parents[1])
        print(f"record written: {path}")


if __name__ == "__main__":
    main()
