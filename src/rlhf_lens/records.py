"""Measured numbers as records: one JSON file per measurement, rendered into the docs and the README.

A number typed by hand into prose drifts; a record keeps it with what was measured, the command, the
commit, the date, the machine (``rlhf_lens.environment``) and the library versions, and
``rlhf-lens results`` renders every record into ``docs/results.md`` and the README's table between
``<!-- results:start -->`` and ``<!-- results:end -->``. A test fails when either differs from what
the records give.

A record (``docs/results/records/<name>.json``)::

    {"name": "sae_vs_saelens", "title": "...", "measured": "what was measured, in words",
     "command": "the command that measured it", "commit": "9787bd7" or null, "date": "2026-12-07",
     "machine": {"cpu_model": ..., "cores": 2, "gpus": [...], ...} (the env dict, or what is known),
     "versions": {"torch": "2.13.0", ...} or null, "provenance": "measured" | "from prose: ...",
     "values": [{"name": ..., "value": number | string | [low, high], "ci": [low, high] (optional),
                 "unit": ..., "decimals": int, "signed": bool, "reading": ..., "headline": rank}],
     "notes": "...",
     "experiment": {"order": 1, "config": "configs/x.yaml", "asks": "...", "results": "results/x/...",
                    "time": "<the name of the value that holds its wall time>"} (optional)}

Records with an ``experiment`` also make the README's table of experiment configs (between
``<!-- configs:start -->`` and ``<!-- configs:end -->``), so the time each config takes is a record too.
Values of ``value`` as a pair are a range over several units (blocks, seeds), not an interval.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_file

RECORDS_DIR = Path("docs/results/records")
RESULTS_PAGE = Path("docs/results.md")
README = Path("README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
CONFIGS_START, CONFIGS_END = "<!-- configs:start -->", "<!-- configs:end -->"
REQUIRED = ("name", "title", "measured", "command", "commit", "date", "machine", "versions", "values")
UNKNOWN = "not recorded"


class RecordError(ValueError):
    """A record that lacks a required field or has a malformed value."""


def validate_record(record: dict) -> dict:
    """Check ``record`` has every required field and well-formed values; return it unchanged."""
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise RecordError(f"record {record.get('name', '?')!r} lacks {', '.join(missing)}")
    if not record["values"]:
        raise RecordError(f"record {record['name']!r} has no values")
    for value in record["values"]:
        if "name" not in value or "value" not in value:
            raise RecordError(f"record {record['name']!r}: every value needs a name and a value: {value}")
        ci = value.get("ci")
        if ci is not None and (len(ci) != 2 or not all(isinstance(x, (int, float)) for x in ci) or ci[0] > ci[1]):
            raise RecordError(f"record {record['name']!r}, {value['name']!r}: ci must be [low, high], got {ci}")
    try:
        datetime.date.fromisoformat(record["date"])
    except (TypeError, ValueError) as exc:
        raise RecordError(f"record {record['name']!r}: date must be YYYY-MM-DD, got {record['date']!r}") from exc
    return record


def write_record(name: str, title: str, measured: str, command: str, values: list[dict],
                 root: str | os.PathLike = ".", notes: str = "", env: dict | None = None) -> Path:
    """Write a record of a measurement made now on this machine, atomically; return its path.

    ``env`` defaults to ``rlhf_lens.environment.environment(root)``; commit, versions and machine come from it.
    """
    from .environment import environment

    env = environment(root) if env is None else env
    commit = env.get("commit")
    if commit and env.get("dirty"):
        commit += " (modified)"
    machine = {key: val for key, val in env.items() if key not in ("versions", "commit", "dirty")}
    record = validate_record({
        "name": name, "title": title, "measured": measured, "command": command, "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(), "machine": machine,
        "versions": env.get("versions"), "provenance": "measured", "values": values, "notes": notes,
    })
    path = Path(root) / RECORDS_DIR / f"{name}.json"
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_records(root: str | os.PathLike = ".") -> list[dict]:
    """Every record under ``root``'s records folder, validated, in file-name order."""
    records = []
    for path in sorted((Path(root) / RECORDS_DIR).glob("*.json")):
        record = validate_record(json.loads(path.read_text()))
        if record["name"] != path.stem:
            raise RecordError(f"{path}: name {record['name']!r} differs from the file name")
        records.append(record)
    return records


