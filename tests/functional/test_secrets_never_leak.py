"""Secrets from CloudStack never leak (issue 8).

Extension commands run through the real entry-point against a real gunicorn service, with
recognisable secrets in the payload: the registration's `password`, `sshkey` and
`vxgate.token` (an extension token), and a VM password (save-password, save-vm-data).
Some commands succeed, some fail (bad input, unknown network, a refused token). Then
none of the secrets may be in: the entry-point's output, the service's log, the HTTP
error bodies of the same events sent straight to the service, `vxgate status` output, or
any world-readable file under the service's state directory; files that hold secrets
are 0600.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

from bench.service import Service, console_script, with_this_checkout
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import Json, Net, Nic, Registration

REGISTRATION_PASSWORD = "Sekr1t-regpass-4711"
REGISTRATION_SSHKEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nSekr1t-sshkey-0815\n-----END-----"
VM_PASSWORD = "Sekr1t-vmpass-2342"
NET = Net("71", "10.71.0.0/24", "10.71.0.1")
NIC = Nic("7101", "02:00:0a:47:00:05", "10.71.0.5", "10.71.0.1",
          uuid="5b0e7c1a-0000-4000-8000-000071000005", device_id="0")
UNKNOWN = Net("72", "10.72.0.0/24", "10.72.0.1")


def secret_forms(*secrets: str) -> list[str]:
    """Each secret, its Gson-escaped form, and its distinctive middle line (an sshkey's
    body is what would be recognised in a log even without the armour)."""
    forms = []
    for secret in secrets:
        forms += [secret, cp.gson(secret)[1:-1]]
        forms += [line for line in secret.splitlines() if "Sekr1t" in line]
    return sorted(set(forms))


def events(registration: Registration) -> list[tuple[str, Json, bool]]:
    """(command, event, must it succeed) in CloudStack's order, failures mixed in."""
    def event(command: str, payload: Json) -> Json:
        return cp.event_of(command, registration, {}, payload)

    data = cp.vm_data(NIC, "web-0", 71, password=VM_PASSWORD, public_key="ssh-ed25519 AAAA")
    return [
        ("ensure-network-device", event("ensure-network-device", cp.ensure_network(NET)), True),
        ("implement-network", event("implement-network", cp.implement_network(NET)), True),
        ("prepare-nic", event("prepare-nic", cp.prepare_nic(NET, NIC, "web-0")), True),
        ("save-password", event("save-password", cp.save_item(NET, NIC, "password",
                                                              VM_PASSWORD)), True),
        ("save-vm-data", event("save-vm-data", cp.save_vm_data(NET, NIC, data)), True),
        # The service refuses: unknown network, bad addresses, a password that is no text.
        ("save-password", event("save-password", cp.save_item(UNKNOWN, NIC, "password",
                                                              VM_PASSWORD)), False),
        ("save-password", event("save-password", {**cp.save_item(NET, NIC, "password",
                                                                 VM_PASSWORD), "ip": "x"}),
         False),
        ("save-password", event("save-password", {**cp.save_item(NET, NIC, "password", ""),
                                                  "password": [VM_PASSWORD]}), False),
        ("save-vm-data", event("save-vm-data", cp.save_vm_data(NET, replace(NIC, ip="10.99.0.5"),
                                                               data)), False),
        ("frobnicate-network", event("frobnicate-network", cp.N(NET)), False),
    ]


def test_secrets_never_leak(service: Service, tmp_path: Path) -> None:
    extension_token = service.ok("POST", "/v1/extension-tokens/vxgate")["token"]
    registration = replace(Registration.of(service), token=extension_token,
                           password=REGISTRATION_PASSWORD, sshkey=REGISTRATION_SSHKEY)
    secrets = secret_forms(REGISTRATION_PASSWORD, REGISTRATION_SSHKEY, VM_PASSWORD,
                           extension_token)
    offset = service.log_path.stat().st_size
    texts: dict[str, str] = {}

    for i, (command, event, succeeds) in enumerate(events(registration)):
        code, output = cp.run_entry_point(command, event)
        assert (code == 0) == succeeds, (command, code, output)
        assert "\n" not in output and "Traceback" not in output, output
        texts[f"entry-point {i} {command}"] = output
        # The same event straight to the service: what an HTTP error body says.
        status, answer = service.call("POST", f"/v1/cloudstack/{command}", event)
        assert (status == 200) == succeeds, (command, status, answer)
        texts[f"HTTP {i} {command}"] = str(answer)
    # A wrong token, and the extension token off its one call.
    wrong = replace(registration, token="Sekr1t-wrongtoken-0123456789")
    code, output = cp.run_entry_point("implement-network", cp.event_of(
        "implement-network", wrong, {}, cp.implement_network(NET)))
    assert code == 1 and "invalid token (HTTP 401)" in output, output
    texts["entry-point wrong token"] = output
    secrets += secret_forms(wrong.token)

    texts["vxgate status"] = vxgate_status(service)
    texts["vxgate status --json"] = vxgate_status(service, "--json")
    texts["service log"] = service.log_path.read_bytes()[offset:].decode(errors="replace")
    texts.update(world_readable_files(service.state_dir))

    leaks = [(where, secret) for where, text in texts.items() for secret in secrets
             if secret in text]
    assert leaks == []
    assert "save-password" in " ".join(texts)  # the walk above saw what it should


def test_files_holding_secrets_are_private(service: Service) -> None:
    """The service's state directory: the database (VM passwords, user data) and the
    admin token file only for the service's user."""
    holding = [path for path in service.state_dir.rglob("*")
               if path.is_file() and (path.name.startswith("vxgate.db")
                                      or path.name == "admin-token")]
    # (None on PostgreSQL with the token from the environment: nothing to check then.)
    loose = {str(path): oct(path.stat().st_mode & 0o777) for path in holding
             if path.stat().st_mode & 0o077}
    assert loose == {}


def vxgate_status(service: Service, *argv: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VXGATE_")}
    env.update(VXGATE_ADMIN_TOKEN=service.token,
               VXGATE_SERVICE_URL=f"http://{service.host}:{service.port}")
    done = subprocess.run([console_script("vxgate"), "status", *argv],
                          env=with_this_checkout(env), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode in (0, 1), done.stderr
    assert NET.id in done.stdout, done.stdout  # it does report the network
    return done.stdout + done.stderr


def world_readable_files(directory: Path) -> dict[str, str]:
    """Text of every file anyone may read under `directory`."""
    found = {}
    for path in directory.rglob("*"):
        if path.is_file() and path.stat().st_mode & stat.S_IROTH:
            found[f"file {path}"] = path.read_bytes().decode(errors="replace")
    return found
