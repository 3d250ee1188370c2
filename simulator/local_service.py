"""The provider service in-process, on a fresh SQLite file: for the simulator, the
scenarios and the benchmarks, which talk to it through `request(method, path, body)`."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from provider_service.app import create_app
from provider_service.config import Settings
from provider_service.models import Base

Request = Callable[[str, str, Any], Any]  # (method, path, JSON body or None) -> JSON answer


class ServiceRefused(RuntimeError):
    pass


@contextmanager
def in_process_service(state_dir: Path) -> Iterator[Request]:
    url = f"sqlite:///{state_dir / 'vxgate.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    token = secrets.token_urlsafe(24)
    app = create_app(Settings(database_url=url, admin_token=token))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def request(method: str, path: str, body: Any = None) -> Any:
        answer = client.open(path, method=method, json=body, headers=headers)
        if answer.status_code >= 300:
            raise ServiceRefused(f"{method} {path}: {answer.status_code} "
                                 f"{(answer.get_json() or {}).get('error', '')}")
        return answer.get_json()

    try:
        yield request
    finally:
        app.extensions["vxgate.db"].dispose()
