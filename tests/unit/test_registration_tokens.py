"""`vxgate cloudstack register` puts each extension's own token into the registration,
never the admin token it was given, and keeps a token the service still accepts."""

from __future__ import annotations

import pytest

from provider_service.admin_client import AdminCallError
from tests.unit.test_registration import BASIC, TOKEN, FakeCloudStack, run_cli


class FakeService:
    """POST /v1/extension-tokens/<name>: keeps a valid `held` token, else issues one."""

    def __init__(self) -> None:
        self.valid: dict[str, str] = {}
        self.asked: list[tuple[str, str]] = []

    def __call__(self, name: str, held: str) -> str:
        self.asked.append((name, held))
        if self.valid.get(name) != held:
            self.valid[name] = f"ext-{name}-{len(self.asked)}-0123456789abcdef"
        return self.valid[name]


def registered_tokens(fake: FakeCloudStack) -> dict[str, str]:
    return {e["name"]: r["details"]["vxgate.token"]
            for e in fake.extensions for r in e.get("resources", [])}


def test_cli_puts_the_extension_token_not_the_admin_token(
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, service = FakeCloudStack(), FakeService()
    assert run_cli(fake, *BASIC, "--token", TOKEN, issuer=service) == 0
    assert service.asked == [("vxgate", ""), ("vxgate-routed", "")]
    assert registered_tokens(fake) == service.valid
    assert TOKEN not in str(fake.calls)
    out, err = capsys.readouterr()
    assert not [t for t in (TOKEN, *service.valid.values()) if t in out + err]

    # A re-run offers the held tokens, gets them back, and changes nothing.
    before = len(fake.changes)
    assert run_cli(fake, *BASIC, "--token", TOKEN, issuer=service) == 0
    assert service.asked[2:] == [(n, t) for n, t in registered_tokens(fake).items()]
    assert len(fake.changes) == before
    assert all(line.startswith("unchanged ") for line in capsys.readouterr()[0].splitlines())

    # A token the service no longer knows (revoked, or the old admin token) is replaced.
    service.valid["vxgate"] = "revoked"
    assert run_cli(fake, *BASIC, "--token", TOKEN, issuer=service) == 0
    assert registered_tokens(fake) == service.valid
    assert "updated registration of vxgate on physical network guest: vxgate.token" \
        in capsys.readouterr()[0]


def test_cli_without_the_service_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    def unreachable(name: str, held: str) -> str:
        raise AdminCallError("cannot reach the service at http://10.0.0.5:8080: refused")

    fake = FakeCloudStack()
    assert run_cli(fake, *BASIC, "--token", TOKEN, issuer=unreachable) == 1
    assert fake.changes == []
    err = capsys.readouterr()[1]
    assert err == "vxgate: cloudstack register: cannot reach the service at " \
                  "http://10.0.0.5:8080: refused\n"