def _number(x: float, decimals: int | None, signed: bool) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    sign = "+" if signed else ""
    return f"{x:{sign}.{decimals}f}" if decimals is not None else f"{x:{sign},g}" if abs(x) >= 1e4 else f"{x:{sign}g}"


def format_value(value: dict) -> str:
    """A value as the docs print it: ``+1.27 [1.14, 1.40]``, ``0.620-0.907``, ``1.93x``, ``18.8 min``."""
    decimals, signed = value.get("decimals"), value.get("signed", False)
    raw = value["value"]
    if isinstance(raw, list):
        text = "-".join(_number(x, decimals, False) for x in raw)
    else:
        text = _number(raw, decimals, signed)
    if value.get("unit"):
        text += value["unit"] if value["unit"] == "x" else f" {value['unit']}"
    if value.get("ci") is not None:
        low, high = value["ci"]
        text += f" [{_number(low, decimals, False)}, {_number(high, decimals, False)}]"
    return text


def machine_text(machine: dict) -> str:
    """One phrase for a machine: CPU model, cores, GPUs (or what the record says is unknown)."""
    if not machine:
        return UNKNOWN
    cpu = machine.get("cpu_model") or "CPU " + UNKNOWN
    family, number = machine.get("cpu_family"), machine.get("cpu_model_number")
    if family and number and "family" not in cpu:  # the CPU model and the kernels that set its float numerics
        flags = machine.get("cpu_flags") or []
        widest = next((name for name, flag in (("AMX", "amx_bf16"), ("AVX512-BF16", "avx512_bf16"),
                                               ("AVX-512", "avx512f"), ("AVX2", "avx2")) if flag in flags), None)
        cpu += f" (family {family} model {number}{', ' + widest if widest else ''})"
    parts = [cpu]
    if machine.get("cores"):
        parts.append(f"{machine['cores']} cores")
    gpus = machine.get("gpus") or []
    parts.append(", ".join(g["name"] for g in gpus) if gpus else "no GPU")
    return ", ".join(parts)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_readme_table(records: list[dict]) -> str:
    """The README's headline table: every value with a ``headline`` rank (1 first), with where it was measured."""
    lines = [START,
             "| result | value [95% CI] | measured on | record |",
             "|---|---|---|---|"]
    rows = sorted(((value["headline"], index, record, value) for index, record in enumerate(records)
                   for value in record["values"] if value.get("headline")), key=lambda row: row[:2])
    for _, _, record, value in rows:
        where = f"{machine_text(record['machine'])}; {record['commit'] or 'commit ' + UNKNOWN}, {record['date']}"
        reading = f" ({value['reading']})" if value.get("reading") else ""
        lines.append(f"| {_cell(value['name'])} | **{_cell(format_value(value))}**{_cell(reading)} | "
                     f"{_cell(where)} | [{record['name']}](docs/results.md#{record['name'].replace('_', '-')}) |")
    lines.append(END)
    return "\n".join(lines)


