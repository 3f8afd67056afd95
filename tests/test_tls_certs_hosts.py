"""`alpr-edge tls-certs --host`: only names a client can connect by go into the broker's certificate,
and a wrong one is refused before anything is written."""

import pytest

from edge.cli import main


@pytest.mark.parametrize("host, hint", [
    ("broker.example:8883", "no port"),  # before: written as a DNS name no client ever matches
    ("[::1]:8883", "no port"),
    ("mqtt://broker.example", "not a URL"),
    ("bücher.de", "xn--"),  # before: cryptography's message, naming no flag
    ("a..b", "not a DNS name"),
    ("-lead.example", "not a DNS name"),
    ("x" * 64 + ".example", "not a DNS name"),  # a label is at most 63 characters
])
def test_a_host_no_client_can_match_is_refused_before_anything_is_written(tmp_path, capsys, host, hint):
    out = tmp_path / "tls"
    assert main(["tls-certs", "--out", str(out), "--host", "localhost", f"--host={host}"]) == 2
    err = capsys.readouterr().err
    assert f"--host {host!r}: not a DNS name or IP address" in err and hint in err
    assert not out.exists()  # no CA made for a command that failed


@pytest.mark.parametrize("host", ["broker.example", "*.example.net", "xn--bcher-kva.de", "gate_1.lan", "10.0.0.5",
                                  "::1", "localhost"])
def test_names_and_addresses_clients_connect_by_are_taken(tmp_path, capsys, host):
    from cryptography import x509

    assert main(["tls-certs", "--out", str(tmp_path / "tls"), "--host", host]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [str(v) for v in san.get_values_for_type(x509.IPAddress)] + san.get_values_for_type(x509.DNSName)
    assert names == [host]


def test_the_broker_config_hint_names_the_files_from_anywhere(tmp_path, capsys, monkeypatch):
    """Mosquitto is started from broker-config's --out folder: the hint's relative paths
    (--out tls: tls/server.crt) were not found there ('BIO routines::no such file')."""
    monkeypatch.chdir(tmp_path)
    assert main(["tls-certs", "--out", "tls"]) == 0
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    assert hint.startswith("broker: alpr-edge broker-config REGISTRY --tls-port 8883 ")
    for flag, name in (("--tls-cert", "server.crt"), ("--tls-key", "server.key"), ("--tls-ca", "ca.crt")):
        assert f"{flag} {tmp_path / 'tls' / name}" in hint


def test_no_certificate_outlives_its_ca(tmp_path):
    """Before: a new CA lived 10 years whatever --days said, and a kept CA with a year left issued
    10-year certificates: both stop verifying when the CA expires."""
    from cryptography import x509

    from edge.policy.tls import write_tls_bundle

    def end(path):
        return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc

    long = write_tls_bundle(tmp_path / "long", days=36500)
    assert end(long.server_cert) <= end(long.ca_cert)
    short_ca = write_tls_bundle(tmp_path / "short", days=30, ca_days=60)
    with pytest.raises(ValueError, match=r"--days 365: the CA in .* expires on .* use --days (59|60) or less"):
        write_tls_bundle(tmp_path / "short", days=365)
    again = write_tls_bundle(tmp_path / "short", days=50)  # within the CA's life: issued
    assert end(again.server_cert) <= end(short_ca.ca_cert)
