"""Measured numbers live in records: writing one, rendering the docs and README from them, and the check
that the committed docs/results.md and README table are exactly what the records give."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlhf_lens.cli import main
from rlhf_lens.records import (END, START, RecordError, format_value, load_records, render_all,
                               render_readme_table, validate_record, write_record)

REPO = Path(__file__).resolve().parents[1]
ENV = {"platform": "Linux", "python": "3.11.2", "cpu_model": "Planted CPU", "cpu_family": "6",
       "cpu_model_number": "207", "cpu_flags": ["avx2", "amx_bf16"], "cores": 2, "aten_cpu_capability": "AVX512",
       "gpus": [], "cuda": None, "versions": {"torch": "2.13.0", "sae-lens": None}, "commit": "abc1234",
       "dirty": False}


def tiny_repo(tmp_path: Path) -> Path:
    (tmp_path / "README.md").write_text(f"# x\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    return tmp_path


def test_committed_results_are_rendered_from_the_records():
    """Edit a record, then run `rlhf-lens results`: docs/results.md and README's table must match it."""
    assert render_all(REPO, check=True) == [], "run `.venv/bin/rlhf-lens results` and commit the output"
    assert main(["results", "--root", str(REPO), "--check"]) == 0


def test_every_record_is_complete():
    records = load_records(REPO)
    assert len(records) >= 10
    assert any(v.get("headline") for r in records for v in r["values"])
    names = {r["name"] for r in records}
    assert {"sae_vs_saelens", "ppo_vs_trl", "default_run", "calibration"} <= names


def test_write_record_then_render(tmp_path):
    root = tiny_repo(tmp_path)
    values = [{"name": "speed-up", "value": 1.93, "decimals": 2, "unit": "x", "headline": 1},
              {"name": "EV difference", "value": -0.0003, "ci": [-0.0009, 0.0004], "decimals": 4, "signed": True}]
    path = write_record("planted", "A planted measurement", "what it measured", "python x.py --seed 0", values,
                        root=root, env=ENV)
    record = json.loads(path.read_text())
    assert path == root / "docs/results/records/planted.json"
    assert record["commit"] == "abc1234" and record["machine"]["cpu_model"] == "Planted CPU"
    assert record["versions"] == {"torch": "2.13.0", "sae-lens": None} and "versions" not in record["machine"]
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no temporary left behind
    stale = render_all(root)
    assert sorted(p.name for p in stale) == ["README.md", "results.md"]
    readme = (root / "README.md").read_text()
    assert "old table" not in readme and readme.startswith("# x\n\nbefore\n") and readme.endswith("after\n")
    assert "| speed-up | **1.93x** | Planted CPU (family 6 model 207, AMX), 2 cores, no GPU; abc1234, " in readme  # the CPU model and its widest float kernels: numbers move between CPU models
    assert "EV difference" not in readme  # not a headline value
    page = (root / "docs/results.md").read_text()
    assert "| EV difference | -0.0003 [-0.0009, 0.0004] |" in page and "amx_bf16" in page and "AVX512" in page
    assert render_all(root, check=True) == []
    # one changed number in a record makes the check fail until rendered again
    record["values"][0]["value"] = 1.94
    path.write_text(json.dumps(record))
    assert len(render_all(root, check=True)) == 2
    assert main(["results", "--root", str(root), "--check"]) == 1
    assert main(["results", "--root", str(root)]) == 0 and render_all(root, check=True) == []


def test_malformed_records_are_refused(tmp_path):
    good = {"name": "r", "title": "t", "measured": "m", "command": "c", "commit": None, "date": "2026-12-07",
            "machine": {}, "versions": None, "values": [{"name": "v", "value": 1}]}
    validate_record(good)
    for broken in ({k: v for k, v in good.items() if k != "command"},
                   {**good, "date": "yesterday"},
                   {**good, "values": []},
                   {**good, "values": [{"name": "v", "value": 1, "ci": [2, 1]}]}):
        with pytest.raises(RecordError):
            validate_record(broken)
    root = tiny_repo(tmp_path)
    folder = root / "docs/results/records"
    folder.mkdir(parents=True)
    (folder / "other.json").write_text(json.dumps(good))
    with pytest.raises(RecordError, match="differs from the file name"):
        load_records(root)
    (root / "README.md").write_text("no markers\n")
    shutil.move(folder / "other.json", folder / "r.json")
    with pytest.raises(RecordError, match="markers"):
        render_all(root)


def test_format_value():
    assert format_value({"name": "g", "value": 1.27, "ci": [1.14, 1.4], "decimals": 2, "signed": True}) \
        == "+1.27 [1.14, 1.40]"
    assert format_value({"name": "ev", "value": [0.62, 0.907], "decimals": 3}) == "0.620-0.907"
    assert format_value({"name": "n", "value": "0 of 10"}) == "0 of 10"
    assert format_value({"name": "t", "value": 36208, "unit": "tokens/s"}) == "36,208 tokens/s"
    assert render_readme_table([]).startswith(START)


def test_experiment_configs_table(tmp_path):
    """Records with an experiment fill the README's configs table, in their order, with their measured time."""
    from rlhf_lens.records import CONFIGS_END, CONFIGS_START

    root = tiny_repo(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text() + f"{CONFIGS_START}\n{CONFIGS_END}\n")
    for order, name in ((2, "second"), (1, "first")):
        path = write_record(name, name, "m", "c", [{"name": "wall", "value": 10 * order, "unit": "min"}], root=root,
                            env=ENV)
        record = json.loads(path.read_text())
        record["experiment"] = {"order": order, "config": f"configs/{name}.yaml", "asks": f"asks {name}",
                                "results": f"results/{name}/", "time": "wall"}
        path.write_text(json.dumps(record))
    render_all(root)
    text = readme.read_text()
    first, second = text.index("`configs/first.yaml` | asks first | 10 min"), text.index("`configs/second.yaml`")
    assert first < second and "20 min" in text[second:]
    record["experiment"]["time"] = "no such value"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match="names no one value"):
        render_all(root)
