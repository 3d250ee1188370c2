"""Extension tokens: what the CloudStack entry-point authenticates with.

An extension token reaches only POST /v1/cloudstack/<command> (auth.py). It sits in
CloudStack's registration details, visible to CloudStack's root admins and written into
every payload file, so it must not open the rest of the API the way the admin token does.
Only its SHA-256 digest is kept; one token per extension name (`vxgate`, `vxgate-routed`).
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from provider_service.models.base import Base, Timestamped


class ExtensionToken(Timestamped, Base):
    __tablename__ = "extension_tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
