"""Sample routing domains for the netfilter unit tests (the golden inputs, parsed)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from agent.netfilter_state import RoutingDomain

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "nft"


def raw(name: str) -> dict[str, Any]:
    """A fresh, mutable copy of a sample's JSON."""
    data: dict[str, Any] = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
    return copy.deepcopy(data)


def domain(name: str) -> RoutingDomain:
    return RoutingDomain.from_json(raw(name))


def with_changes(name: str, **changes: Any) -> RoutingDomain:
    data = raw(name)
    data.update(changes)
    return RoutingDomain.from_json(data)
