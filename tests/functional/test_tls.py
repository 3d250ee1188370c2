"""TLS between agents, the entry-point and a real gunicorn service, with `vxgate ca`'s CA.

One service serves HTTPS with a certificate for 127.0.0.1 only: an agent that trusts the
CA fetches its config; one without the CA, one trusting another CA, and one that reaches
the service under a name the certificate does not hold are refused. The CloudStack
entry-point reaches it with VXGATE_CA_FILE and an extension token. A second service
requires client certificates (mutual TLS): the device certificate opens it, no
certificate or one from another CA does not.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.service_client import ServiceClient, ServiceUnreachable, TlsFiles
from bench.service import free_port, service_command, stop, with_this_checkout
from provider_service import admin_client, ca
from simulator.cloudstack.element import ENTRY_POINT, gson
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import Net, Registration
from tests.golden.frr_cases import CASES

TOKEN = "tls-test-admin-token-0123456789"
STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    service: ca.Outcome
    device: ca.Outcome  # hv1's
    rogue_ca: Path
    rogue_device: ca.Outcome  # "hv1" too, from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca.init_ca(root / "ca")
    ca.init_ca(root / "rogue", "rogue CA")
    localhost = ca.SubjectNames.parse("service", [], ["127.0.0.1"])
    device = ca.SubjectNames.parse("hv1", [], [])
    return Pki(
        ca=root / "ca" / ca.CA_CERT,
        service=ca.issue(root / "ca", "service", localhost, root / "issued"),
        device=ca.issue(root / "ca", "hv1", device, root / "issued"),
        rogue_ca=root / "rogue" / ca.CA_CERT,
        rogue_device=ca.issue(root / "rogue", "hv1", device, root / "rogue-issued"),
    )


@dataclass(frozen=True)
class TlsService:
    port: int
    context: ssl.SSLContext  # the admin's: trusts the CA, shows hv1's cert under mTLS
    log_path: Path

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                                 context=self.context)
        try:
            connection.request(method, path, None if body is None else json.dumps(body),
                               {"Authorization": f"Bearer {TOKEN}",
                                "Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}"


@contextmanager
def tls_service(tmp_path: Path, pki: Pki, *, mutual: bool) -> Iterator[TlsService]:
    port = free_port()
    argv = [*service_command(), "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--state-dir", str(tmp_path), "--tls-cert", str(pki.service.cert),
            "--tls-key", str(pki.service.key)]
    context = ssl.create_default_context(cafile=pki.ca)
    if mutual:
        argv += ["--tls-client-ca", str(pki.ca)]
        context.load_cert_chain(pki.device.cert, pki.device.key)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VXGATE_")}
    log_path = tmp_path / "service.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**with_this_checkout(env), "VXGATE_ADMIN_TOKEN": TOKEN})
    service = TlsService(port, context, log_path)
    try:
        _wait_healthy(process, service)
        yield service
    finally:
        stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], service: TlsService) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPSConnection("127.0.0.1", service.port, timeout=2,
                                                     context=service.context)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        try:
            code = process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"vxgate-service exited {code}: {service.log_path.read_text()}")
    raise AssertionError(f"no healthy service: {service.log_path.read_text()[-2000:]}")


def agent_token(service: TlsService) -> str:
    device = CASES["hypervisor"](lambda method, path, body: service.ok(method, path, body))
    assert device == "hv1"
    token: str = service.ok("POST", "/v1/devices/hv1/token")["token"]
    return token


def fetch(url: str, token: str, tls: TlsFiles) -> int:
    client = ServiceClient(url, "hv1", token, tls=tls)
    try:
        return client.fetch(0, 0).generation
    finally:
        client.close()


def test_agents_and_the_entry_point_over_tls(tmp_path: Path, pki: Pki) -> None:
    with tls_service(tmp_path, pki, mutual=False) as service:
        token = agent_token(service)
        assert fetch(service.url(), token, TlsFiles(ca_file=pki.ca)) > 0
        refused = {
            "no CA": (service.url(), TlsFiles()),
            "another CA": (service.url(), TlsFiles(ca_file=pki.rogue_ca)),
            "wrong host": (service.url("localhost"), TlsFiles(ca_file=pki.ca)),
        }
        for case, (url, tls) in refused.items():
            with pytest.raises(ServiceUnreachable) as caught:
                fetch(url, token, tls)
            assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value), case
            assert "\n" not in str(caught.value) and token not in str(caught.value)

        # The extension's token over TLS, as `vxgate cloudstack register` gets it ...
        env = {"VXGATE_CA_FILE": str(pki.ca)}
        extension = admin_client.issue_extension_token(service.url(), TOKEN, "vxgate", "", env)
        with pytest.raises(admin_client.AdminCallError, match="CERTIFICATE_VERIFY_FAILED"):
            admin_client.issue_extension_token(service.url(), TOKEN, "vxgate", "", {})
        # ... and the entry-point using it, trusting the CA through VXGATE_CA_FILE.
        service.ok("PUT", "/v1/physical-networks/200", {"zone_id": "1", "name": "guest"})
        net = Net("61", "10.61.0.0/24", "10.61.0.1")
        event = cp.envelope(Registration(service.url(), extension), {}, cp.implement_network(net))
        code, output = run_entry_point("implement-network", event, tmp_path, env)
        assert code == 0 and '"network.broadcast_uri":"vxlan://' in output, output
        code, output = run_entry_point("implement-network", event, tmp_path, {})
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in output and "\n" not in output


def test_mutual_tls_needs_a_device_certificate_from_the_ca(tmp_path: Path, pki: Pki) -> None:
    with tls_service(tmp_path, pki, mutual=True) as service:
        token = agent_token(service)
        device = TlsFiles(pki.ca, pki.device.cert, pki.device.key)
        assert fetch(service.url(), token, device) > 0
        for tls in (TlsFiles(ca_file=pki.ca),
                    TlsFiles(pki.ca, pki.rogue_device.cert, pki.rogue_device.key)):
            with pytest.raises(ServiceUnreachable) as caught:
                fetch(service.url(), token, tls)
            assert "\n" not in str(caught.value) and token not in str(caught.value)
        # The certificate does not replace the token: both are needed.
        with pytest.raises(ServiceUnreachable, match="HTTP 401"):
            fetch(service.url(), "wrong-token-0123456789", device)


def test_unusable_tls_settings_fail_in_one_line(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ValueError, match="not https"):
        ServiceClient("http://127.0.0.1:1", "hv1", "t", tls=TlsFiles(ca_file=pki.ca))
    with pytest.raises(ValueError, match="TLS files unusable"):
        ServiceClient("https://127.0.0.1:1", "hv1", "t", tls=TlsFiles(ca_file=tmp_path / "x"))
    for extra, expected in ((["--tls-cert", str(pki.service.cert)], "go together"),
                            (["--tls-cert", str(pki.service.cert), "--tls-key",
                              str(pki.ca)], "TLS files unusable")):
        done = subprocess.run([*service_command(), "--state-dir", str(tmp_path), *extra],
                              capture_output=True, text=True, timeout=60, check=False,
                              env={**with_this_checkout(dict(os.environ)),
                                   "VXGATE_ADMIN_TOKEN": TOKEN})
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def run_entry_point(command: str, event: dict[str, Any], tmp_path: Path,
                    env: dict[str, str]) -> tuple[int, str]:
    payload = tmp_path / f"{command}.payload"
    payload.write_text(gson(event))
    base = {k: v for k, v in os.environ.items() if not k.startswith("VXGATE_")}
    done = subprocess.run([str(ENTRY_POINT), command, str(payload), "60"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                          check=False, env={**base, **env})
    return done.returncode, (done.stdout + done.stderr).decode().strip()
