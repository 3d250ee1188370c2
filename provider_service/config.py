"""Service settings, read once from the environment.

Everything has a default that works for the quick start (SQLite in a state directory);
production sets VXGATE_DATABASE_URL to PostgreSQL and keeps the token in a file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = "/var/lib/vxgate"
ADMIN_TOKEN_FILE_NAME = "admin-token"
SQLITE_FILE_NAME = "vxgate.db"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    admin_token: str
    # Empty: GET /metrics needs no token (api/metrics.py says why that is safe).
    metrics_token: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        state_dir = Path(env.get("VXGATE_STATE_DIR", DEFAULT_STATE_DIR))
        url = env.get("VXGATE_DATABASE_URL") or f"sqlite:///{state_dir / SQLITE_FILE_NAME}"
        return cls(database_url=url, admin_token=_admin_token(env, state_dir),
                   metrics_token=env.get("VXGATE_METRICS_TOKEN", "").strip())


def _admin_token(env: Mapping[str, str], state_dir: Path) -> str:
    token = env.get("VXGATE_ADMIN_TOKEN", "")
    if not token:
        token_file = Path(env.get("VXGATE_ADMIN_TOKEN_FILE", state_dir / ADMIN_TOKEN_FILE_NAME))
        try:
            token = token_file.read_text(encoding="ascii").strip()
        except OSError as exc:
            problem = f"cannot read admin token file {token_file}: {exc.strerror}"
            raise SettingsError(problem) from exc
    if len(token) < 16:
        raise SettingsError("admin token must be at least 16 characters")
    return token


def ensure_admin_token_file(state_dir: Path) -> Path:
    """Create the admin token file (mode 0600) once; later calls keep the token."""
    path = state_dir / ADMIN_TOKEN_FILE_NAME
    state_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path
