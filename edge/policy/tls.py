"""A private certificate authority for the broker's TLS listener: CA, server and client certificates.

`alpr-edge tls-certs --out DIR --host broker.example --host 10.0.0.5 --client cam-1 --client alpr-gate`
writes (keys mode 0600, in a 0700 directory):

    ca.crt, ca.key               the CA (keep ca.key offline; ship ca.crt to every client)
    server.crt, server.key       for Mosquitto's TLS listener (`broker-config --tls-port ...`),
                                 valid for each --host (DNS name or IP address, checked by clients)
    clients/NAME.crt, NAME.key   optional client certificates (CN = the registry username), for a
                                 listener with `require_certificate true`

Keys are ECDSA P-256; certificates are X.509 v3 with the usual constraints (CA:true only on the
CA, serverAuth / clientAuth extended key usage). Clients verify the broker with
`mqtts://user:password@host:port?ca=DIR/ca.crt`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path


MAX_DAYS = 36500  # --days: certificates valid 1 day to 100 years


@dataclass(frozen=True)
class TlsBundle:
    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # name -> (cert, key)


def register(sub) -> None:
    p = sub.add_parser("tls-certs", help="create a private CA, a broker certificate and optional client certificates")
    p.add_argument("--out", required=True, help="output directory (created, mode 0700)")
    p.add_argument("--host", action="append", default=[], help="broker DNS name or IP address (repeatable; "
                                                               "default localhost and 127.0.0.1)")
    p.add_argument("--client", action="append", default=[], help="client certificate for this registry username (repeatable)")
    p.add_argument("--days", type=int, default=365, help="validity of the server and client certificates (default %(default)s)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    # bad hosts/clients (ValueError) or an unwritable --out (OSError): one line from the CLI's handler
    bundle = write_tls_bundle(args.out, hosts=args.host or ["localhost", "127.0.0.1"], clients=args.client,
                              days=args.days)
    for p in (bundle.ca_cert, bundle.server_cert, bundle.server_key, *[x for pair in bundle.clients.values() for x in pair]):
        print(p)
    # Absolute: Mosquitto reads these from broker-config's --out folder, where it is started; the
    # relative paths printed before (--out tls: tls/server.crt) were not found there.
    print(f"broker: alpr-edge broker-config REGISTRY --tls-port 8883 --tls-cert {bundle.server_cert.resolve()} "
          f"--tls-key {bundle.server_key.resolve()} --tls-ca {bundle.ca_cert.resolve()}", file=sys.stderr)
    return 0


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _san(host: str):
    """The subject alternative name for --host: an IP address, or a DNS name (a leading `*.`
    allowed) that a client connecting to the broker by that name can match."""
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host[2:] if host.startswith("*.") else host
    labels = name.split(".")
    if host and len(host) <= 253 and all(_LABEL.fullmatch(lb) for lb in labels):
        return x509.DNSName(host)
    # Before, anything without a space or slash was written into the certificate, 'broker:8883'
    # included: a name no client ever connects by, so every TLS connection failed its host check.
    why = "not a DNS name or IP address"
    if "://" in host:
        why += " (a name, not a URL)"
    elif re.fullmatch(r"[^:]+:[0-9]+", host) or re.fullmatch(r"\[[0-9A-Fa-f:.]+\]:[0-9]+", host):
        why += " (no port: the certificate names the host; the port is the listener's, --tls-port of broker-config)"
    elif not host.isascii():
        why += " (write an internationalised name in its ASCII form, xn--...)"
    raise ValueError(f"--host {host!r}: {why}")


def _cert(subject_cn: str, key, issuer_name, issuer_key, days: int, *, ca: bool, sans=(), usage=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "alpr-edge")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def write_tls_bundle(out_dir: str | os.PathLike, hosts=("localhost", "127.0.0.1"), clients=(), days: int = 365,
                     ca_days: int = 3650) -> TlsBundle:
    """Create the CA (or reuse DIR/ca.key + ca.crt), the server certificate and client certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if not hosts:
        raise ValueError("at least one --host is needed")
    sans = [_san(h) for h in hosts]  # every name checked before anything is written
    # 0 days made certificates that had already expired; 10 million ended in an OverflowError.
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"--days {days}: must be 1 to {MAX_DAYS}")
    for c in clients:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", c):
            raise ValueError(f"--client {c!r}: not a registry username")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    ca_cert_p, ca_key_p = out / "ca.crt", out / "ca.key"
    if ca_cert_p.exists() != ca_key_p.exists():
        # ca.key kept offline, as advised: making a new CA here would overwrite the ca.crt every
        # client trusts, and certificates from it would fail verification everywhere.
        have, lack = (ca_cert_p, ca_key_p) if ca_cert_p.exists() else (ca_key_p, ca_cert_p)
        raise ValueError(f"{have} exists but {lack} does not: put the CA's {lack.name} back to issue certificates "
                         f"from it, or use a new --out for a new CA")
    if ca_cert_p.exists():
        try:
            ca_key = serialization.load_pem_private_key(ca_key_p.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(ca_cert_p.read_bytes())
        except (ValueError, TypeError) as err:  # not PEM, or an encrypted key
            raise ValueError(f"CA in {out}: cannot load ca.crt and ca.key: {err}") from None
        if ca_cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != ca_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError(f"CA in {out}: ca.key is not the key of ca.crt")
        # A certificate that outlives its CA fails verification from the day the CA expires:
        # before, --days 3650 from a CA with a year left wrote one without a word.
        ca_end = ca_cert.not_valid_after_utc
        left = (ca_end - datetime.now(timezone.utc)).days
        if left < days:
            raise ValueError(f"--days {days}: the CA in {out} expires on {ca_end.date().isoformat()} "
                             f"({max(left, 0)} days from now) and certificates it issues stop verifying then: "
                             f"use --days {left} or less, or a new --out for a new CA" if left >= 1 else
                             f"the CA in {out} expired on {ca_end.date().isoformat()}: use a new --out for a new CA")
    else:
        ca_key = _key()
        # the CA outlives every certificate it issues (before: 10 years even for --days 36500)
        ca_cert = _cert("alpr-edge private CA", ca_key, None, ca_key, max(ca_days, days + 1), ca=True)
        _write_private(ca_key_p, _key_pem(ca_key))
        ca_cert_p.write_bytes(_pem(ca_cert))
    server_key = _key()
    server = _cert(hosts[0], server_key, ca_cert.subject, ca_key, days, ca=False,
                   sans=sans, usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    _write_private(out / "server.key", _key_pem(server_key))
    (out / "server.crt").write_bytes(_pem(server))
    client_paths: dict[str, tuple[Path, Path]] = {}
    if clients:
        (out / "clients").mkdir(exist_ok=True)
        os.chmod(out / "clients", 0o700)
    for name in clients:
        k = _key()
        c = _cert(name, k, ca_cert.subject, ca_key, days, ca=False, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
        kp, cp = out / "clients" / f"{name}.key", out / "clients" / f"{name}.crt"
        _write_private(kp, _key_pem(k))
        cp.write_bytes(_pem(c))
        client_paths[name] = (cp, kp)
    return TlsBundle(out, ca_cert_p, ca_key_p, out / "server.crt", out / "server.key", client_paths)


def client_context(ca_file: str | os.PathLike, cert_file: str | os.PathLike | None = None,
                   key_file: str | os.PathLike | None = None) -> ssl.SSLContext:
    """A client-side context that trusts only `ca_file` and checks the broker's host name."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx
