"""What the agent says of one object after applying it: the unit of a status report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["ok", "error", "pending"]


@dataclass(frozen=True)
class ObjectStatus:
    """`kind` names the applier's object (network, port_forward, domain, segment, frr,
    ...), `id` the object; an error carries its reason in one line."""

    kind: str
    id: str
    state: State
    reason: str = ""
