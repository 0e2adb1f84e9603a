# The learned reward models of the run on one page: both RMs against the overseer side by side, SARM's
# reward-carrying latents next to the policy features that changed, preference shift, overseer recovery
# and the over-optimisation curves (results/{run}/report/reward_models.md). Runs with preference pairs.


rule reward_model_report:
    """results/{run}/report/reward_models.md from every learned reward model's results."""
    input:
        unpack(reward_model_report_inputs),
    output:
        md=report("results/{run}/report/reward_models.md", category="reward models",
                  labels={"what": "learned reward models"}),
    log:
        "logs/{run}/report/reward_models.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/reward_model_report.py"


if preferences_enabled(config):
    ALL_TARGETS += expand(rules.reward_model_report.output.md, run=RUN)
