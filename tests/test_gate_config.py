"""Gate settings that end up in MQTT topics are checked before anything connects or is created.

Before: `--shared-group a/b` subscribed `$share/a/b/alpr/raw/#` (group 'a', filter 'b/alpr/raw/#'):
the gate ran without an error and received no read; `--shared-group x+` or `--gate-id g#` failed
only after 10 s as "no CONNACK"."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import TEST_REGISTRY
from edge.policy.gate import GateConfig


@pytest.mark.parametrize("field, value", [("shared_group", "a/b"), ("shared_group", "x+"), ("shared_group", "#"),
                                          ("shared_group", ""), ("gate_id", "g#"), ("gate_id", "a/b"),
                                          ("gate_id", "g 1"), ("gate_id", "")])
def test_topic_syntax_in_gate_id_or_group_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        GateConfig(**{field: value})


def test_ordinary_gate_ids_and_groups_are_accepted():
    GateConfig(gate_id="gate-1", shared_group="gates")
    GateConfig(gate_id="Site_2.gate", shared_group=None)


@pytest.mark.parametrize("args, named", [(["--shared-group", "gates/site1"], "shared_group"),
                                         (["--gate-id", "g#"], "gate_id")])
def test_gate_cli_names_the_bad_setting_before_connecting(tmp_path, args, named):
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(TEST_REGISTRY))
    audit = tmp_path / "audit.db"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "gate", "--registry", str(reg), "--audit", str(audit),
                        "--broker", "mqtt://alpr-gate:pw@127.0.0.1:9", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alpr-edge gate") and named in lines[0]
    assert not audit.exists()
