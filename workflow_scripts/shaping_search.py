"""Rule shaping_search: every trial file -> results/{run}/shaping/{reward}/bo_trials.parquet and bo_best.json."""

import json

import pandas as pd

from rlhf_lens.atomic import write_json, write_parquet
from rlhf_lens.jobs import start_job
from rlhf_lens.shaping_study.search import WeightSearch

start_job(snakemake.log[0])
records = {}
for path in snakemake.input.trials:
    rec = json.loads(open(path).read())
    records[rec["trial"]] = rec
rows = [{"trial": r["trial"], **{f"w_{c}": w for c, w in r["weights"].items()}, **r["z"],
         **{k: v for k, v in r.items() if k not in ("trial", "weights", "z")}} for r in records.values()]
write_parquet(pd.DataFrame(rows).sort_values("trial"), snakemake.output.trials)
best = WeightSearch.best(records)
write_json({"trial": best["trial"], "weights": best["weights"], "value": best["value"]}, snakemake.output.best)
