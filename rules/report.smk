# Report stage: feature cards, the SAE metrics table and plots per reward, and results/{run}/summary.md.
# `snakemake --report results/{run}/report.html` gathers every output marked with report().


rule report_assets:
    """Per reward: a feature card per selected feature, the SAE metrics table, MMCS against its noise floor."""
    input:
        autointerp=autointerp_tables,
        scores=rules.scoring.output.table,
        stats=rules.scoring.output.stats,
        sae=sae_folders,
        features=rules.features_summary.output.table,
    output:
        cards=report("results/{run}/report/{reward}/feature_cards.html", category="feature cards",
                     subcategory="{reward}", labels={"reward": "{reward}", "what": "feature cards"}),
        sae=report("results/{run}/report/{reward}/sae_metrics.csv", category="SAEs", subcategory="{reward}",
                   labels={"reward": "{reward}", "what": "SAE metrics"}),
        mmcs=report("results/{run}/report/{reward}/mmcs_vs_seed_baseline.png", category="features",
                    subcategory="{reward}", labels={"reward": "{reward}", "what": "MMCS vs seed baseline"}),
        utilities=report("results/{run}/report/{reward}/utilities.png", category="Table 3", subcategory="{reward}",
                         labels={"reward": "{reward}", "what": "utilities base vs RLHF"}),
    log:
        "logs/{run}/report/{reward}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/report_assets.py"


rule summary:
    """The headline numbers of the run in words (results/{run}/summary.md), every interpreted reward."""
    input:
        unpack(summary_inputs),
    output:
        summary="results/{run}/summary.md",
    params:
        rewards=INTERPRETED,
        diffing_methods=DIFFING_METHODS,
    log:
        "logs/{run}/summary.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/summary.py"


ALL_TARGETS += expand(rules.summary.output.summary, run=RUN)
ALL_TARGETS += expand(rules.report_assets.output.cards, run=RUN, reward=INTERPRETED)


# The report opens with what the policy learned (report/workflow.rst): the category name is also what the
# report's menu lists, alphabetically.
LEARNED = "What the policy learned"


rule learned_report:
    """Per reward, the diffing readouts for the report: one row per method (every metric with its CI, the base
    rate, the top words) and each method's depth profile (methods that have one)."""
    input:
        unpack(learned_report_inputs),
    output:
        table=report("results/{run}/report/{reward}/learned.csv", category=LEARNED, subcategory="{reward}",
                     labels={"reward": "{reward}", "what": "readout per method"}),
        depth=report(directory("results/{run}/report/{reward}/depth_profiles"), patterns=["{method}.png"],
                     category=LEARNED, subcategory="{reward}",
                     labels={"reward": "{reward}", "what": "depth profile: {method}"}),
    params:
        methods=DIFFING_METHODS,
    log:
        "logs/{run}/report/{reward}_learned.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/learned_report.py"


if DIFFING_METHODS:
    ALL_TARGETS += expand(rules.learned_report.output.table, run=RUN, reward=INTERPRETED)


rule calibration:
    """Reward gain next to every measure of the method, one row per reward strength (calibration.rewards)."""
    input:
        unpack(calibration_inputs),
    output:
        table="results/{run}/calibration/table.parquet",
        md=report("results/{run}/calibration/table.md", category="calibration", labels={"what": "table"}),
        figure=report("results/{run}/calibration/figure.png", category="calibration", labels={"what": "figure"}),
    params:
        rewards=config["calibration"]["rewards"],
        # the table each arm was trained on: planted ones (secret, vader_shuffled) are marked in table and figure
        tables={r: config["rewards"][r].get("table") for r in config["calibration"]["rewards"]},
    log:
        "logs/{run}/calibration.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/calibration.py"


if config["calibration"]["rewards"]:
    ALL_TARGETS += expand(rules.calibration.output.md, run=RUN)


rule calibration_recovery:
    """Per calibration arm and diffing method, the readout against the arm's own table (and, for the shuffled
    null, against VADER) beside its reward gain: a table and a dose-response figure, nulls marked."""
    input:
        unpack(calibration_recovery_inputs),
    output:
        table="results/{run}/calibration/recovery.parquet",
        md=report("results/{run}/calibration/recovery.md", category="calibration",
                  labels={"what": "recovery by the diffing methods: table"}),
        figure=report("results/{run}/calibration/recovery.png", category="calibration",
                      labels={"what": "recovery by the diffing methods: figure"}),
        learned="results/{run}/calibration/learned_words.parquet",
        depth=report("results/{run}/calibration/depth.png", category="calibration",
                     labels={"what": "from which block each arm's reward is readable"}),
    params:
        rewards=config["calibration"]["rewards"],
        methods=DIFFING_METHODS,
        # the table each arm was trained on: a vader_shuffled arm is also scored against VADER (the null)
        tables={r: config["rewards"][r].get("table") for r in config["calibration"]["rewards"]},
        seed=config["seed"],
    log:
        "logs/{run}/calibration_recovery.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/calibration_recovery.py"


if config["calibration"]["rewards"] and DIFFING_METHODS:
    ALL_TARGETS += expand(rules.calibration_recovery.output.md, run=RUN)
