"""`alpr-edge GROUP` without its action shows that group's help (its actions), not the top-level one."""

import pytest

from edge.cli import main


@pytest.mark.parametrize("group, actions", [
    ("audit", ["verify", "show"]),
    ("synth", ["plates", "scene"]),
    ("bench", ["gate", "frames"]),
    ("agency", ["receive"]),
])
def test_a_group_without_its_action_shows_its_own_help(capsys, group, actions):
    assert main([group]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"usage: alpr-edge {group} ")  # before: 'usage: alpr-edge [-h] [-v] COMMAND ...'
    assert all(a in out for a in actions)


def test_an_action_still_runs_its_own_command(tmp_path, capsys):
    assert main(["audit", "verify", str(tmp_path / "none.db")]) == 2
    assert "no audit database" in capsys.readouterr().err


def test_a_postgres_error_while_running_is_one_line(monkeypatch, capsys):
    import edge.policy.commands as commands

    class OperationalError(Exception):
        pass

    OperationalError.__module__ = "psycopg.errors"

    def gate(_args):
        raise OperationalError("consuming input failed: server closed the connection unexpectedly\n"
                               "\tThis probably means the server terminated abnormally\n")

    monkeypatch.setattr(commands, "_gate", gate)
    assert main(["gate", "--registry", "demo"]) == 1
    err = capsys.readouterr().err
    assert err == ("alpr-edge gate: error: database: consuming input failed: server closed the connection "
                   "unexpectedly This probably means the server terminated abnormally\n")
