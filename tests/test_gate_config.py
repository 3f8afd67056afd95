"""Gate settings (ids that end up in MQTT topics, batching) are checked before anything connects or
is created.

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


@pytest.mark.parametrize("field, value", [("batch_wait_s", 0), ("batch_wait_s", -0.005), ("batch_wait_s", float("nan")),
                                          ("batch_size", 0), ("batch_size", -3)])
def test_batch_settings_that_would_spin_or_stop_the_gate_are_refused(field, value):
    """Before: a zero wait spun the gate's loop at full CPU while idle; a negative one stopped the
    gate once connected ("'timeout' must be a non-negative number")."""
    with pytest.raises(ValueError, match=field):
        GateConfig(**{field: value})


def test_ordinary_gate_ids_and_groups_are_accepted():
    GateConfig(gate_id="gate-1", shared_group="gates")
    GateConfig(gate_id="Site_2.gate", shared_group=None)


@pytest.mark.parametrize("args, named", [(["--shared-group", "gates/site1"], "shared_group"),
                                         (["--gate-id", "g#"], "gate_id"), (["--batch-ms", "0"], "--batch-ms")])
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
