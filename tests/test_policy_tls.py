"""tls-certs input that would have made unusable certificates, or replaced the CA clients trust."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.policy.tls import write_tls_bundle


@pytest.mark.parametrize("days", [0, -5, 10_000_000])
def test_days_out_of_range_are_refused_naming_the_option(tmp_path, days):
    """Before: 0 wrote certificates that had already expired (exit 0); 10 million: OverflowError traceback."""
    r = subprocess.run([sys.executable, "-m", "edge.cli", "tls-certs", "--out", str(tmp_path / "tls"),
                        "--days", str(days)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"alpr-edge tls-certs: error: --days {days}: must be 1 to 36500"]
    assert not (tmp_path / "tls" / "server.crt").exists()


def test_a_ca_whose_key_is_kept_offline_is_never_replaced(tmp_path):
    """Before: with ca.key moved offline (as the module advises), a second run made a new CA and
    overwrote ca.crt, so certificates it issued failed on every client that trusts the old one."""
    out = tmp_path / "tls"
    first = write_tls_bundle(out, clients=["cam-1"])
    ca_pem = first.ca_cert.read_bytes()
    offline = first.ca_key.read_bytes()
    first.ca_key.unlink()
    with pytest.raises(ValueError, match="ca.key does not"):
        write_tls_bundle(out, clients=["cam-2"])
    assert first.ca_cert.read_bytes() == ca_pem and not (out / "clients" / "cam-2.crt").exists()
    # another CA's key next to this ca.crt: refused too
    other = write_tls_bundle(tmp_path / "other")
    first.ca_key.write_bytes(other.ca_key.read_bytes())
    with pytest.raises(ValueError, match="not the key of ca.crt"):
        write_tls_bundle(out, clients=["cam-2"])
    # the key back: new certificates from the same CA
    first.ca_key.write_bytes(offline)
    again = write_tls_bundle(out, clients=["cam-2"])
    assert again.ca_cert.read_bytes() == ca_pem and (out / "clients" / "cam-2.crt").exists()
