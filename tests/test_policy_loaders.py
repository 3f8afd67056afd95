"""Registry, policy and holds files: a key given twice is an error, and every YAML error is one line.

Before: PyYAML kept the last of two equal keys silently (a second `purposes:` block replaced the
first, dropping its refusals; a second `kind:` line changed an agency's kind), and its errors were
printed over several lines, quoting the file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import TEST_REGISTRY
from edge.policy.policy import PolicyError, compile_decisions, load_policy
from edge.policy.registry import RegistryError, load_registry
from edge.policy.retention import RetentionError, load_holds

POLICY_TWO_PURPOSES = """\
format: 1
policy: two-purposes
version: 1
recipients: {kinds: [local, state], jurisdictions: [CA]}
purposes:
  allowed: [criminal-investigation]
  refused: {immigration-enforcement: California Values Act}
purposes:
  allowed: [criminal-investigation, immigration-enforcement]
"""


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=60)


def test_a_policy_with_a_key_twice_is_refused_naming_key_and_line(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_TWO_PURPOSES)
    with pytest.raises(PolicyError, match=r"duplicate key 'purposes' \(line 8"):
        load_policy(path)
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(TEST_REGISTRY))
    r = cli("policy", str(reg), "--policy", str(path))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "duplicate key 'purposes'" in r.stderr


def test_an_agency_with_a_key_twice_is_refused(tmp_path):
    text = yaml.safe_dump(TEST_REGISTRY, sort_keys=False)
    # the federal agency's kind given a second time, as if to make it local
    text = text.replace("kind: federal\n", "kind: federal\n  kind: local\n", 1)
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match="duplicate key 'kind'"):
        load_registry(path)


def test_a_hold_with_a_key_twice_is_refused(tmp_path):
    path = tmp_path / "holds.yaml"
    path.write_text("holds:\n  - plate: 7ABC123\n    plate: 7XYZ999\n    reason: case 1\n")
    with pytest.raises(RetentionError, match="duplicate key 'plate'"):
        load_holds(path)


def test_merge_keys_still_share_fields(tmp_path):
    """`<<: *anchor` followed by keys that override the anchor's is not a duplicate."""
    path = tmp_path / "registry.yaml"
    anchored = """\
gate: {username: alpr-gate, credentials: "file:g"}
agencies:
  - &ca {id: a1, name: A1, kind: local, jurisdiction: CA, purpose: criminal-investigation, username: a1, credentials: "file:a1"}
  - {<<: *ca, id: a2, name: A2, username: a2, credentials: "file:a2"}
"""
    path.write_text(anchored)
    registry = load_registry(path)
    assert [(a.id, a.kind.value, a.jurisdiction) for a in registry.agencies] == [("a1", "local", "CA"), ("a2", "local", "CA")]
    assert compile_decisions(load_policy(), registry).allowed_by_owner["a1"] == ("a1", "a2")


@pytest.mark.parametrize("text", ["gate:\n  username: x\n bad: [\n", "a: b: c\n", "agencies: [\n", "x: \"unterminated\n"])
def test_yaml_syntax_errors_are_one_line(tmp_path, text):
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    for args in (["policy", str(path)], ["broker-config", str(path), "--out", str(tmp_path / "out")]):
        r = cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not valid YAML" in lines[0] and "(line " in lines[0], r.stderr


def test_a_policy_version_the_forwarded_read_cannot_carry_is_refused(tmp_path):
    """Before: version 2026112701 loaded, and every agency receiver refused every read the gate
    forwarded under it ('policy' must be NAME@ and at most 9 digits)."""
    import json

    from edge.policy.audit import SQLiteAuditStore
    from edge.policy.gate import Gate, GateConfig
    from edge.policy.policy import parse_policy
    from edge.schema import parse_forwarded
    from edge.transport import mqtt as transport
    from test_security_hostile import REGISTRY, FakeClient, base_read

    data = load_policy().model_dump(mode="json")
    with pytest.raises(PolicyError, match="version"):
        parse_policy(dict(data, version=2026112701))
    # the largest version allowed is one every receiver accepts
    store = SQLiteAuditStore(tmp_path / "audit.db")
    gate = Gate(REGISTRY, parse_policy(dict(data, version=999_999_999)), transport.parse_broker_url("mqtt://127.0.0.1:9"),
                store, GateConfig(status_every_s=0))
    gate._client = gate._fwd = FakeClient()  # noqa: SLF001
    gate.process_batch([(1, 1, "alpr/raw/cam-1", json.dumps(base_read()).encode())])
    store.close()
    published = gate._client.published  # noqa: SLF001
    assert len(published) == 2
    for _topic, payload in published:
        assert parse_forwarded(payload).policy == "ca-sb34@999999999"
