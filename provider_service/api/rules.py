"""Placeholder: filled in by the rules work."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

blueprint = Blueprint("rules", __name__, url_prefix="/v1")
SCHEMAS: dict[str, Any] = {}
PATHS: dict[str, Any] = {}
