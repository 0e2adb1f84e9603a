"""Command line: ``rlhf-lens --help``.

The workflow is run with Snakemake (``snakemake --profile profiles/default``); this command
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .config import DEFAULT_SCHEMA, ConfigError, load_config, load_schema


def _walk(schema: dict, prefix: str = ""):
    """Yield (dotted key, schema) for every documented key, depth first, in file order."""
    for key, sub in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        yield name, sub
        yield from _walk(sub, name + ".")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        yield from _walk(extra, prefix + "<name>.")


def config_reference(schema: dict) -> str:
    """The config reference as markdown: one table row per key with type, default and meaning."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `schemas/config.schema.yaml` by `rlhf-lens config-docs`; do not edit by hand.",
        "Every key is optional: left out, it takes the default below. The config is validated before any job runs.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, sub in _walk(schema):
        kind = sub.get("type", "enum" if "enum" in sub else "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        if "enum" in sub:
            kind = " \\| ".join(map(str, sub["enum"]))
        default = f"`{yaml.safe_dump(sub['default'], default_flow_style=True).strip().removesuffix('...').strip()}`" \
            if "default" in sub else ""
        meaning = " ".join(str(sub.get("description", "")).split())
        lines.append(f"| `{name}` | {kind} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rlhf-lens",
        description="See what a language model learned from its reward during RLHF. "
        "Run the workflow with `snakemake --profile profiles/default`; these commands help around it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_val = sub.add_parser("validate", help="validate a config file and print it with defaults filled in")
    p_val.add_argument("config", nargs="?", default="config.yaml", help="config file (default: config.yaml)")
    p_val.add_argument("--schema", default=str(DEFAULT_SCHEMA), help="JSON schema (default: the project's)")
    p_doc = sub.add_parser("config-docs", help="print the config reference (markdown) generated from the schema")
    p_doc.add_argument("--schema", default=str(DEFAULT_SCHEMA))
    p_prep = sub.add_parser("prepare-model", help="turn a model spec into a plain Hugging Face folder")
    p_prep.add_argument("spec", help="hub id, local folder, .gguf file or package:<pkg>/<file>")
    p_prep.add_argument("out", help="output folder")
    p_prep.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p_prep.add_argument("--trust-remote-code", action="store_true")
    p_env = sub.add_parser("env", help="print the machine, CPU numeric flags, GPU and library versions "
                           "(what a bug report or a measured number needs)")
    p_env.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    p_res = sub.add_parser("results", help="render docs/results.md and the README's results table "
                           "from the records in docs/results/records/")
    p_res.add_argument("--root", default=".", help="repository root (default: the current folder)")
    p_res.add_argument("--check", action="store_true",
                       help="change nothing; exit 1 if a rendered file differs from what the records give")
    p_run = sub.add_parser("record-run", help="write a finished run's headline numbers (what summary.md states) "
                           "as a record, on the machine and checkout that ran it")
    p_run.add_argument("run_dir", help="the run's folder, e.g. results/default")
    p_run.add_argument("--name", required=True, help="record name: docs/results/records/NAME.json")
    p_run.add_argument("--run-command", default="make run", help="the command that ran it (default: make run)")
    p_run.add_argument("--root", default=".", help="repository root (default: the current folder)")
    p_run.add_argument("--notes", default="", help="what the record should say beyond its values, e.g. which "
                                                   "commit trained a policy the run reused")
    p_diff = sub.add_parser("diff", help="read what fine-tuning changed between any two models (no RL): each corpus "
                                         "method's recovered word table, depth profile and, given a truth, readout")
    p_diff.add_argument("--base", required=True, help="base model: a Hugging Face folder (or a hub id when online)")
    p_diff.add_argument("--policy", required=True, help="fine-tuned model, loadable like the base (same tokenizer)")
    p_diff.add_argument("--corpus", required=True, help=".txt (one text a line), .parquet, .csv or .jsonl of texts")
    p_diff.add_argument("--text-column", default="text", help="column of the texts in a table corpus (default: text)")
    p_diff.add_argument("--table", help="optional truth: vader or a word,utility CSV (also the steering overseer)")
    p_diff.add_argument("--methods", help="comma-separated methods (default: the config's methods that need only "
                                          "the two models and the corpus)")
    p_diff.add_argument("--config", help="config file whose diffing: section sets the methods' keys (default: the "
                                         "schema's defaults)")
    p_diff.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    p_diff.add_argument("--out", required=True, help="output folder: one subfolder per method")
    args = parser.parse_args(argv)

    if args.command == "validate":
        try:
            cfg = load_config(args.config, schema_path=args.schema)
        except ConfigError as exc:
            print(f"rlhf-lens: {exc}", file=sys.stderr)
            return 1
        except FileNotFoundError:
            print(f"rlhf-lens: config file {args.config!r} does not exist", file=sys.stderr)
            return 1
        print(yaml.safe_dump(cfg, sort_keys=False), end="")
        return 0
    if args.command == "config-docs":
        print(config_reference(load_schema(args.schema)), end="")
        return 0
    if args.command == "env":
        from .environment import environment, format_environment

        env = environment()
        print(json.dumps(env, indent=2) if args.json else format_environment(env), end="\n" if args.json else "")
        return 0
    if args.command == "results":
        from .records import render_all

        stale = render_all(Path(args.root), check=args.check)
        for path in stale:
            print(f"rlhf-lens: {path} {'differs from' if args.check else 'rendered from'} the records",
                  file=sys.stderr)
        return 1 if args.check and stale else 0
    if args.command == "record-run":
        from .report.run_record import record_run

        print(record_run(args.run_dir, args.name, args.run_command, root=args.root, notes=args.notes))
        return 0
    if args.command == "prepare-model":
        from .logs import setup_logging
        from .models import ModelConfig, prepare_model

        setup_logging()
        prepare_model(ModelConfig(name=Path(args.out).name, spec=args.spec, dtype=args.dtype,
                                  trust_remote_code=args.trust_remote_code), args.out)
        return 0
    if args.command == "diff":
        return _diff(args)
    return 2  # unreachable: argparse requires a command


def _diff(args) -> int:
    """``rlhf-lens diff``: run the corpus-based diffing methods on two given models."""
    import dataclasses

    from .config import diffing_settings, validate_config
    from .devices import pick_device
    from .diffing.registry import available, needs
    from .diffing.stage import diffing_job
    from .logs import setup_logging

    setup_logging()
    try:
        cfg = load_config(args.config) if args.config else validate_config({})
    except (ConfigError, FileNotFoundError) as exc:
        print(f"rlhf-lens: {exc}", file=sys.stderr)
        return 1
    methods = args.methods.split(",") if args.methods else [m for m in cfg["diffing"]["methods"]
                                                           if available(m) and not needs(m)]
    bad = [m for m in methods if not available(m) or needs(m)]
    if bad:
        print(f"rlhf-lens: diff runs methods that need only two models and a corpus; {', '.join(bad)} "
              "is not one of them (or not in this checkout): run it in the workflow", file=sys.stderr)
        return 1
    rewards = {"truth": {"type": "utility_table", "table": args.table}} if args.table else {}
    device = pick_device(args.device)
    for method in methods:
        settings = diffing_settings(cfg, method)
        corpus = dataclasses.replace(settings.corpus, source=args.corpus, text_column=args.text_column)
        report = diffing_job(base_dir=args.base, policy_dir=args.policy, corpus_path=args.corpus, method=method,
                             settings=dataclasses.replace(settings, corpus=corpus), out_dir=Path(args.out) / method,
                             reward_name="truth" if args.table else None, rewards=rewards, device=device)
        line = f"{method}: {Path(args.out) / method}"
        if "readout" in report:
            m = report["readout"]["metrics"]
            line += (f"  Spearman {m['spearman']['value']}, precision@50 {m['precision@50']['value']} "
                     f"(base rate {report['readout']['base_rate']:.3f}), AUROC {m['auroc']['value']}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
