"""`alpr-edge sim` argument errors: one line naming the argument, before any camera starts."""

import argparse

import pytest
import yaml

from edge.node.sim import plan_cameras


def _args(**kw):
    base = dict(registry=None, secrets=None, cameras=None, agency_id="sac-pd", camera_prefix="cam",
                broker="mqtt://{camera}:{password}@127.0.0.1:1884", passwords=None)
    return argparse.Namespace(**{**base, **kw})


def test_negative_camera_count_with_a_registry_is_refused(tmp_path):
    from conftest import TEST_REGISTRY

    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(TEST_REGISTRY))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for c in TEST_REGISTRY["cameras"]:
        f = secrets / c["credentials"].split(":", 1)[1]
        f.write_text("pw\n")
        f.chmod(0o600)
    args = _args(registry=str(reg), secrets=str(secrets), broker="mqtt://127.0.0.1:1884", agency_id=None)
    assert len(plan_cameras(args)) == 3
    # before: cameras[:-1], every camera of the registry but the last, started without a word
    with pytest.raises(ValueError, match="--cameras -1"):
        plan_cameras(_args(**{**vars(args), "cameras": -1}))


@pytest.mark.parametrize("text, says", [("cam-1: [a\n", r"line 2"), ("- a\n", "expected a mapping")])
def test_a_bad_passwords_file_is_one_error_line(tmp_path, text, says):
    pw = tmp_path / "pw.yaml"
    pw.write_text(text)
    # before: a YAML syntax error was a traceback
    with pytest.raises(ValueError, match=f"--passwords {pw}: .*{says}"):
        plan_cameras(_args(cameras=1, passwords=str(pw)))
