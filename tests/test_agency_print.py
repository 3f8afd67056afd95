"""`alpr-edge agency receive --print` prints each stored read (not only its id), including the reads
stored while the receiver stops."""

import json

import pytest

import edge.agency.receiver as receiver_mod
import edge.demo.run  # noqa: F401  bound to the real AgencyReceiver before a test swaps it ('--registry demo' imports it)
from edge.cli import main


class FakeReceiver:
    """Stores one read when started and one more while it stops (its last batch), like the real one."""

    def __init__(self, agency_id, broker, inbox, **kw):
        self.agency_id, self.inbox, self.error = agency_id, inbox, None
        self.topic = f"alpr/share/{agency_id}/reads"

    def _store(self, n):
        row = (f"read{n:012d}", f"7ABC{n:03d}", "oak-cam-1", "oakland-pd", "2026-11-27T10:00:00+00:00",
               "2026-11-27T10:00:01+00:00", "ca-sb34@1", "allow:in-jurisdiction-public-agency", b"{}")
        self.inbox.add([row], [])

    def start(self):
        self._store(1)
        return self

    def stop(self):
        self._store(2)

    def snapshot(self):
        return {"received": 2, "stored": 2, "duplicates": 0, "rejected": 0}


def test_print_gives_each_read_and_the_last_batch(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(receiver_mod, "AgencyReceiver", FakeReceiver)
    inbox = tmp_path / "in box#1.db"  # a path that is no plain URI
    status = main(["agency", "receive", "oakland-pd", "--registry", "demo", "--broker", "mqtt://u:p@127.0.0.1:1",
                   "--inbox", str(inbox), "--run-for", "0.3", "--print"])
    assert status == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["plate"] for x in lines] == ["7ABC001", "7ABC002"]  # before: ids only, and the last batch missing
    assert lines[0] == {"read_id": "read000000000001", "plate": "7ABC001", "camera_id": "oak-cam-1",
                        "owner_agency": "oakland-pd", "captured_at": "2026-11-27T10:00:00+00:00",
                        "received_at": "2026-11-27T10:00:01+00:00", "policy": "ca-sb34@1",
                        "rule": "allow:in-jurisdiction-public-agency"}


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_run_for_must_be_a_positive_time(capsys, value):
    """Before: 0 and nan ran until killed (they meant 'no limit'), a negative value stopped at once."""
    status = main(["agency", "receive", "oakland-pd", "--registry", "demo", "--broker", "mqtt://u:p@127.0.0.1:1",
                   "--run-for", value])
    assert status == 2
    assert f"--run-for {float(value):g}: must be more than 0 seconds" in capsys.readouterr().err