def render_results_page(records: list[dict]) -> str:
    """``docs/results.md``: one section per record with its command, commit, date, machine and values."""
    out = ["# Results",
           "",
           "Generated by `rlhf-lens results` from `docs/results/records/*.json`; do not edit by hand.",
           "Each section is one measurement: what was measured, the command, the commit, the date, the machine",
           "and the library versions. Brackets are 95% confidence intervals (the record says over what).",
           "Records whose provenance is *from prose* were moved from the README's text: what it did not",
           f"say is marked *{UNKNOWN}*. `rlhf-lens env` prints what a new record needs to know about a machine.",
           ""]
    if any(r.get("experiment") for r in records):
        out += ["## Experiments", "", "Each config's measured time, from its record below.", "",
                render_configs_table(records, page="", markers=False), ""]
    # headline records first, in the README's order; the rest by name
    first = {r["name"]: min([v["headline"] for v in r["values"] if v.get("headline")] or [10**6]) for r in records}
    for record in sorted(records, key=lambda r: (first[r["name"]], r["name"])):
        versions = record["versions"]
        version_text = ", ".join(f"{k} {v}" for k, v in versions.items() if v) if versions else UNKNOWN
        out += [f'<a id="{record["name"].replace("_", "-")}"></a>', "", f"## {record['title']}", "",
                record["measured"], "",
                "| | |", "|---|---|",
                f"| command | `{_cell(record['command'])}` |",
                f"| commit | {_cell(record['commit'] or UNKNOWN)} |",
                f"| date | {record['date']} |",
                f"| machine | {_cell(machine_text(record['machine']))} |"]
        flags = record["machine"].get("cpu_flags") if record["machine"] else None
        if flags:
            out.append(f"| numeric CPU flags | {' '.join(flags)} |")
        if record["machine"] and record["machine"].get("aten_cpu_capability"):
            out.append(f"| ATen CPU capability | {record['machine']['aten_cpu_capability']} |")
        out += [f"| versions | {_cell(version_text)} |",
                f"| provenance | {_cell(record.get('provenance', 'measured'))} |",
                "", "| what | value | reading |", "|---|---|---|"]
        for value in record["values"]:
            out.append(f"| {_cell(value['name'])} | {_cell(format_value(value))} | {_cell(value.get('reading', ''))} |")
        if record.get("notes"):
            out += ["", record["notes"]]
        out.append("")
    return "\n".join(out)


def render_configs_table(records: list[dict], page: str = "docs/results.md", markers: bool = True) -> str:
    """The table of experiment configs: what each asks, its measured time, where results land.

    ``page`` is the link to the results page from where the table goes (the README: docs/results.md; the page itself: "").
    """
    lines = [CONFIGS_START,
             "| config | what it asks | time on 2 CPU cores | results |",
             "|---|---|---|---|"]
    experiments = sorted((r for r in records if r.get("experiment")), key=lambda r: r["experiment"]["order"])
    for record in experiments:
        exp = record["experiment"]
        timed = [v for v in record["values"] if v["name"] == exp["time"]]
        if len(timed) != 1:
            raise RecordError(f"record {record['name']!r}: experiment time {exp['time']!r} names no one value")
        lines.append(f"| `{exp['config']}` | {_cell(exp['asks'])} | {_cell(format_value(timed[0]))} "
                     f"([{record['name']}]({page}#{record['name'].replace('_', '-')})) | `{exp['results']}` |")
    lines.append(CONFIGS_END)
    return "\n".join(lines if markers else lines[1:-1])


def splice_readme(readme: str, table: str, start_marker: str = START, end_marker: str = END) -> str:
    """``readme`` with the text between two markers (markers included) replaced by ``table``."""
    start, end = readme.find(start_marker), readme.find(end_marker)
    if start < 0 or end < start:
        raise RecordError(f"README lacks the markers {start_marker} ... {end_marker}")
    return readme[:start] + table + readme[end + len(end_marker):]


def render_all(root: str | os.PathLike = ".", check: bool = False) -> list[Path]:
    """Render the results page and the README table from the records under ``root``.

    Returns the files whose text differs from the rendering; rewrites them (atomically) unless ``check``.
    """
    root = Path(root)
    records = load_records(root)
    wanted = {root / RESULTS_PAGE: render_results_page(records)}
    readme = root / README
    text = splice_readme(readme.read_text(), render_readme_table(records))
    if CONFIGS_START in text:
        text = splice_readme(text, render_configs_table(records), CONFIGS_START, CONFIGS_END)
    wanted[readme] = text
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if not check:
        for path in stale:
            with atomic_file(path) as tmp:
                tmp.write_text(wanted[path])
    return stale
