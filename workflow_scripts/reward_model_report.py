"""Rule reward_model_report: learned reward models' results -> results/{run}/report/reward_models.md."""

from pathlib import Path

from rlhf_lens.jobs import start_job
from rlhf_lens.report.reward_models import load_results, write_reward_model_report

start_job(snakemake.log[0])
files = dict(snakemake.input.items())


def named(prefix):
    return {k.removeprefix(prefix): v for k, v in files.items() if k.startswith(prefix)}


accuracy = {name: Path(path) / "accuracy.json" if Path(path).is_dir() else path
            for name, path in named("accuracy_").items()}
sarm = named("sarm_")
results = load_results(accuracy=accuracy, comparison=sarm.get("comparison"), attribution=sarm.get("attribution"),
                       shift=sarm.get("shift"), recovery=sarm.get("recovery"),
                       latent_explanations=sarm.get("autointerp"), policy_features=named("features_"),
                       policies={r: (e, files[f"figure_{r}"]) for r, e in named("eval_").items()})
write_reward_model_report(snakemake.wildcards.run, results, snakemake.output.md)
