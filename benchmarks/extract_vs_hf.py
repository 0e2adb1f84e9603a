"""Activation extraction: rlhf-lens's store vs a plain transformers forward with output_hidden_states=True.

    .venv/bin/python benchmarks/extract_vs_hf.py [--model DIR] [--layers 3,10] [--texts 96]

Both read the same texts with the same tokenizer, batch size and truncation. The baseline runs
the whole model (``output_hidden_states=True``) and keeps the hidden states of the layers asked
for at non-special tokens, in memory. Ours (rlhf_lens.activations.extract_activations) stops
after the deepest layer asked for and writes parquet shards. Tokens/s counts stored tokens.
``--record NAME`` also writes docs/results/records/NAME.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resources/models/smollm2-135m-instruct")
    p.add_argument("--layers", default="3,10", help="comma-separated block indices")
    p.add_argument("--texts", type=int, default=96)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", metavar="NAME", default=None,
                   help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    args = p.parse_args()

    import numpy as np
    import torch

    from rlhf_lens.activations import ActivationsConfig, extract_activations, tokenize_corpus
    from rlhf_lens.models import load_prepared

    torch.set_num_threads(args.threads)
    layers = [int(v) for v in args.layers.split(",")]
    texts = [t for t in files("rlhf_lens.data").joinpath("builtin_reviews.txt").read_text().splitlines()
             if t.strip()][:args.texts]
    model, tok = load_prepared(args.model)
    skip = ActivationsConfig().skip_first_positions  # both sides leave out the attention-sink position(s)
    docs, _ = tokenize_corpus(tok, texts, args.max_length, 10 ** 12, skip)
    special = np.array(sorted(tok.all_special_ids))

    # Baseline: plain HF forward, hidden_states[L + 1] is the residual stream after block L.
    t = time.perf_counter()
    kept = 0
    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))  # same length-sorted batching as ours
    for s in range(0, len(order), args.batch):
        idx = order[s:s + args.batch]
        width = max(len(docs[i]) for i in idx)
        ids = np.full((len(idx), width), tok.pad_token_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for r, i in enumerate(idx):
            ids[r, :len(docs[i])], mask[r, :len(docs[i])] = docs[i], 1
        with torch.inference_mode():
            hs = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                       output_hidden_states=True).hidden_states
        keep = torch.from_numpy((mask == 1) & ~np.isin(ids, special) & (np.arange(width)[None, :] >= skip))
        vectors = [hs[L + 1][keep].float().numpy() for L in layers]
        kept += len(vectors[0])
    hf_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        cfg = ActivationsConfig(site="resid_post", max_tokens=10 ** 12, max_length=args.max_length,
                                batch_size=args.batch)
        t = time.perf_counter()
        manifest = extract_activations(model, tok, texts, layers, Path(tmp) / "store", cfg)
        ours_s = time.perf_counter() - t
    assert manifest["n_tokens"] == kept, (manifest["n_tokens"], kept)

    depth = model.config.num_hidden_layers
    print(f"{len(docs)} texts, {kept} stored tokens, layers {layers} of {depth}, batch {args.batch}, "
          f"{args.threads} threads")
    print(f"{'':34}{'tokens/s':>10}")
    print(f"{'transformers output_hidden_states':34}{kept / hf_s:10.0f}")
    print(f"{'rlhf-lens store (parquet written)':34}{kept / ours_s:10.0f}")
    print(f"ratio (ours / transformers): {hf_s / ours_s:.2f}x")
    if args.record:
        from rlhf_lens.records import write_record

        repo = Path(__file__).resolve().parents[1]
        path = write_record(
            args.record, "Activation extraction vs transformers' hidden states",
            f"{len(docs)} texts, {kept} stored tokens, resid_post, blocks {layers} of {depth}, batch {args.batch}, "
            f"{args.threads} threads, both sides leaving out the first {skip} position(s); identical activations (tested).",
            "benchmarks/extract_vs_hf.py " + " ".join(sys.argv[1:]),
            [{"name": f"speed, ours / output_hidden_states, blocks {args.layers}", "value": round(hf_s / ours_s, 2),
              "unit": "x", "decimals": 2,
              "reading": f"{kept / ours_s:.0f} vs {kept / hf_s:.0f} stored tokens/s"}], root=repo)
        print(f"record written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
