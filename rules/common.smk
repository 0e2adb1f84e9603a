# Shared by all rules: config validation (before any job), names from the validated
# config, resource declarations. Rules live in the other files, wildcard constraints in the Snakefile.

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # a checkout works without pip install -e
from rlhf_lens.config import ConfigError, rule_resources, validate_config


def _config_source():
    files = [str(f) for f in workflow.configfiles] or ["(no config file)"]
    extra = " + --config overrides" if workflow.config_settings.overwrite_config else ""
    return ", ".join(files) + extra


try:
    _validated = validate_config(
        config,
        source=_config_source(),
        schema_path=Path(workflow.basedir) / "schemas" / "config.schema.yaml",
    )
except ConfigError as _err:
    # One readable message and a non-zero exit, instead of a traceback through the Snakefile.
    print(f"rlhf-lens: {_err}", file=sys.stderr)
    sys.exit(1)
config.clear()
config.update(_validated)

RUN = config["run"]
MODEL = config["model"]["name"]
REWARDS = list(config["rewards"])
SPLITS = ["train", "eval"]

# Each stage's rules file appends the artifacts `rule all` builds by default.
ALL_TARGETS = []


def model_dir(name=MODEL):
    """Folder of a prepared model."""
    return f"resources/models/{name}"


def threads_for(rule_name):
    return rule_resources(config, rule_name).threads


def resources_for(rule_name):
    """Declared resources: gpu from config (0 on CPU), mem_mb and runtime scaled by attempt.

    Executors read these: the SLURM plugin turns gpu=N into --gpus, mem_mb into --mem and
    runtime (minutes) into --time; retries (attempt > 1) ask for more memory and time.
    """
    res = rule_resources(config, rule_name)
    return {
        "gpu": res.gpu,
        "mem_mb": lambda wildcards, attempt: res.mem_mb * attempt,
        "runtime": lambda wildcards, attempt: res.runtime * attempt,
    }



def check_rule_overrides(rule_names):
    """Fail before any job if resources.per_rule names a rule the workflow does not have."""
    unknown = sorted(set(config["resources"]["per_rule"]) - set(rule_names))
    if unknown:
        print(
            f"rlhf-lens: invalid configuration in {_config_source()}:\n"
            + "\n".join(
                f"  - key 'resources.per_rule.{name}' names no rule: expected one of "
                + ", ".join(sorted(rule_names))
                for name in unknown
            ),
            file=sys.stderr,
        )
        sys.exit(1)
