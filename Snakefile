# rlhf-lens: what did a language model learn from its reward during RLHF?
#
#   snakemake --profile profiles/default            the default experiment (config.yaml)
#   snakemake --profile profiles/slurm              the same on a SLURM cluster
#   snakemake results/default/prompts/eval.parquet  rebuild one artifact by its path
#
# The configuration is validated against schemas/config.schema.yaml (defaults filled in)
# before any job is scheduled; all real work lives in the rlhf_lens package (src/).

from snakemake.utils import min_version

min_version("9.0")

configfile: "config.yaml"

report: "report/workflow.rst"

# common.smk validates the config first, then defines the names the rules use.
include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/rl.smk"
include: "rules/preferences.smk"
include: "rules/reward_models.smk"
include: "rules/interp.smk"
include: "rules/crosscoder.smk"
include: "rules/autointerp.smk"
include: "rules/sarm.smk"
include: "rules/shaping.smk"
include: "rules/r2m.smk"
include: "rules/diffing.smk"
include: "rules/report.smk"
include: "rules/rm_report.smk"


wildcard_constraints:
    run=re.escape(RUN),
    model=re.escape(MODEL),
    split="|".join(SPLITS),
    reward="|".join(map(re.escape, REWARDS)),
    role="base|rlhf",
    layer="[0-9]+",
    size="(relu|topk)_[0-9]+x(_seed[0-9]+)?",
    method="[a-z_][a-z0-9_]*",


check_rule_overrides([r.name for r in workflow.rules])


rule all:
    input:
        ALL_TARGETS,
    default_target: True
