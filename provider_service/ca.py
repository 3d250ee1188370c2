"""A small certificate authority for TLS between agents and the service.

`vxgate ca init` makes it once in the state directory; `vxgate ca issue` signs the
service's server certificate and one device certificate per agent. Every certificate is
good for both ends of a connection (serverAuth and clientAuth), so the service's is a
server certificate and a device's is what its agent presents under mutual TLS.

Built on the `cryptography` package rather than the openssl CLI: one in-process API
(no argv or config-file text to assemble, no output to parse, errors as exceptions), and
the checks that make re-runs idempotent -- does this certificate match that key, was it
signed by this CA, which SANs does it carry -- are a few attribute reads.

Files: <dir>/ca.key (0600), <dir>/ca.crt (0644); issued: <out>/<name>.key (0600),
<out>/<name>.crt (0644). Every file is written to a temporary name and renamed, key
before certificate, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY, CA_CERT = "ca.key", "ca.crt"
CA_DAYS = 3650
CERT_DAYS = 825  # what browsers and most TLS stacks still accept for a leaf
# A certificate's file name and its common name: also an agent's device name.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


class CaError(Exception):
    """A refusal or a failure, in one line: nothing was written."""


@dataclass(frozen=True)
class SubjectNames:
    """The subjectAltName of an issued certificate."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, dns: Sequence[str], ips: Sequence[str]) -> SubjectNames:
        """Checked SANs; without any, the name itself as a DNS name."""
        for entry in dns:
            if not _DNS_NAME.fullmatch(entry):
                raise CaError(f"--dns {entry!r} is not a DNS name")
        parsed_ips = []
        for entry in ips:
            try:
                parsed_ips.append(str(ipaddress.ip_address(entry)))
            except ValueError:
                raise CaError(f"--ip {entry!r} is not an IP address") from None
        dns_names = tuple(sorted(set(dns))) or ((name,) if not parsed_ips else ())
        return cls(dns=dns_names, ips=tuple(sorted(set(parsed_ips))))

    def extension(self) -> x509.SubjectAlternativeName:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ips]
        return x509.SubjectAlternativeName(names)

    @classmethod
    def of(cls, cert: x509.Certificate) -> SubjectNames:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return cls((), ())
        return cls(dns=tuple(sorted(san.get_values_for_type(x509.DNSName))),
                   ips=tuple(sorted(str(i) for i in san.get_values_for_type(x509.IPAddress))))

    def show(self) -> str:
        return ", ".join([f"DNS:{d}" for d in self.dns] + [f"IP:{i}" for i in self.ips])


@dataclass(frozen=True)
class Outcome:
    """What a command did ("created" or "unchanged") and the files concerned."""

    action: str
    key: Path
    cert: Path


# --- the CA ----------------------------------------------------------------------------


def init_ca(directory: Path, name: str = "vxgate CA") -> Outcome:
    """Create the CA once; a complete CA already there is kept ("unchanged")."""
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if key_path.exists() or cert_path.exists():
        load_ca(directory)  # refuses a half or mismatched CA
        return Outcome("unchanged", key_path, cert_path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Outcome("created", key_path, cert_path)


def load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    missing = [p.name for p in (key_path, cert_path) if not p.exists()]
    if len(missing) == 2:
        raise CaError(f"no CA in {directory}: run `vxgate ca init` first")
    if missing:
        raise CaError(f"{directory} holds a CA without {missing[0]}: move the other file "
                      "away and run `vxgate ca init` again")
    key, cert = _read_key(key_path), _read_cert(cert_path)
    if not _same_key(cert, key):
        raise CaError(f"{cert_path} does not belong to {key_path}")
    return key, cert


# --- issued certificates ---------------------------------------------------------------


def issue(ca_dir: Path, name: str, names: SubjectNames, out_dir: Path, *,
          force: bool = False) -> Outcome:
    """A key and a certificate for `name`, signed by the CA. An existing pair that this
    CA signed for the same SANs is kept ("unchanged"); one with other SANs or another
    issuer is refused unless `force` replaces it."""
    if not SAFE_NAME.fullmatch(name):
        raise CaError(f"certificate name {name!r}: letters, digits, '.', '_' and '-' only "
                      "(at most 63), starting with a letter or digit")
    ca_key, ca_cert = load_ca(ca_dir)
    key_path, cert_path = out_dir / f"{name}.key", out_dir / f"{name}.crt"
    if (key_path.exists() or cert_path.exists()) and not force:
        _check_existing(key_path, cert_path, ca_cert, names)
        return Outcome("unchanged", key_path, cert_path)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(names.extension(), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Outcome("created", key_path, cert_path)


def _check_existing(key_path: Path, cert_path: Path, ca_cert: x509.Certificate,
                    names: SubjectNames) -> None:
    if not (key_path.exists() and cert_path.exists()):
        present = key_path if key_path.exists() else cert_path
        raise CaError(f"{present} exists without its pair: remove it, or pass --force")
    cert, key = _read_cert(cert_path), _read_key(key_path)
    if not _same_key(cert, key):
        raise CaError(f"{cert_path} does not belong to {key_path}: pass --force to replace both")
    if not signed_by(cert, ca_cert):
        raise CaError(f"{cert_path} was not issued by this CA: pass --force to replace it")
    held = SubjectNames.of(cert)
    if held != names:
        raise CaError(f"{cert_path} exists for {held.show() or 'no SANs'}, not {names.show()}: "
                      "pass --force to replace it")


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    public = ca_cert.public_key()
    if cert.issuer != ca_cert.subject or not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


# --- files -----------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(der, spki)
                == key.public_key().public_bytes(der, spki))


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise CaError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise CaError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{path} is not an EC key (vxgate ca makes P-256 keys)")
    return key


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise CaError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise CaError(f"{path} is not a PEM certificate") from None


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` under a temporary name created with `mode` (never wider, whatever
    the umask), then rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, mode)  # O_CREAT's mode is cut by the umask: set it exactly
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
