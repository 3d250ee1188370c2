"""The CloudStack stand-in, whole: its state, every command bound to its API, served.

    with running_cloudstack(CloudStackSim(site, kvm)) as cloud:
        cs.CloudStack(endpoint=cloud.endpoint, key=cloud.api_key, secret=cloud.secret_key)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from simulator.cloudstack import admin_commands, network_commands, rule_commands, vm_commands
from simulator.cloudstack.api import ApiServer, Params, new_key_pair
from simulator.cloudstack.cloud import CloudStackSim
from simulator.cloudstack.commands import Command, Handler

TABLES = (admin_commands.commands, network_commands.commands, rule_commands.commands,
          vm_commands.commands)


@dataclass(frozen=True)
class RunningCloudStack:
    endpoint: str
    api_key: str
    secret_key: str
    sim: CloudStackSim
    api: ApiServer

    def environment(self) -> dict[str, str]:
        """The `cs` client's (and `vxgate cloudstack register`'s) variables."""
        return {"CLOUDSTACK_ENDPOINT": self.endpoint, "CLOUDSTACK_KEY": self.api_key,
                "CLOUDSTACK_SECRET": self.secret_key}


def build_api(sim: CloudStackSim, accounts: dict[str, str]) -> ApiServer:
    api = ApiServer(accounts)
    network_commands.seed_acl_lists(sim)
    for table in TABLES:
        for command in table.table:
            api.register(command.name, _bound(command, sim), kind=command.kind,
                         object_name=command.object_name)
    return api


def _bound(command: Command, sim: CloudStackSim) -> Any:
    handler: Handler = command.handler

    def call(params: Params) -> Any:
        return handler(sim, params)
    call.__name__ = command.name
    return call


@contextmanager
def running_cloudstack(sim: CloudStackSim) -> Iterator[RunningCloudStack]:
    api_key, secret_key = new_key_pair()
    api = build_api(sim, {api_key: secret_key})
    with api.running() as endpoint:
        yield RunningCloudStack(endpoint, api_key, secret_key, sim, api)
