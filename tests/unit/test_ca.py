"""`vxgate ca init` / `issue`: idempotent, private keys 0600, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider_service import ca, cli


def vxgate_ca(tmp_path: Path, *argv: str) -> int:
    return cli.main(["ca", "--state-dir", str(tmp_path), *argv])


def test_init_and_issue_are_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vxgate_ca(tmp_path, "init") == 0
    ca_files = {p: p.read_bytes() for p in (tmp_path / "ca").iterdir()}
    assert vxgate_ca(tmp_path, "init") == 0
    assert {p: p.read_bytes() for p in ca_files} == ca_files
    assert vxgate_ca(tmp_path, "issue", "svc", "--ip", "192.0.2.5", "--dns", "vx.example") == 0
    issued = tmp_path / "ca" / "issued"
    first = (issued / "svc.crt").read_bytes()
    assert vxgate_ca(tmp_path, "issue", "svc", "--dns", "vx.example", "--ip", "192.0.2.5") == 0
    assert (issued / "svc.crt").read_bytes() == first
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["created"] * 2 + ["unchanged"] * 2 + \
        ["created"] * 2 + ["unchanged"] * 2
    modes = {p.name: p.stat().st_mode & 0o777 for p in [*ca_files, *issued.iterdir()]}
    assert modes == {"ca.key": 0o600, "ca.crt": 0o644, "svc.key": 0o600, "svc.crt": 0o644}
    _, ca_cert = ca.load_ca(tmp_path / "ca")
    cert = ca._read_cert(issued / "svc.crt")
    assert ca.signed_by(cert, ca_cert)
    assert ca.SubjectNames.of(cert) == ca.SubjectNames(("vx.example",), ("192.0.2.5",))


@pytest.mark.parametrize(("argv", "expected"), [
    (("issue", "svc", "--ip", "192.0.2.6"), "exists for DNS:svc, not IP:192.0.2.6: pass --force"),
    (("issue", "../svc"), "certificate name '../svc'"),
    (("issue", "x", "--ip", "300.1.1.1"), "--ip '300.1.1.1' is not an IP address"),
    (("issue", "x", "--dns", "a b"), "--dns 'a b' is not a DNS name"),
])
def test_refusals_are_one_line_and_change_nothing(tmp_path: Path, argv: tuple[str, ...],
                                                  expected: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert vxgate_ca(tmp_path, "init") == 0
    assert vxgate_ca(tmp_path, "issue", "svc") == 0
    before = sorted(p.name for p in (tmp_path / "ca" / "issued").iterdir())
    capsys.readouterr()
    assert vxgate_ca(tmp_path, *argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("vxgate ca: ") and expected in err and err.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "ca" / "issued").iterdir()) == before


def test_force_replaces_and_half_a_ca_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert vxgate_ca(tmp_path, "issue", "svc") == 1
    assert "no CA in" in capsys.readouterr().err
    assert vxgate_ca(tmp_path, "init") == 0
    assert vxgate_ca(tmp_path, "issue", "svc") == 0
    assert vxgate_ca(tmp_path, "issue", "svc", "--ip", "192.0.2.6", "--force") == 0
    cert = ca._read_cert(tmp_path / "ca" / "issued" / "svc.crt")
    assert ca.SubjectNames.of(cert).ips == ("192.0.2.6",)
    (tmp_path / "ca" / "ca.crt").unlink()
    assert vxgate_ca(tmp_path, "init") == 1
    assert "holds a CA without ca.crt" in capsys.readouterr().err
