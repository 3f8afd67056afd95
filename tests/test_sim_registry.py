"""`alpr-edge sim --registry`: the secrets directory defaults as for gate, verify-acl and agency
receive (secrets/ next to the registry), the demo registry is named `demo` as there, and -v reaches
the camera processes."""

import shutil
from urllib.parse import urlsplit

import pytest
import yaml

from edge.cli import build_parser
from edge.node import sim
from edge.policy.brokerconf import write_broker_config
from edge.policy.commands import _load_registry


def _args(*argv):
    return build_parser().parse_args(["sim", *argv])


def test_registry_secrets_default_to_the_folder_next_to_it(tmp_path):
    shutil.copy("examples/registry.yaml", tmp_path / "registry.yaml")
    write_broker_config(_load_registry(str(tmp_path / "registry.yaml")), tmp_path / "broker",
                        secrets_dir=tmp_path / "secrets")
    plan = sim.plan_cameras(_args("--registry", str(tmp_path / "registry.yaml"), "--broker", "mqtt://127.0.0.1:18999"))
    want = (tmp_path / "secrets" / "cam-sac-cam-1.pw").read_text().strip()
    cam, agency, url = plan[0]
    assert (cam, agency) == ("sac-cam-1", "sacramento-pd")
    u = urlsplit(url)
    assert (u.username, u.password, u.port) == ("cam-sac-cam-1", want, 18999)


def test_the_demo_registry_is_named_demo(tmp_path, monkeypatch):
    write_broker_config(_load_registry("demo"), tmp_path / "broker", secrets_dir=tmp_path / "secrets")
    plan = sim.plan_cameras(_args("--registry", "demo", "--secrets", str(tmp_path / "secrets"),
                                  "--broker", "mqtt://127.0.0.1:18999"))
    assert [p[0] for p in plan] == ["oak-cam-1", "oak-cam-2", "alco-cam-1"]


@pytest.mark.parametrize("verbose", [0, 2])
def test_verbosity_reaches_the_camera_processes(monkeypatch, verbose, capsys):
    started = []

    class Proc:
        returncode = 0

        def __init__(self, cmd, **kw):
            started.append(cmd)

        def communicate(self):
            return '{"frames": 1}\n', None

        def poll(self):
            return 0

    monkeypatch.setattr(sim.subprocess, "Popen", Proc)
    args = build_parser().parse_args([*["-v"] * verbose, "sim", "--cameras", "1", "--agency-id", "a",
                                      "--broker", "mqtt://127.0.0.1:18999"])
    assert sim.run_sim(args) == 0
    cmd = started[0]
    assert cmd[cmd.index("edge.cli") + 1: cmd.index("run")] == ["-v"] * verbose


@pytest.mark.parametrize("password", ["p@ss/w:rd%41", "a#b?c d", "plain"])
def test_a_password_with_url_characters_logs_in_as_written(tmp_path, password):
    """Before: pasted raw into the URL, 'p@ss/w:rd%41' failed to parse (the error showing the
    password's tail) and '%41' would have logged in as 'A'."""
    from edge.transport.mqtt import parse_broker_url

    (tmp_path / "pw.yaml").write_text(yaml.safe_dump({"cam-1": password}))
    plan = sim.plan_cameras(_args("--cameras", "1", "--agency-id", "sacramento-pd", "--passwords",
                                  str(tmp_path / "pw.yaml"), "--broker", "mqtt://{camera}:{password}@127.0.0.1:18999"))
    b = parse_broker_url(plan[0][2])
    assert (b.username, b.password, b.host, b.port) == ("cam-1", password, "127.0.0.1", 18999)
