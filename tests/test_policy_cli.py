"""broker-config, gate, audit and policy commands as a new user types them."""

import sqlite3

import pytest

from edge.cli import main
from edge.policy.tls import write_tls_bundle

REGISTRY = "examples/registry.yaml"


def test_broker_config_writes_tls_files_mosquitto_finds_from_its_folder(tmp_path, monkeypatch, capsys):
    """Mosquitto is started from --out; before, --tls-cert tls/server.crt (relative to where
    broker-config ran) was written as is and Mosquitto failed ('BIO routines::no such file')."""
    monkeypatch.chdir(tmp_path)
    write_tls_bundle("tls")
    assert main(["broker-config", "demo",
                 "--out", "broker", "--auth", "acl-file", "--tls-port", "8883", "--tls-cert", "tls/server.crt",
                 "--tls-key", "tls/server.key", "--tls-ca", "tls/ca.crt"]) == 0
    conf = (tmp_path / "broker" / "conf.d" / "50-tls.conf").read_text()
    for key, name in (("certfile", "server.crt"), ("keyfile", "server.key"), ("cafile", "ca.crt")):
        assert f"{key} {tmp_path / 'tls' / name}\n" in conf


def test_broker_config_warns_of_a_tls_file_not_on_this_machine(tmp_path, monkeypatch, capsys):
    """A configuration may be written for another machine: said, not refused."""
    monkeypatch.chdir(tmp_path)
    write_tls_bundle("tls")
    assert main(["broker-config", "demo", "--out", "broker", "--auth", "acl-file", "--tls-port", "8883",
                 "--tls-cert", "tls/server.crt", "--tls-key", "tls/nokey.pem"]) == 0
    err = capsys.readouterr().err
    assert f"warning: --tls-key {tmp_path / 'tls' / 'nokey.pem'}: no such file on this machine" in err
    assert "--tls-cert" not in err


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_gate_run_for_must_be_a_positive_time(capsys, value):
    """Before: 0 and nan ran the gate until killed, a negative value stopped it at once."""
    assert main(["gate", "--registry", "demo", "--broker", "mqtt://u:p@127.0.0.1:1", "--run-for", value]) == 2
    assert f"--run-for {float(value):g}: must be more than 0 seconds" in capsys.readouterr().err


def test_audit_show_on_a_missing_file_exits_2_as_verify_and_retention(tmp_path, capsys):
    for argv in (["audit", "show"], ["audit", "verify"], ["retention", "--max-age-days", "1"]):
        assert main([*argv, str(tmp_path / "none.db")]) == 2
        assert f"no audit database {tmp_path / 'none.db'}" in capsys.readouterr().err


def test_audit_verify_prints_each_problem_once(tmp_path, capsys):
    from edge.demo.run import demo_registry, run_demo, synthetic_reads

    db = tmp_path / "audit.db"
    run_demo(synthetic_reads(demo_registry(), 8), audit_path=str(db), with_forgeries=False)
    c = sqlite3.connect(db)
    c.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET plate = 'EDITED1' WHERE seq IN (2, 3, 4, 5, 6, 7);")
    c.commit()
    c.close()
    capsys.readouterr()
    assert main(["audit", "verify", str(db)]) == 1
    out = capsys.readouterr().out
    for seq in (2, 3, 4, 5, 6, 7):
        assert out.count(f"record {seq}: content does not match its hash") == 1, out


def test_policy_help_says_what_its_arguments_are(capsys):
    with pytest.raises(SystemExit):
        main(["policy", "--help"])
    out = capsys.readouterr().out
    assert "registry YAML ('demo': the demo's registry)" in out and "policy file or shipped policy name" in out
