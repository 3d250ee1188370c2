"""Fixtures of the extension tests: a real gunicorn service, seeded, per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.service import Service, reset_postgres_schema, running_service
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import CloudStack, Registration
from tests.conftest import usable_postgres_url


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    url = usable_postgres_url(reset_postgres_schema) if request.param == "postgres" else ""
    with running_service(url, workers=2) as running:
        cp.seed(running)
        yield running


@pytest.fixture
def cs(service: Service) -> CloudStack:
    return CloudStack(Registration.of(service))
