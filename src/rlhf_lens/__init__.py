"""rlhf-lens: see what a language model learned from its reward during RLHF.

Every stage of the Snakemake workflow is a plain function of this package; the workflow's
rule scripts only translate Snakemake's inputs and outputs into calls. The package never
imports Snakemake.
"""

__version__ = "0.1.0"
