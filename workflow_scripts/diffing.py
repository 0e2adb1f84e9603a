"""Rule diffing: base model + one reward's policy + corpus (+ stores, SAEs) -> diffing/{reward}/{method}/."""

from rlhf_lens.config import diffing_settings
from rlhf_lens.diffing.stage import diffing_job
from rlhf_lens.jobs import start_job
from rlhf_lens.rewards.planted_tables import with_table_file
from rlhf_lens.report.learned import plot_depth_profile

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
inp, w = snakemake.input, snakemake.wildcards
report = diffing_job(
    base_dir=inp.base, policy_dir=inp.policy, corpus_path=inp.corpus, method=w.method,
    settings=diffing_settings(snakemake.config, w.method), out_dir=snakemake.output.folder,
    reward_name=snakemake.params.truth,  # rl.gold when set, else the trained reward
    # a planted table (secret, vader_shuffled) is read from the CSV the policy was trained on
    rewards={snakemake.params.truth: with_table_file(snakemake.config, snakemake.params.truth,
                                                     snakemake.params.truth_spec)},
    seed=snakemake.params.seed, device=device,
    layers_json=inp.get("layers"),
    stores={role: inp[f"store_{role}"] for role in ("base", "rlhf") if f"store_{role}" in inp.keys()},
    sae_dirs={int(k[4:]): inp[k] for k in inp.keys() if k.startswith("sae_")},
    crosscoder_dirs={int(k[11:]): inp[k] for k in inp.keys() if k.startswith("crosscoder_")},
    autointerp_tables={int(k[11:]): inp[k] for k in inp.keys() if k.startswith("autointerp_")},
    # trained methods (diff_sae) keep their dictionaries here, so a rerun or a killed job resumes
    work_dir=f"{snakemake.output.folder}.work",
)
# beside the method's files: the readout per block (methods with a depth profile, given a truth)
plot_depth_profile(report, f"{snakemake.output.folder}/depth_profile.png",
                   title=f"{w.method} on {w.reward}: readout of the difference after each block")
