"""Registry and policy validation, and the decisions ca-sb34 compiles to (no broker needed)."""

from __future__ import annotations

import copy
import os
import stat

import pytest
import yaml

from conftest import TEST_REGISTRY
from edge.policy import policy as pol
from edge.policy.policy import PolicyError, compile_decisions, evaluate, load_policy, parse_policy
from edge.policy.registry import RegistryError, Secrets, load_registry, parse_registry


def registry(**changes):
    data = copy.deepcopy(TEST_REGISTRY)
    for k, v in changes.items():
        data[k] = v
    return parse_registry(data)


def agency(**over):
    a = {"id": "x-pd", "name": "X", "kind": "local", "jurisdiction": "CA", "purpose": "criminal-investigation",
         "username": "x-pd", "credentials": "file:x-pd.pw"}
    a.update(over)
    return a


def with_agencies(*extra):
    return registry(agencies=copy.deepcopy(TEST_REGISTRY["agencies"]) + list(extra))


def test_ca_sb34_on_the_test_registry():
    table = compile_decisions(load_policy("ca-sb34"), registry())
    assert table.policy_label == "ca-sb34@1"
    assert table.allowed_by_owner["sac-pd"] == ("sac-pd", "sac-so")
    assert table.allowed_by_owner["sac-so"] == ("sac-pd", "sac-so")
    assert table.decide("sac-pd", "reno-pd").rule == pol.REFUSE_JURISDICTION
    assert table.decide("sac-pd", "ice").rule == pol.REFUSE_KIND
    assert table.decide("sac-pd", "task-force").rule == pol.REFUSE_ON_BEHALF
    assert not table.decide("sac-pd", "nobody").allowed


@pytest.mark.parametrize(
    "extra, rule",
    [
        (agency(kind="private"), pol.REFUSE_KIND),
        (agency(kind="federal", jurisdiction="CA"), pol.REFUSE_KIND),
        (agency(kind="state", jurisdiction="OR"), pol.REFUSE_JURISDICTION),
        (agency(purpose="immigration-enforcement"), pol.REFUSE_PURPOSE),
        (agency(purpose="curiosity"), pol.REFUSE_UNKNOWN_PURPOSE),
        (agency(on_behalf_of="reno-pd"), pol.REFUSE_ON_BEHALF),  # in-state asking for out-of-state
        (agency(on_behalf_of="task-force"), pol.REFUSE_ON_BEHALF),  # chain ends at the federal agency
        (agency(), pol.ALLOW),
        (agency(kind="state", on_behalf_of="sac-so"), pol.ALLOW),  # on behalf of a CA agency: fine
    ],
)
def test_each_rule(extra, rule):
    reg = with_agencies(extra)
    d = evaluate(load_policy(), reg, "sac-pd", "x-pd")
    assert d.rule == rule, d
    assert d.allowed == (rule == pol.ALLOW)


def test_on_behalf_of_purpose_is_checked_too():
    reg = with_agencies(agency(id="fed-ca", username="fed-ca", kind="state", purpose="immigration-enforcement"),
                        agency(on_behalf_of="fed-ca"))
    assert evaluate(load_policy(), reg, "sac-pd", "x-pd").rule == pol.REFUSE_ON_BEHALF


def test_a_bug_in_a_rule_fails_closed(monkeypatch):
    def broken(policy, a):
        raise KeyError("boom")

    monkeypatch.setattr(pol, "qualifies", broken)
    table = compile_decisions(load_policy(), registry())
    assert all(not d.allowed and d.rule == pol.REFUSE_POLICY_ERROR for d in table.decisions.values())
    assert table.allowed_by_owner["sac-pd"] == ()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"format": 2}, "format"),
        ({"recipients": {"kinds": [], "jurisdictions": ["CA"]}}, "recipients.kinds"),
        ({"recipients": {"kinds": ["local", "martian"], "jurisdictions": ["CA"]}}, "recipients.kinds.1"),
        ({"recipients": {"kinds": ["local"], "jurisdictions": ["California"]}}, "recipients.jurisdictions.0"),
        ({"share_everything": True}, "share_everything"),
        ({"purposes": {"allowed": ["a"], "refused": {"a": "no"}}}, "purposes"),
        ({"version": 0}, "version"),
    ],
)
def test_invalid_policy_names_the_field(change, field):
    data = yaml.safe_load(open(os.path.join(os.path.dirname(pol.__file__), "data", "ca-sb34.yaml")))
    data.update(change)
    with pytest.raises(PolicyError) as err:
        parse_policy(data)
    assert field in str(err.value)


def test_policy_file_errors(tmp_path):
    with pytest.raises(PolicyError, match="no shipped policy"):
        load_policy("no-such-policy")
    bad = tmp_path / "p.yaml"
    bad.write_text("format: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    # The example copy is the shipped policy.
    here = os.path.dirname(__file__)
    assert load_policy(os.path.join(here, "..", "examples", "policy-ca-sb34.yaml")) == load_policy("ca-sb34")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["agencies"].append(dict(d["agencies"][0])), "duplicate agency id"),
        (lambda d: d["cameras"][0].update(agency="nobody"), "operating agency 'nobody'"),
        (lambda d: d["agencies"][0].update(on_behalf_of="nobody"), "on_behalf_of 'nobody'"),
        (lambda d: d["agencies"][1].update(username="sac-pd"), "username(s) used by more than one"),
        (lambda d: d["agencies"][0].update(kind="cartel"), "agencies.0.kind"),
        (lambda d: d["agencies"][0].update(id="sac/pd"), "agencies.0.id"),
        (lambda d: d["agencies"][0].update(credentials="hunter2"), "agencies.0.credentials"),
        (lambda d: d["agencies"][0].update(jurisdiction="ca"), "agencies.0.jurisdiction"),
        (lambda d: d["gate"].update(password="x"), "gate.password"),
    ],
)
def test_invalid_registry_names_the_problem(mutate, message):
    data = copy.deepcopy(TEST_REGISTRY)
    mutate(data)
    with pytest.raises(RegistryError) as err:
        parse_registry(data)
    assert message in str(err.value)


def test_example_registry_loads_and_secrets_are_private(tmp_path):
    reg = load_registry(os.path.join(os.path.dirname(__file__), "..", "examples", "registry.yaml"))
    assert {a.kind.value for a in reg.agencies} == {"local", "state", "federal", "private"}
    s = Secrets(tmp_path / "secrets", generate=True)
    pw = s.password(reg.gate)
    assert len(pw) >= 24 and s.password(reg.gate) == pw  # created once, then read back
    assert stat.S_IMODE((tmp_path / "secrets" / "alpr-gate.pw").stat().st_mode) == 0o600
    with pytest.raises(RegistryError, match="does not exist"):
        Secrets(tmp_path / "empty").password(reg.gate)


def test_env_credentials(monkeypatch):
    reg = parse_registry({**copy.deepcopy(TEST_REGISTRY),
                          "gate": {"username": "alpr-gate", "credentials": "env:GATE_PW"}})
    monkeypatch.delenv("GATE_PW", raising=False)
    with pytest.raises(RegistryError, match="not set"):
        Secrets(None).password(reg.gate)
    monkeypatch.setenv("GATE_PW", "s3cret")
    assert Secrets(None).password(reg.gate) == "s3cret"
