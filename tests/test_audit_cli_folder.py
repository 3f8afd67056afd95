"""The audit commands name a folder given as the audit database as a folder."""

import pytest

from edge.cli import main


@pytest.mark.parametrize("argv", [
    ["audit", "verify"], ["audit", "show"], ["retention", "--max-age-days", "30"],
    ["gate", "--registry", "demo", "--broker", "mqtt://u:p@127.0.0.1:1", "--audit"],
])
def test_a_folder_given_as_the_audit_database_is_named_as_one(tmp_path, capsys, argv):
    """Before: 'no such file' for a folder that plainly exists (verify, show, retention), or
    SQLite's 'unable to open database file' (gate)."""
    assert main([*argv, str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"audit database {tmp_path}: is a folder; name a file, e.g. {tmp_path / 'audit.db'}" in err


def test_an_unreachable_postgres_audit_is_one_line(capsys):
    """libpq's message ran over two lines ('Connection refused' / '\\tIs the server running...')."""
    pytest.importorskip("psycopg")
    assert main(["audit", "verify", "postgresql://postgres@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "audit database 127.0.0.1:1/x: connection failed" in err
    assert "Is the server running" in err


def test_retention_help_says_what_max_age_days_removes(capsys):
    with pytest.raises(SystemExit):
        main(["retention", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "remove the read data (plate, read id, capture time) of records captured more than this many days ago" in out
