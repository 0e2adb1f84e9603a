"""The rlhf-lens command line and the generated config reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlhf_lens.cli import config_reference, main
from rlhf_lens.config import load_schema

REPO = Path(__file__).resolve().parents[1]


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "validate" in capsys.readouterr().out


def test_validate_prints_filled_config(capsys):
    assert main(["validate", str(REPO / "config.yaml")]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["resources"]["per_rule"] == {}


def test_validate_reports_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: minus one\n")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "'seed'" in err and "expected an integer" in err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1


def test_config_reference_is_current_and_covers_every_key():
    """docs/config.md must be regenerated (rlhf-lens config-docs > docs/config.md) when the schema changes."""
    schema = load_schema()
    reference = config_reference(schema)
    assert (REPO / "docs" / "config.md").read_text() == reference
    for key in schema["properties"]:
        assert f"| `{key}` |" in reference
    assert "| `rewards.<name>.type` |" in reference
