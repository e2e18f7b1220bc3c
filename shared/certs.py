"""A self-signed certificate made at start, like the one a real gateway presents."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_self_signed(folder: Path, common_name: str = "teg") -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` into ``folder``; valid for the gateway's names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(n) for n in ("teg", "powerwall", "powerpack", "localhost")
    ]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(
    cert_file: Path | None = None, key_file: Path | None = None, *, common_name: str = "teg"
) -> ssl.SSLContext:
    """A TLS server context from the given files, or from a freshly made certificate.

    Raises ``OSError`` or ``ssl.SSLError`` when the files cannot be loaded; callers turn that
    into a configuration error naming their own setting.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        return context
    # Made for this process alone: loaded into the context, then the files go (the key must
    # not outlive the process in /tmp).
    with tempfile.TemporaryDirectory(prefix=f"pwbus-{common_name}-") as folder:
        made_cert, made_key = make_self_signed(Path(folder), common_name)
        context.load_cert_chain(str(made_cert), str(made_key))
    return context
