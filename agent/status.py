"""What the agent says of one object after applying it: the unit of a status report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["ok", "error", "pending"]
# The kind of a report on a whole artifact (softgate.json, frr.conf): the agent's loop
# sends one for every apply, and an applier uses it when the artifact as such is bad.
ARTIFACT = "artifact"


@dataclass(frozen=True)
class ObjectStatus:
    """`kind` names the applier's object (network, port_forward, domain, segment, frr,
    ...), `id` the object; an error carries its reason in one line."""

    kind: str
    id: str
    state: State
    reason: str = ""
