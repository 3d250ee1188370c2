"""One CloudStack event: the envelope, its payload, and translation to our field names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from plugin.vxgate_extension import MODE_KEY
from provider_service.api.body import Body
from provider_service.errors import BadRequest
from provider_service.models.tenancy import NETWORK_MODES


@dataclass(frozen=True)
class Event:
    """One command as CloudStack sent it; `payload` keeps CloudStack's key names."""

    command: str
    payload: dict[str, Any]
    network_details: dict[str, Any]
    registration: dict[str, Any]  # physical-network-extension-details, secrets removed

    @classmethod
    def from_envelope(cls, command: str, envelope: object) -> Event:
        if not isinstance(envelope, dict):
            raise BadRequest("the event must be a JSON object")
        if "payload" in envelope:
            payload = envelope["payload"]
        else:  # custom-action is flat: the network/VPC fields sit at the top level
            payload = {k: v for k, v in envelope.items() if not k.endswith("-details")}
        details = envelope.get("network-extension-details") or {}
        registration = envelope.get("physical-network-extension-details") or {}
        for name, value in (("payload", payload), ("network-extension-details", details),
                            ("physical-network-extension-details", registration)):
            if not isinstance(value, dict):
                raise BadRequest(f"{name}: expected a JSON object")
        if payload.get("zone_id") in (None, "") and details.get("zone_id") not in (None, ""):
            # The legacy flag form sends --zone-id with ensure-network-device only, and
            # older 4.23 builds leave zone_id out of implement-vpc and shutdown-vpc; the
            # details CloudStack stored from our ensure answer carry it.
            payload = {**payload, "zone_id": details["zone_id"]}
        return cls(command, payload, details, registration)

    @property
    def physnet_name(self) -> str | None:
        name = self.registration.get("physicalnetworkname")
        return name if isinstance(name, str) and name else None

    @property
    def network_mode(self) -> str:
        """What the registration of the extension CloudStack called says: "routed" for
        the `<name>-routed` extension (see cloudstack_registration.build_plan), else
        "natted"; NetworkExtensionElement's payload itself carries no mode."""
        mode = self.registration.get(MODE_KEY, "natted")
        if mode not in NETWORK_MODES:
            raise BadRequest(f"registration detail {MODE_KEY}: {mode!r} is not one of "
                             f"{', '.join(NETWORK_MODES)}")
        return str(mode)

    def has(self, key: str) -> bool:
        return self.payload.get(key) not in (None, "")

    def text(self, key: str) -> str:
        value = self.payload.get(key)
        if value in (None, ""):
            raise BadRequest(f"payload.{key}: required")
        return str(value)

    def body(self, mapping: Mapping[str, str], extra: Mapping[str, Any] | None = None) -> Body:
        """Our API body from payload keys: {our_field: cloudstack_key}, blanks dropped."""
        data = {ours: self.payload[theirs] for ours, theirs in mapping.items()
                if self.payload.get(theirs) not in (None, "")}
        data.update(extra or {})
        return Body(data, list(data), "payload: ")


# A command's handler: records the event, returns what the entry-point prints (or None).
Handler = Callable[[Session, "Event"], object]
